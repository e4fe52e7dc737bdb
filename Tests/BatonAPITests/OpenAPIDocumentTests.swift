import BatonAPI
import BatonModel
import Foundation
import Testing

// docs/openapi.json against the code: the generated code (Sources/BatonOpenAPI) current, the
// bodies (encoded with Swift's default JSONEncoder; the model's types inside them are written
// by hand), and the errors (ControlError.Code).
// The document is what schemathesis fuzzes the daemon against (scripts/fuzz-api), so a body
// property or a route the document does not know fails here first.

@Suite("docs/openapi.json")
struct OpenAPIDocumentTests {
    let document: OpenAPI

    init() throws {
        document = try OpenAPI.load()
    }

    // MARK: - The generated code

    @Test("Sources/BatonOpenAPI is what `make openapi` generates from this document and scripts/openapi's configuration")
    func generatedCodeIsCurrent() throws {
        let root = OpenAPI.repository
        let stamp = try String(contentsOf: root.appendingPathComponent("scripts/openapi/generated.sha256"), encoding: .utf8)
        let stamped = Set(stamp.split(separator: "\n").compactMap { $0.split(separator: " ", omittingEmptySubsequences: true).last.map(String.init) })
        let generated = try FileManager.default.contentsOfDirectory(atPath: root.appendingPathComponent("Sources/BatonOpenAPI").path)
        #expect(stamped.isSuperset(of: ["docs/openapi.json", "scripts/openapi/openapi-generator-config.yaml"]))
        #expect(Set(generated.map { "Sources/BatonOpenAPI/\($0)" }) == stamped.filter { $0.hasPrefix("Sources/") },
                "Sources/BatonOpenAPI holds other files than the generator wrote: run make openapi")
        let check = Process()
        check.executableURL = URL(fileURLWithPath: "/usr/bin/sha256sum")
        check.arguments = ["--check", "--quiet", "scripts/openapi/generated.sha256"]
        check.currentDirectoryURL = root
        let output = Pipe()
        check.standardOutput = output
        check.standardError = output
        try check.run()
        let said = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        check.waitUntilExit()
        #expect(check.terminationStatus == 0,
                "the document, the configuration or the generated code changed since make openapi last ran (run it, and commit what it writes):\n\(said)")
    }

    @Test("every operation has an operationId and an x-baton-role (OperationRoles's); every path parameter is declared, with a pattern; query parameters are optional flags")
    func operations() throws {
        let operations = document.operations
        #expect(operations.count >= 14)
        for op in operations {
            #expect(["both", "agent", "node"].contains(op.role), "\(op.id): x-baton-role is \(op.role)")
            #expect((OperationRoles.servedBy(op.id)?.rawValue ?? "both") == op.role,
                    "\(op.id): x-baton-role is \(op.role), OperationRoles says \(OperationRoles.servedBy(op.id)?.rawValue ?? "both")")
            let template = Set(op.path.split(separator: "/").filter { $0.hasPrefix("{") }.map { String($0.dropFirst().dropLast()) })
            let parameters = (op.body["parameters"] as? [Any] ?? []).compactMap { document.resolve($0) }
            let declared = Set(parameters.filter { $0["in"] as? String == "path" }.compactMap { $0["name"] as? String })
            #expect(declared == template, "\(op.id): path parameters \(declared.sorted()), template has \(template.sorted())")
            for parameter in parameters where parameter["in"] as? String == "path" {
                #expect(parameter["required"] as? Bool == true)
                let schema = try #require(document.resolve(parameter["schema"] as Any))
                #expect(schema["pattern"] is String, "\(op.id): parameter \(parameter["name"] ?? "?") has no pattern")
            }
            // Query parameters are optional flags.
            for parameter in parameters where parameter["in"] as? String == "query" {
                #expect(parameter["required"] as? Bool != true, "\(op.id): query parameter \(parameter["name"] ?? "?") is required")
                #expect(document.resolve(parameter["schema"] as Any)?["type"] as? String == "boolean")
            }
        }
    }

    // MARK: - Bodies

    @Test("a fully populated body has exactly the schema's properties, and matches it", arguments: BodySample.all)
    func fullBody(_ sample: BodySample) throws {
        let schema = try #require(document.schemas[sample.schema] as? [String: Any], "no schema \(sample.schema)")
        let encoded = try sample.encodeFull()
        let object = try #require(encoded as? [String: Any])
        let stored = Set(Mirror(reflecting: sample.full).children.compactMap(\.label))
        // The sample sets every property (so a new optional one must be added here, and to the document).
        #expect(Set(object.keys) == stored, "\(sample.schema): the sample leaves \(stored.subtracting(object.keys).sorted()) unset")
        let properties = Set(document.properties(of: schema).keys)
        #expect(stored.subtracting(properties).isEmpty, "\(sample.schema): properties missing from the schema: \(stored.subtracting(properties).sorted())")
        #expect(properties.subtracting(stored).isEmpty, "\(sample.schema): the schema has properties the type does not: \(properties.subtracting(stored).sorted())")
        let problems = document.validate(encoded, against: schema, at: sample.schema)
        #expect(problems.isEmpty, "\(sample.schema):\n\(problems.joined(separator: "\n"))")
    }

    @Test("a body without its optionals has exactly the schema's required properties, and matches it", arguments: BodySample.all)
    func minimalBody(_ sample: BodySample) throws {
        let schema = try #require(document.schemas[sample.schema] as? [String: Any], "no schema \(sample.schema)")
        let encoded = try sample.encodeMinimal()
        let object = try #require(encoded as? [String: Any])
        let required = Set(document.required(of: schema))
        #expect(Set(object.keys) == required,
                "\(sample.schema): required is \(required.sorted()); the non-optional properties are \(object.keys.sorted())")
        let problems = document.validate(encoded, against: schema, at: sample.schema)
        #expect(problems.isEmpty, "\(sample.schema):\n\(problems.joined(separator: "\n"))")
    }

    @Test("every body an operation takes or answers has a sample here")
    func everyBodyHasASample() {
        let names = Set(BodySample.all.map(\.schema))
        for op in document.operations {
            var media: [Any] = []
            if let request = (op.body["requestBody"]).flatMap({ document.resolve($0) }) {
                media.append((request["content"] as? [String: Any])?["application/json"] as Any)
            }
            for (status, response) in op.body["responses"] as? [String: Any] ?? [:] where status.hasPrefix("2") {
                media.append((document.resolve(response)?["content"] as? [String: Any])?["application/json"] as Any)
            }
            for m in media {
                if let name = document.schemaName(of: m) { #expect(names.contains(name), "\(op.id): no sample for \(name)") }
            }
        }
    }

    // MARK: - Enums

    @Test("the document's enums are the model's: roles, transfer states and modes")
    func enums() throws {
        func documented(_ schema: String) throws -> Set<String> {
            let body = try #require(document.schemas[schema] as? [String: Any], "no schema \(schema)")
            return Set(body["enum"] as? [String] ?? [])
        }
        #expect(try documented("Role") == Set(Role.allCases.map(\.name)))
        #expect(try documented("TransferState") == Set(TransferState.allCases.map(\.rawValue)))
        #expect(try documented("TransferMode") == Set(TransferMode.allCases.map(\.rawValue)))
        #expect(try documented("DaemonRole") == Set(DaemonRole.allCases.map(\.rawValue)))
        // Each role's states are the union's.
        let union = Set(TransferState.allCases.map(\.rawValue))
        let roles = AgentTransferState.allCases.map(\.rawValue) + TNTransferState.allCases.map(\.rawValue)
            + TargetTransferState.allCases.map(\.rawValue)
        #expect(Set(roles) == union)
    }

    // MARK: - Errors

    @Test("every ControlError code's status is documented, and every error answer is an ErrorBody with that code")
    func errors() throws {
        let codes = Dictionary(uniqueKeysWithValues: ControlError.Code.allCases.map { (String($0.httpStatus), $0.rawValue) })
        let errorBody = try #require(document.schemas["ErrorBody"] as? [String: Any])
        let code = try #require(document.properties(of: errorBody)["code"]?.first)
        let codeEnum = (document.resolve(code)?["enum"] as? [String]) ?? []
        #expect(Set(codeEnum) == Set(codes.values), "ErrorBody.code's enum is \(codeEnum.sorted())")

        var documented: Set<String> = []
        for op in document.operations {
            let responses = try #require(op.body["responses"] as? [String: Any])
            for (status, response) in responses where !status.hasPrefix("2") {
                documented.insert(status)
                #expect(codes[status] != nil, "\(op.id): \(status) is no ControlError code's status")
                let resolved = try #require(document.resolve(response))
                let media = try #require((resolved["content"] as? [String: Any])?["application/json"] as? [String: Any],
                                         "\(op.id): \(status) is not application/json")
                let name = document.schemaName(of: media)
                #expect(name == "ErrorBody", "\(op.id): \(status) is not an ErrorBody")
            }
            // Every operation can meet a daemon that is shutting down; a role's operation answers the other role 404.
            #expect(responses["503"] != nil, "\(op.id): 503 not documented")
            if op.role != "both" {
                #expect(responses["404"] != nil, "\(op.id): the other role's 404 not documented")
            }
            if op.path.contains("{") || op.body["requestBody"] != nil {
                #expect(responses["400"] != nil, "\(op.id): 400 not documented")
            }
        }
        for code in ControlError.Code.allCases {
            #expect(documented.contains(String(code.httpStatus)), "\(code.rawValue) (\(code.httpStatus)) is documented nowhere")
        }
    }

    // MARK: - Patterns against the code

    @Test("the device name pattern accepts exactly what Device.validName does")
    func deviceNames() throws {
        let pattern = try #require(document.parameterPattern("DeviceName"))
        let schema = try #require(document.schemas["DeviceName"] as? [String: Any])
        #expect(schema["pattern"] as? String == pattern)
        let names = ["a", "tn-1", "x.y_z", "A9", String(repeating: "a", count: 63), String(repeating: "a", count: 64), "",
                     "a b", "é", "a/b", "a:b", "*", "ü1", "tab\t", "名前", ".", "..", "-a", "a-"]
        for name in names {
            #expect(OpenAPI.matches(pattern, name) == Device.validName(name), "'\(name)': pattern \(OpenAPI.matches(pattern, name)), validName \(Device.validName(name))")
        }
    }

    @Test("addresses as IPAddress and IPPrefix encode them match the patterns")
    func addressPatterns() throws {
        let address = try #require((document.schemas["IPAddress"] as? [String: Any])?["pattern"] as? String)
        let prefix = try #require((document.schemas["IPPrefix"] as? [String: Any])?["pattern"] as? String)
        for text in ["10.0.0.2", "0.0.0.0", "255.255.255.255", "::", "::1", "2001:db8::2", "fe80::1:2:3:4",
                     "1:2:3:4:5:6:7:8", "::ffff:10.0.0.1", "::102:304", "::1:0", "2001:db8:0:0:1::1"] {
            let encoded = IPAddress(text)!.description
            #expect(OpenAPI.matches(address, encoded), "IPAddress pattern refuses \(encoded)")
            let length = IPAddress(text)!.family == .v4 ? 24 : 64
            #expect(OpenAPI.matches(prefix, "\(encoded)/\(length)"), "IPPrefix pattern refuses \(encoded)/\(length)")
        }
        for text in ["10.0.0.256", "10.0.0", "01.2.3.4", "1:2:3:4:5:6:7:8:9", "1::2::3", "fe80::1%eth0", "10.0.0.1 ", "host"] {
            #expect(IPAddress(text) == nil)
            #expect(!OpenAPI.matches(address, text), "IPAddress pattern accepts \(text)")
        }
        for text in ["10.0.0.0/33", "2001:db8::/129", "10.0.0.1/-1", "10.0.0.1/", "/24"] {
            #expect(!OpenAPI.matches(prefix, text), "IPPrefix pattern accepts \(text)")
        }
    }
}

