import Crypto
import Foundation

/// A refusal with its SIP status, and the extra header a few statuses need (423's Min-Expires).
public struct SIPRefusal: Error, Equatable, Sendable, CustomStringConvertible {
    public var status: Int
    public var reason: String
    public var headers: [SIPHeaderField]
    public init(_ status: Int, _ reason: String, headers: [SIPHeaderField] = []) {
        self.status = status
        self.reason = reason
        self.headers = headers
    }
    public var description: String { "\(status) \(reason)" }
}

/// One contact bound to an address-of-record (RFC 3261 10.3), with its GRUUs (RFC 5627).
public struct Binding: Hashable, Sendable {
    public var aor: SIPURI
    public var contact: SIPURI
    /// `+sip.instance`, unquoted and without its angle brackets: `urn:uuid:…`.
    public var instanceID: String?
    public var callID: String
    public var cseq: UInt32
    /// Seconds on the registrar's clock.
    public var expires: Double
    /// Temporary GRUUs handed out to this instance under `callID`, oldest first.
    public var temporaryGRUUs: [SIPURI]

    /// `aor;gr=urn:uuid:…` (RFC 5627 3.1), for an instance.
    public var publicGRUU: SIPURI? {
        guard let instanceID else { return nil }
        var g = aor.addressOfRecord
        g.parameters = [SIPParameter("gr", instanceID)]
        return g
    }
}

/// What a GRUU names: an address-of-record and one of its instances.
public struct GRUUOwner: Hashable, Sendable {
    public var aor: SIPURI
    public var instanceID: String
    public init(aor: SIPURI, instanceID: String) {
        self.aor = aor
        self.instanceID = instanceID
    }
}

/// The registrar's bindings for its domains (RFC 3261 10.3 with GRUU, RFC 5627). A value:
/// the daemon keeps it under its lock and passes the time in, so it is tested without clocks.
public struct Registrations: Sendable {
    public var domains: Set<String>
    public var minExpires: UInt32
    public var maxExpires: UInt32
    public var defaultExpires: UInt32
    public private(set) var bindings: [String: [Binding]] = [:]     // key: AOR text
    private var temporary: [String: GRUUOwner] = [:]                // key: temporary GRUU's user part

    public init(domains: Set<String>, minExpires: UInt32 = 60, maxExpires: UInt32 = 7200, defaultExpires: UInt32 = 3600) {
        self.domains = Set(domains.map { $0.lowercased() })
        self.minExpires = minExpires
        self.maxExpires = maxExpires
        self.defaultExpires = defaultExpires
    }

    /// The AOR key: scheme sip, user, host; what To names (RFC 3261 10.3 step 5).
    static func key(_ aor: SIPURI) -> String { aor.addressOfRecord.description }

    /// The outcome of a REGISTER: the bindings of the AOR after it, each with the GRUUs to
    /// list in the 200 (the contact's own temporary GRUU is the newest).
    public struct Outcome: Sendable {
        public var aor: SIPURI
        public var bindings: [Binding]
        public var gruu: Bool
    }

