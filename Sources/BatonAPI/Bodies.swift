@_exported import BatonOpenAPI
import BatonModel
import Foundation

// The bodies of batond's HTTP/JSON API are generated from docs/openapi.json (BatonOpenAPI,
// `make openapi`); the domain types in them (addresses, matches, roles, states, modes) are
// BatonModel's own, through the generator's typeOverrides. These names are what the daemon,
// batonctl and the tests use.

public typealias TransferRequest = Components.Schemas.TransferRequest
public typealias SessionInfo = Components.Schemas.SessionInfo
public typealias TransferInfo = Components.Schemas.TransferInfo
public typealias TransferList = Components.Schemas.TransferList
public typealias DaemonStatus = Components.Schemas.DaemonStatus
public typealias ReconcileSummary = Components.Schemas.ReconcileSummary
public typealias Device = Components.Schemas.Device
public typealias DeviceList = Components.Schemas.DeviceList
public typealias Policy = Components.Schemas.Policy
public typealias PolicyList = Components.Schemas.PolicyList
public typealias RegistrationBatch = Components.Schemas.RegistrationBatch
public typealias RegistrationResult = Components.Schemas.RegistrationResult
public typealias RegistrationResults = Components.Schemas.RegistrationResults
public typealias ErrorBody = Components.Schemas.ErrorBody
public typealias AnchorRequest = Components.Schemas.AnchorRequest
public typealias AnchorMove = Components.Schemas.AnchorMove
public typealias AnchorInfo = Components.Schemas.AnchorInfo
public typealias AnchorList = Components.Schemas.AnchorList
public typealias SIPUserRequest = Components.Schemas.SIPUserRequest
public typealias SIPUser = Components.Schemas.SIPUser
public typealias SIPUserList = Components.Schemas.SIPUserList
public typealias SIPRegistration = Components.Schemas.SIPRegistration
public typealias SIPRegistrationList = Components.Schemas.SIPRegistrationList
public typealias SIPLeg = Components.Schemas.SIPLeg
public typealias SIPCall = Components.Schemas.SIPCall
public typealias SIPCallList = Components.Schemas.SIPCallList
public typealias SIPTimelineEvent = Components.Schemas.SIPTimelineEvent
public typealias LegCounters = Components.Schemas.LegCounters
public typealias RetiredDevice = Components.Schemas.RetiredDevice
public typealias RTPState = Components.Schemas.RTPState

extension Components.Schemas.Device {
    /// Device names: what `batonctl device` and the API accept: 1-63 ASCII letters, digits,
    /// '-', '_' and '.', the first a letter or digit (so that "." and ".." never name one).
    /// The document's DeviceName pattern says the same (a test checks both agree); the
    /// generated server does not check patterns, so the daemon calls this.
    public static func validName(_ name: String) -> Bool {
        guard let first = name.unicodeScalars.first, name.unicodeScalars.count <= 63 else { return false }
        func alnum(_ u: Unicode.Scalar) -> Bool { u.isASCII && CharacterSet.alphanumerics.contains(u) }
        return alnum(first) && name.unicodeScalars.allSatisfy { alnum($0) || "-_.".unicodeScalars.contains($0) }
    }
}

extension Components.Schemas.RegistrationBatch {
    /// Envelopes per request (the document's maxItems).
    public static let maximum = 1024
}

extension Components.Schemas.ReconcileSummary {
    /// A reconcile that found and did nothing.
    public static let none = ReconcileSummary(
        rulesKept: 0, rulesRestored: 0, rulesRewritten: 0, rulesRemoved: 0,
        takeoversKept: 0, takeoversRestored: 0, takeoversRewritten: 0, takeoversRemoved: 0,
        transfersResumed: 0, transfersRolledBack: 0, transfersCleared: 0, seconds: 0)
}

/// Which role serves each operation that not both serve (the document's x-baton-role; a test
/// keeps the two in step). The server answers another role's operation 404 before it reads the
/// request, as if the route were not there.
public enum OperationRoles {
    public static let agentOnly: Set<String> = [
        "register", "listDevices", "addDevice", "showDevice", "deleteDevice", "listPolicies", "addPolicy", "deletePolicy",
        "listAnchors", "createAnchor", "showAnchor", "endAnchor", "moveAnchor",
        "listSIPUsers", "addSIPUser", "deleteSIPUser", "listSIPRegistrations", "listSIPCalls", "showSIPCall",
    ]
    public static let nodeOnly: Set<String> = ["startTransfer"]

    /// The role that serves `operationID`, or nil when both do.
    public static func servedBy(_ operationID: String) -> DaemonRole? {
        agentOnly.contains(operationID) ? .agent : nodeOnly.contains(operationID) ? .node : nil
    }
}