// MARK: - Samples

/// A body type with a fully populated value (every optional set) and a minimal one (every
/// optional nil, collections empty).
struct BodySample: Sendable, CustomTestStringConvertible {
    let schema: String
    let full: any Encodable & Sendable
    let minimal: any Encodable & Sendable

    var testDescription: String { schema }

    func encodeFull() throws -> Any { try Self.json(full) }
    func encodeMinimal() throws -> Any { try Self.json(minimal) }

    static func json(_ value: any Encodable) throws -> Any {
        try JSONSerialization.jsonObject(with: JSONEncoder().encode(value), options: [.fragmentsAllowed])
    }

    static let key = "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA"
    static let transferID = "0123456789abcdef"

    static let match = SessionMatch(proto: .udp, source: IPAddress("192.0.2.7")!, sourcePort: 40000,
                                    destination: IPAddress("10.0.0.2")!, destinationPort: 5004)
    static let minimalMatch = SessionMatch(proto: .udp, source: nil, sourcePort: nil,
                                           destination: IPAddress("2001:db8::2")!, destinationPort: nil)
    static let session = SessionInfo(match: match, forward: "l2 → 02:00:00:00:00:03", packets: 120, bytes: 9600,
                                     idleSeconds: 0.25, closed: false)
    static let minimalSession = SessionInfo(match: minimalMatch)
    static let transfer = TransferInfo(id: transferID, role: .agent, state: .active, original: IPAddress("10.0.0.2")!,
                                       temporary: IPAddress("10.0.0.200")!, mode: .l2, target: "10.0.0.3", sessions: [session],
                                       reason: "idle", started: 1_700_000_000.5, ended: 1_700_000_030.25,
                                       milestones: ["registered": 12.5, "off-wire": 13])
    static let minimalTransfer = TransferInfo(id: transferID, role: .tn, state: .negotiating, original: IPAddress("fd00::2")!,
                                              temporary: nil, mode: .l3, target: nil, sessions: [], reason: nil,
                                              started: 1_700_000_000, ended: nil, milestones: [:])
    static let reconcile = ReconcileSummary(rulesKept: 1, rulesRestored: 2, rulesRewritten: 3, rulesRemoved: 4, takeoversKept: 5,
                                            takeoversRestored: 6, takeoversRewritten: 7, takeoversRemoved: 8, transfersResumed: 9,
                                            transfersRolledBack: 10, transfersCleared: 11, seconds: 0.012)
    static var status: DaemonStatus {
        var s = DaemonStatus(role: .agent, publicKey: key, interface: "eth0", mac: MACAddress("02:ab:cd:ef:00:01")!,
                             addresses: ["10.0.0.1/24", "fd00::1/64"], port: 7390, activeTransfers: 1,
                             rejected: ["forged": 1, "unknown-transfer": 2], heldAddresses: ["10.0.0.2"],
                             temporaryAddresses: ["10.0.0.200"], takeovers: ["10.0.0.2"])
        s.reconcile = reconcile
        return s
    }
    static let minimalStatus = DaemonStatus(role: .node, publicKey: key, interface: "eth0", mac: MACAddress("02:00:00:00:00:02")!,
                                            addresses: [], port: 7390, activeTransfers: 0, rejected: [:],
                                            heldAddresses: [], temporaryAddresses: [], takeovers: [])
    static let device = Device(name: "tn-1", publicKey: key, addresses: ["10.0.0.2/32", "2001:db8::/64"], rateLimit: 50,
                               enrolled: 1_700_000_000)
    static let minimalDevice = Device(name: "t", publicKey: key, addresses: ["10.0.0.3/32"])
    static let policy = Policy(id: 7, from: "tn-1", to: "*")
    static let minimalPolicy = Policy(from: "*", to: "target.a_b")
    static let result = RegistrationResult(transfer: transferID, accepted: false, envelope: "AAEC", error: "forbidden: no policy")
    static let minimalResult = RegistrationResult(transfer: nil, accepted: false)