    /// Applies an authenticated REGISTER for the To's AOR (steps 3-8 of RFC 3261 10.3 and
    /// RFC 5627 6). `now` is the registrar's clock in seconds.
    public mutating func register(_ request: SIPMessage, now: Double) throws(SIPRefusal) -> Outcome {
        guard request.method == "REGISTER" else { throw SIPRefusal(405, "Method Not Allowed") }
        guard let to = request.to, let aor = to.uri.sipURI?.addressOfRecord, aor.user != nil else {
            throw SIPRefusal(404, "Not Found")
        }
        guard case .name(let domain) = aor.host, domains.contains(domain) else { throw SIPRefusal(404, "Not Found") }
        guard let callID = request.callID, let cseq = request.cseq else { throw SIPRefusal(400, "Bad Request") }
        let requires = request.headers.optionTags("require")
        let unknown = requires.subtracting(["gruu", "outbound", "path"])
        if !unknown.isEmpty {
            throw SIPRefusal(420, "Bad Extension", headers: [SIPHeaderField("Unsupported", unknown.sorted().joined(separator: ", "))])
        }
        let gruu = request.headers.optionTags("supported").contains("gruu") || requires.contains("gruu")
        let headerExpires = request.headers["expires"].flatMap { UInt32($0) }
        let key = Self.key(aor)
        var current = bindings[key, default: []].filter { $0.expires > now }

        guard let contacts = request.headers.list("contact") else { throw SIPRefusal(400, "Bad Request") }
        if contacts == ["*"] {
            // Remove all: only with Expires: 0 and no other contact (step 6).
            guard headerExpires == 0 else { throw SIPRefusal(400, "Bad Request - Contact * needs Expires: 0") }
            if current.contains(where: { $0.callID == callID && cseq.number <= $0.cseq }) {
                throw SIPRefusal(500, "Server Internal Error - CSeq out of order")
            }
            dropTemporaries(of: current)
            bindings[key] = nil
            return Outcome(aor: aor, bindings: [], gruu: gruu)
        }
        if contacts.contains("*") { throw SIPRefusal(400, "Bad Request - Contact * beside other contacts") }

        var updates: [(SIPURI, String?, UInt32)] = []
        for c in contacts {
            guard let na = try? NameAddress(c), let uri = na.uri.sipURI else { throw SIPRefusal(400, "Bad Request - contact \(c)") }
            let expires = na.parameters[parameter: "expires"].flatMap { UInt32($0) } ?? headerExpires ?? defaultExpires
            if expires != 0 && expires < minExpires {
                throw SIPRefusal(423, "Interval Too Brief", headers: [SIPHeaderField("Min-Expires", "\(minExpires)")])
            }
            let instance = na.parameters[parameter: "+sip.instance"].map(Self.instanceID)
            updates.append((uri, instance ?? nil, min(expires, maxExpires)))
        }
        for (uri, instance, expires) in updates {
            let i = current.firstIndex { b in
                if let instance, b.instanceID == instance { return true }
                return b.contact.isEquivalent(to: uri)
            }
            if let i {
                let b = current[i]
                if b.callID == callID && cseq.number <= b.cseq { throw SIPRefusal(500, "Server Internal Error - CSeq out of order") }
                if expires == 0 {
                    dropTemporaries(of: [b])
                    current.remove(at: i)
                    continue
                }
                var n = b
                n.contact = uri
                n.expires = now + Double(expires)
                n.cseq = cseq.number
                // A new Call-ID starts the instance's temporary GRUUs afresh (RFC 5627 6).
                if n.callID != callID {
                    dropTemporaries(of: [b])
                    n.temporaryGRUUs = []
                    n.callID = callID
                }
                if gruu, let instance = n.instanceID { n.temporaryGRUUs.append(mintTemporary(aor: aor, instance: instance)) }
                current[i] = n
            } else if expires > 0 {
                var n = Binding(aor: aor, contact: uri, instanceID: instance, callID: callID, cseq: cseq.number,
                                expires: now + Double(expires), temporaryGRUUs: [])
                if gruu, let instance { n.temporaryGRUUs.append(mintTemporary(aor: aor, instance: instance)) }
                current.append(n)
            }
        }
        bindings[key] = current.isEmpty ? nil : current
        return Outcome(aor: aor, bindings: current, gruu: gruu)
    }

    /// The 200 OK to a REGISTER: every binding's Contact with its remaining expiry and, when
    /// the client supports GRUU and sent an instance, its pub-gruu and newest temp-gruu.
    public static func okResponse(to request: SIPMessage, outcome: Outcome, now: Double, toTag: String) -> SIPMessage {
        var r = request.response(200, "OK", toTag: toTag)
        for b in outcome.bindings {
            var c = "<\(b.contact)>;expires=\(max(0, Int((b.expires - now).rounded())))"
            if let i = b.instanceID { c += ";+sip.instance=\"<\(i)>\"" }
            if outcome.gruu, let pub = b.publicGRUU, let temp = b.temporaryGRUUs.last {
                c += ";pub-gruu=\(QuotedString.quoted(pub.description));temp-gruu=\(QuotedString.quoted(temp.description))"
            }
            r.headers.add("Contact", c)
        }
        if outcome.gruu { r.headers.add("Require", "gruu") }
        return r
    }

