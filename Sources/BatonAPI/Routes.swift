/// Every route batond serves. The server registers exactly these (APIServer switches over
/// them), docs/openapi.json documents exactly these (OpenAPIDocumentTests checks both ways).
public enum APIRoute: String, CaseIterable, Sendable {
    case status
    case metrics
    case listTransfers
    case startTransfer
    case showTransfer
    case endTransfer
    case register
    case listDevices
    case addDevice
    case showDevice
    case deleteDevice
    case listPolicies
    case addPolicy
    case deletePolicy

    public enum Method: String, Sendable { case GET, POST, DELETE }

    /// Which daemons serve it; the other role answers 404 with a message that says whose it is.
    public enum Role: String, Sendable { case both, agent, node }

    public var method: Method {
        switch self {
        case .status, .metrics, .listTransfers, .showTransfer, .listDevices, .showDevice, .listPolicies: .GET
        case .startTransfer, .endTransfer, .register, .addDevice, .addPolicy: .POST
        case .deleteDevice, .deletePolicy: .DELETE
        }
    }

    /// OpenAPI's path template ({name} for a parameter).
    public var path: String {
        switch self {
        case .status: "/v1/status"
        case .metrics: "/metrics"
        case .listTransfers, .startTransfer: "/v1/transfers"
        case .showTransfer: "/v1/transfers/{id}"
        case .endTransfer: "/v1/transfers/{id}/end"
        case .register: "/v1/registrations"
        case .listDevices, .addDevice: "/v1/devices"
        case .showDevice, .deleteDevice: "/v1/devices/{name}"
        case .listPolicies, .addPolicy: "/v1/policies"
        case .deletePolicy: "/v1/policies/{id}"
        }
    }

    public var role: Role {
        switch self {
        case .status, .metrics, .listTransfers, .showTransfer, .endTransfer: .both
        case .startTransfer: .node
        case .register, .listDevices, .addDevice, .showDevice, .deleteDevice, .listPolicies, .addPolicy, .deletePolicy: .agent
        }
    }

    /// The methods served on a concrete request path ("/v1/devices/tn" matches "/v1/devices/{name}").
    public static func methods(servingPath path: String) -> [Method] {
        let parts = path.split(separator: "/", omittingEmptySubsequences: false)
        var out: [Method] = []
        for route in allCases {
            let template = route.path.split(separator: "/", omittingEmptySubsequences: false)
            guard template.count == parts.count,
                  zip(template, parts).allSatisfy({ t, p in (t.hasPrefix("{") && !p.isEmpty) || t == p }) else { continue }
            if !out.contains(route.method) { out.append(route.method) }
        }
        return out
    }

    /// The OpenAPI operationId.
    public var operationID: String { rawValue }
}