    static let remote = Endpoint(address: IPAddress("192.0.2.7")!, port: 40000)
    static let deviceEndpoint = Endpoint(address: IPAddress("10.0.0.3")!, port: 6000)
    static let legs = LegCounters(packets: 1000, bytes: 172_000, idleSeconds: 0.02)
    static let anchor = AnchorInfo(id: transferID, state: .active, proto: .udp, anchor: Endpoint(address: IPAddress("10.0.0.1")!, port: 30000),
                                   relayPort: 30001, remote: remote, device: deviceEndpoint,
                                   retired: [RetiredDevice(device: Endpoint(address: IPAddress("10.0.0.4")!, port: 6000), until: 1_700_000_002,
                                                           lockedOut: true, counters: legs)],
                                   idleTimeout: 60, created: 1_700_000_000, moved: 1_700_000_001, ended: 1_700_000_003,
                                   reason: "operator", moves: 1, toDevice: legs, toRemote: legs, rtpContinuity: true,
                                   rtp: RTPState(started: true, ssrc: 0xdead_beef, lastSequence: 65535, rebases: 1, packets: 12))
    static let minimalAnchor = AnchorInfo(id: transferID, state: .ended, proto: .tcp, anchor: Endpoint(address: IPAddress("fd00::1")!, port: 30000),
                                          relayPort: 30001, remote: Endpoint(address: IPAddress("2001:db8::7")!, port: 1),
                                          device: Endpoint(address: IPAddress("fd00::3")!, port: 2), retired: [], idleTimeout: 0.5,
                                          created: 1_700_000_000, moves: 0, rtpContinuity: false)