    /// `"<urn:uuid:…>"` → `urn:uuid:…` (lowercased: URN comparison ignores case here).
    static func instanceID(_ raw: String) -> String? {
        let v = QuotedString.unquoted(raw)
        guard v.hasPrefix("<"), v.hasSuffix(">"), v.count > 2 else { return nil }
        return String(v.dropFirst().dropLast()).lowercased()
    }

    /// Who a GRUU names while its instance is bound: public (`;gr=urn`) or temporary (`;gr`).
    public func resolve(_ gruu: SIPURI, now: Double) -> GRUUOwner? {
        guard let gr = gruu.parameters[parameter: "gr"] else { return nil }
        let owner: GRUUOwner
        if gr.isEmpty {
            guard let user = gruu.user, let o = temporary[user] else { return nil }
            owner = o
        } else {
            owner = GRUUOwner(aor: gruu.addressOfRecord, instanceID: gr.lowercased())
        }
        let live = bindings[Self.key(owner.aor), default: []].contains { $0.instanceID == owner.instanceID && $0.expires > now }
        return live ? owner : nil
    }

    /// Which instance sent a request, from its Contact: the owner of the GRUU it names, or,
    /// for a client that keeps its registered contact rather than its GRUU (linphone 5.1), the
    /// live binding with that very contact and the Contact's `+sip.instance`. Both name the
    /// same thing: the public GRUU is the AOR and the instance, and is no secret either. A
    /// Contact that is a GRUU is taken as one only (an unknown GRUU resolves to nobody).
    public func sender(contact: NameAddress, now: Double) -> GRUUOwner? {
        guard let uri = contact.uri.sipURI else { return nil }
        if uri.parameters[parameter: "gr"] != nil { return resolve(uri, now: now) }
        guard let instance = contact.parameters[parameter: "+sip.instance"].flatMap(Self.instanceID) else { return nil }
        return all(now: now).first { $0.instanceID == instance && $0.contact.isEquivalent(to: uri) }
            .map { GRUUOwner(aor: $0.aor, instanceID: instance) }
    }

    /// Live bindings of an AOR.
    public func bindings(of aor: SIPURI, now: Double) -> [Binding] {
        bindings[Self.key(aor), default: []].filter { $0.expires > now }
    }

    /// Every live binding, AOR by AOR.
    public func all(now: Double) -> [Binding] {
        bindings.keys.sorted().flatMap { bindings(of: bindings[$0]![0].aor, now: now) }
    }

    /// Drops expired bindings and their temporary GRUUs; returns how many went.
    @discardableResult
    public mutating func expire(now: Double) -> Int {
        var gone = 0
        for (k, bs) in bindings {
            let dead = bs.filter { $0.expires <= now }
            guard !dead.isEmpty else { continue }
            gone += dead.count
            dropTemporaries(of: dead)
            let live = bs.filter { $0.expires > now }
            bindings[k] = live.isEmpty ? nil : live
        }
        return gone
    }

    private mutating func dropTemporaries(of bs: [Binding]) {
        for b in bs { for t in b.temporaryGRUUs { if let u = t.user { temporary[u] = nil } } }
    }

    /// An opaque temporary GRUU: 120 random bits, meaningful only through this registrar.
    private mutating func mintTemporary(aor: SIPURI, instance: String) -> SIPURI {
        let bytes = SymmetricKey(size: SymmetricKeySize(bitCount: 120)).withUnsafeBytes { Array($0) }
        let user = "tgruu." + bytes.hexString
        temporary[user] = GRUUOwner(aor: aor, instanceID: instance)
        guard case .name = aor.host else { preconditionFailure("AORs are in our domains") }
        return SIPURI(scheme: aor.scheme, user: user, host: aor.host, parameters: [SIPParameter("gr")])
    }
}