    static let sipUser = SIPUser(username: "alice", realm: "example.com", aor: "sip:alice@example.com", created: 1_700_000_000)
    static let registration = SIPRegistration(aor: "sip:alice@example.com", contact: "sip:alice@10.0.0.3:5062",
                                              instance: "urn:uuid:00000000-0000-4000-8000-00000000d001",
                                              publicGRUU: "sip:alice@example.com;gr=urn:uuid:00000000-0000-4000-8000-00000000d001",
                                              temporaryGRUUs: 2, expiresIn: 3599)
    static let minimalRegistration = SIPRegistration(aor: "sip:bob@example.com", contact: "sip:bob@10.0.0.4", temporaryGRUUs: 0, expiresIn: 0)
    static let sipCall = SIPCall(id: "9be67d575fc40b44", state: .confirmed,
                                 legs: [SIPLeg(role: .device, callID: "a@b", localTag: "s1", remoteTag: "d1", peer: "10.0.0.3:5062",
                                               media: deviceEndpoint, aor: "sip:alice@example.com", instance: "urn:uuid:1"),
                                        SIPLeg(role: .remote, callID: "c@d", localTag: "s2", peer: "192.0.2.7:5060")],
                                 rtpAnchor: transferID, rtcpAnchor: transferID, anchor: Endpoint(address: IPAddress("10.0.0.1")!, port: 30000),
                                 relayPort: 30001, toDevice: 100, toRemote: 99, switches: 1, created: 1_700_000_000, ended: 1_700_000_009,
                                 reason: "bye from remote", timeline: [SIPTimelineEvent(event: "invite received", at: 1_700_000_000)])
    static let minimalSIPCall = SIPCall(id: "1", state: .setup, legs: [], anchor: Endpoint(address: IPAddress("fd00::1")!, port: 30000),
                                        relayPort: 30001, switches: 0, created: 1_700_000_000, timeline: [])

    static let all: [BodySample] = [
        BodySample(schema: "SIPUserRequest", full: SIPUserRequest(username: "alice", password: "wonderland-42"),
                   minimal: SIPUserRequest(username: "a", password: "12345678")),
        BodySample(schema: "SIPUser", full: sipUser, minimal: sipUser),
        BodySample(schema: "SIPUserList", full: SIPUserList(users: [sipUser]), minimal: SIPUserList(users: [])),
        BodySample(schema: "SIPRegistration", full: registration, minimal: minimalRegistration),
        BodySample(schema: "SIPRegistrationList", full: SIPRegistrationList(registrations: [registration, minimalRegistration]),
                   minimal: SIPRegistrationList(registrations: [])),
        BodySample(schema: "SIPCall", full: sipCall, minimal: minimalSIPCall),
        BodySample(schema: "SIPCallList", full: SIPCallList(calls: [sipCall, minimalSIPCall]), minimal: SIPCallList(calls: [])),
        BodySample(schema: "AnchorRequest",
                   full: AnchorRequest(proto: .tcp, remote: remote, device: deviceEndpoint, anchor: IPAddress("10.0.0.1")!, port: 30000, idleTimeout: 30,
                                       rtpContinuity: true),
                   minimal: AnchorRequest(remote: remote, device: deviceEndpoint)),
        BodySample(schema: "AnchorMove", full: AnchorMove(device: deviceEndpoint, lockout: 2.5, grace: 1), minimal: AnchorMove(device: deviceEndpoint)),
        BodySample(schema: "AnchorInfo", full: anchor, minimal: minimalAnchor),
        BodySample(schema: "AnchorList", full: AnchorList(anchors: [anchor, minimalAnchor]), minimal: AnchorList(anchors: [])),
        BodySample(schema: "Endpoint", full: remote, minimal: deviceEndpoint),
        BodySample(schema: "RTPState", full: anchor.rtp!, minimal: RTPState(started: false, ssrc: 0, rebases: 0, packets: 0)),
        BodySample(schema: "LegCounters", full: legs, minimal: LegCounters(packets: 0, bytes: 0)),
        BodySample(schema: "RetiredDevice", full: anchor.retired[0], minimal: RetiredDevice(device: deviceEndpoint, until: 1, lockedOut: false)),
        BodySample(schema: "SessionMatch", full: match, minimal: minimalMatch),
        BodySample(schema: "TransferRequest",
                   full: TransferRequest(to: "target", sessions: [match], temporary: IPAddress("10.0.0.200")!, mode: .l3, idleTimeout: 30),
                   minimal: TransferRequest(to: "target", sessions: [minimalMatch], mode: .l2)),
        BodySample(schema: "SessionInfo", full: session, minimal: minimalSession),
        BodySample(schema: "TransferInfo", full: transfer, minimal: minimalTransfer),
        BodySample(schema: "TransferList", full: TransferList(transfers: [transfer, minimalTransfer]), minimal: TransferList(transfers: [])),
        BodySample(schema: "DaemonStatus", full: status, minimal: minimalStatus),
        BodySample(schema: "ReconcileSummary", full: reconcile, minimal: ReconcileSummary.none),
        BodySample(schema: "Device", full: device, minimal: minimalDevice),
        BodySample(schema: "DeviceList", full: DeviceList(devices: [device, minimalDevice]), minimal: DeviceList(devices: [])),
        BodySample(schema: "Policy", full: policy, minimal: minimalPolicy),
        BodySample(schema: "PolicyList", full: PolicyList(policies: [policy, minimalPolicy]), minimal: PolicyList(policies: [])),
        BodySample(schema: "RegistrationBatch", full: RegistrationBatch(envelopes: ["AAEC", "AwQF"]),
                   minimal: RegistrationBatch(envelopes: ["AAEC"])),
        BodySample(schema: "RegistrationResult", full: result, minimal: minimalResult),
        BodySample(schema: "RegistrationResults", full: RegistrationResults(results: [result, minimalResult]),
                   minimal: RegistrationResults(results: [])),
        BodySample(schema: "ErrorBody", full: ErrorBody(code: .notFound, error: "no transfer \(transferID)"),
                   minimal: ErrorBody(code: .invalid, error: "malformed JSON")),
    ]
}

// MARK: - The document

/// docs/openapi.json, read with JSONSerialization, and just enough of OpenAPI 3.0 to check
/// encoded values against it: $ref, allOf, type, properties, required, additionalProperties,
/// items, enum, pattern, minimum/maximum, minItems/maxItems, minLength/maxLength.
struct OpenAPI: @unchecked Sendable {
    let root: [String: Any]

    static let methods: Set<String> = ["get", "put", "post", "delete", "patch", "head", "options", "trace"]

    static func load() throws -> OpenAPI {
        let url = repository.appendingPathComponent("docs/openapi.json")
        let data = try Data(contentsOf: url)
        let root = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any], "\(url.path) is not a JSON object")
        #expect(root["openapi"] as? String == "3.0.3")
        return OpenAPI(root: root)
    }

    var paths: [String: [String: [String: Any]]] {
        (root["paths"] as? [String: [String: Any]] ?? [:]).mapValues { item in
            item.compactMapValues { $0 as? [String: Any] }
        }
    }

    var components: [String: Any] { root["components"] as? [String: Any] ?? [:] }
    var schemas: [String: Any] { components["schemas"] as? [String: Any] ?? [:] }

    /// Every operation: its path, method, operationId, x-baton-role and body.
    var operations: [(path: String, method: String, id: String, role: String, body: [String: Any])] {
        paths.flatMap { path, item in
            item.filter { Self.methods.contains($0.key) }.map { method, op in
                (path, method, op["operationId"] as? String ?? "", op["x-baton-role"] as? String ?? "", op)
            }
        }.sorted { ($0.path, $0.method) < ($1.path, $1.method) }
    }

    /// The checkout this test file is in.
    static var repository: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }

    /// Follows `$ref`s ("#/components/…") to the object they name.
    func resolve(_ value: Any) -> [String: Any]? {
        var current = value as? [String: Any]
        var hops = 0
        while let ref = current?["$ref"] as? String, hops < 32 {
            current = lookup(ref)
            hops += 1
        }
        return current
    }

    func lookup(_ ref: String) -> [String: Any]? {
        guard ref.hasPrefix("#/") else { return nil }
        var node: Any = root
        for part in ref.dropFirst(2).split(separator: "/") {
            guard let next = (node as? [String: Any])?[String(part)] else { return nil }
            node = next
        }
        return node as? [String: Any]
    }

    /// The component schema a media type's schema names with `$ref`.
    func schemaName(of media: Any?) -> String? {
        guard let ref = ((media as? [String: Any])?["schema"] as? [String: Any])?["$ref"] as? String else { return nil }
        return ref.hasPrefix("#/components/schemas/") ? String(ref.dropFirst("#/components/schemas/".count)) : nil
    }

    /// The schema and, through allOf, every schema it is made of.
    func parts(of schema: [String: Any]) -> [[String: Any]] {
        guard let s = resolve(schema) else { return [] }
        return [s] + (s["allOf"] as? [Any] ?? []).compactMap(resolve).flatMap(parts)
    }

    /// Property name → every schema that constrains it (one per allOf part that declares it).
    func properties(of schema: [String: Any]) -> [String: [[String: Any]]] {
        var out: [String: [[String: Any]]] = [:]
        for part in parts(of: schema) {
            for (name, property) in part["properties"] as? [String: Any] ?? [:] {
                if let p = resolve(property) { out[name, default: []].append(p) }
            }
        }
        return out
    }

    func required(of schema: [String: Any]) -> [String] {
        Array(Set(parts(of: schema).flatMap { $0["required"] as? [String] ?? [] }))
    }

    func parameterPattern(_ name: String) -> String? {
        let parameter = lookup("#/components/parameters/\(name)")
        return (parameter?["schema"] as? [String: Any])?["pattern"] as? String
    }

    static func matches(_ pattern: String, _ text: String) -> Bool {
        guard let regex = try? NSRegularExpression(pattern: pattern) else { return false }
        return regex.firstMatch(in: text, range: NSRange(text.startIndex..., in: text)) != nil
    }

    /// Every way `value` (from JSONSerialization) breaks `schema`; empty if it conforms.
    func validate(_ value: Any, against schema: [String: Any], at path: String) -> [String] {
        var problems: [String] = []
        let parts = parts(of: schema)
        for part in parts {
            problems += check(value, part, path)
        }
        if let object = value as? [String: Any] {
            let properties = properties(of: schema)
            let dictionary = parts.compactMap { $0["additionalProperties"] as? [String: Any] }.first
            for (key, member) in object {
                if let constraints = properties[key] {
                    for constraint in constraints {
                        problems += validate(member, against: constraint, at: "\(path).\(key)")
                    }
                } else if let dictionary, properties.isEmpty {
                    problems += validate(member, against: dictionary, at: "\(path).\(key)")
                } else {
                    problems.append("\(path): \(key) is not a property of the schema")
                }
            }
            for key in required(of: schema) where object[key] == nil {
                problems.append("\(path): required \(key) is missing")
            }
        }
        if let array = value as? [Any] {
            for part in parts {
                guard let items = part["items"] as? [String: Any] else { continue }
                for (i, element) in array.enumerated() {
                    problems += validate(element, against: items, at: "\(path)[\(i)]")
                }
            }
        }
        return problems
    }

    /// The keywords of one schema (no allOf, properties or items: validate does those).
    private func check(_ value: Any, _ s: [String: Any], _ path: String) -> [String] {
        var problems: [String] = []
        let number = value as? NSNumber
        if let type = s["type"] as? String {
            let ok: Bool
            switch type {
            case "string": ok = value is String
            case "object": ok = value is [String: Any]
            case "array": ok = value is [Any]
            case "boolean": ok = number != nil && !(value is String)
            case "integer": ok = number.map { $0.doubleValue == $0.doubleValue.rounded() } ?? false
            case "number": ok = number != nil && !(value is String)
            default: ok = false
            }
            if !ok { problems.append("\(path): \(value) is not of type \(type)") }
        }
        if let string = value as? String {
            if let pattern = s["pattern"] as? String, !Self.matches(pattern, string) {
                problems.append("\(path): '\(string)' does not match \(pattern)")
            }
            if let min = s["minLength"] as? Int, string.count < min { problems.append("\(path): '\(string)' is shorter than \(min)") }
            if let max = s["maxLength"] as? Int, string.count > max { problems.append("\(path): '\(string)' is longer than \(max)") }
        }
        if let allowed = s["enum"] as? [Any] {
            let strings = allowed.compactMap { $0 as? String }
            if let string = value as? String, !strings.contains(string) {
                problems.append("\(path): '\(string)' is not one of \(strings)")
            }
        }
        if let number, !(value is String), let type = s["type"] as? String, type == "integer" || type == "number" {
            let v = number.doubleValue
            if let min = (s["minimum"] as? NSNumber)?.doubleValue {
                let exclusive = s["exclusiveMinimum"] as? Bool ?? false
                if exclusive ? v <= min : v < min { problems.append("\(path): \(v) is below the minimum \(min)") }
            }
            if let max = (s["maximum"] as? NSNumber)?.doubleValue, v > max { problems.append("\(path): \(v) is above the maximum \(max)") }
        }
        if let array = value as? [Any] {
            if let min = s["minItems"] as? Int, array.count < min { problems.append("\(path): fewer than \(min) items") }
            if let max = s["maxItems"] as? Int, array.count > max { problems.append("\(path): more than \(max) items") }
        }
        return problems
    }
}
