import BatonModel
import Foundation

/// Reads a rule file (`rule add --file`): a JSON array of `SessionRule` as it encodes.
///
/// A million rules through `JSONDecoder` took 14 s of CPU; this reads the one shape the
/// file has in one pass over the bytes, with no intermediate JSON values, parsing each
/// distinct address and MAC text once. It reads only what it is sure of: anything else
/// (an escape in a string, a number with a fraction, a value of another type, any error)
/// makes it give up, and `JSONDecoder` reads the file instead, so that every file decodes
/// as before and every error reads as before.
enum RuleFile {
    static func decode(_ data: Data) throws -> [SessionRule] {
        if let rules = data.withUnsafeBytes({ raw -> [SessionRule]? in
            var reader = Reader(raw)
            return reader.rules()
        }) {
            return rules
        }
        return try JSONDecoder().decode([SessionRule].self, from: data)
    }

    /// The fast path's parser: nil from any function means "not the shape expected".
    private struct Reader {
        let bytes: UnsafeRawBufferPointer
        var at = 0
        /// The last text parsed into each kind of value, with the value (rules repeat them).
        var addresses: [([UInt8], IPAddress)] = []
        var macs: [([UInt8], MACAddress)] = []

        init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

        mutating func rules() -> [SessionRule]? {
            var out: [SessionRule] = []
            guard take(UInt8(ascii: "[")) else { return nil }
            if take(UInt8(ascii: "]")) { return end() ? out : nil }
            repeat {
                guard let r = rule() else { return nil }
                out.append(r)
            } while take(UInt8(ascii: ","))
            guard take(UInt8(ascii: "]")), end() else { return nil }
            return out
        }

        private mutating func rule() -> SessionRule? {
            var match: SessionMatch?, forward: Forwarding?
            let ok = object { key, r in
                switch key {
                case "match": match = r.match(); return match != nil
                case "forward": forward = r.forward(); return forward != nil
                default: return r.skip()
                }
            }
            guard ok, let match, let forward else { return nil }
            return SessionRule(match: match, forward: forward)
        }

        private mutating func match() -> SessionMatch? {
            var proto: IPProtocol?, source: IPAddress?, sport: UInt16?, destination: IPAddress?, dport: UInt16?
            let ok = object { key, r in
                switch key {
                case "proto":
                    if let n = r.unsigned(max: 255) { proto = IPProtocol(rawValue: UInt8(n)) } else if let s = r.string() {
                        proto = IPProtocol(name: r.text(s))
                    }
                    return proto != nil
                case "source": return r.optional { source = $0.address(); return source != nil }
                case "sourcePort": return r.optional { sport = $0.unsigned(max: 65535).map(UInt16.init); return sport != nil }
                case "destination": destination = r.address(); return destination != nil
                case "destinationPort": return r.optional { dport = $0.unsigned(max: 65535).map(UInt16.init); return dport != nil }
                default: return r.skip()
                }
            }
            guard ok, let proto, let destination else { return nil }
            return SessionMatch(proto: proto, source: source, sourcePort: sport, destination: destination, destinationPort: dport)
        }

        private mutating func forward() -> Forwarding? {
            var f = Forwarding(action: .pass)
            var action: Forwarding.Action?
            let ok = object { key, r in
                switch key {
                case "action": action = r.string().flatMap { Forwarding.Action(rawValue: r.text($0)) }; return action != nil
                case "destinationMAC": return r.optional { r in r.mac().map { f.destinationMAC = $0 } != nil }
                case "sourceMAC": return r.optional { r in r.mac().map { f.sourceMAC = $0 } != nil }
                case "ifindex": return r.optional { r in r.unsigned(max: UInt64(UInt32.max)).map { f.ifindex = UInt32($0) } != nil }
                case "outerSource": return r.optional { r in r.address().map { f.outerSource = $0 } != nil }
                case "outerDestination": return r.optional { r in r.address().map { f.outerDestination = $0 } != nil }
                case "mtu": return r.optional { r in r.unsigned(max: 65535).map { f.mtu = UInt16($0) } != nil }
                case "expires": return r.optional { r in r.unsigned(max: UInt64.max).map { f.expires = $0 } != nil }
                case "rewrite": return r.optional { r in r.rewrite().map { f.rewrite = $0 } != nil }
                default: return r.skip()
                }
            }
            guard ok, let action else { return nil }
            f.action = action
            return f
        }

        private mutating func rewrite() -> Forwarding.Rewrite? {
            var source: IPAddress?, sport: UInt16?, destination: IPAddress?, dport: UInt16?
            let ok = object { key, r in
                switch key {
                case "source": source = r.address(); return source != nil
                case "sourcePort": sport = r.unsigned(max: 65535).map(UInt16.init); return sport != nil
                case "destination": destination = r.address(); return destination != nil
                case "destinationPort": dport = r.unsigned(max: 65535).map(UInt16.init); return dport != nil
                default: return r.skip()
                }
            }
            guard ok, let source, let sport, let destination, let dport else { return nil }
            return Forwarding.Rewrite(source: source, sourcePort: sport, destination: destination, destinationPort: dport)
        }

        // MARK: JSON pieces

        /// `{ "key": value, ... }`, each value read by `field` (false: give up). A key given
        /// twice gives up too (JSONDecoder's choice between them is not ours to guess).
        private mutating func object(_ field: (Key, inout Reader) -> Bool) -> Bool {
            guard take(UInt8(ascii: "{")) else { return false }
            if take(UInt8(ascii: "}")) { return true }
            // Keys seen, by a bit of their hash: a repeat (or two keys sharing a bit) gives up.
            var seen: UInt64 = 0
            repeat {
                guard let k = string(), take(UInt8(ascii: ":")) else { return false }
                var h: UInt32 = 2_166_136_261
                for i in k { h = (h ^ UInt32(bytes[i])) &* 16_777_619 }
                let bit: UInt64 = 1 << UInt64(h % 64)
                guard seen & bit == 0 else { return false }
                seen |= bit
                guard field(Key(bytes: UnsafeRawBufferPointer(rebasing: bytes[k])), &self) else { return false }
            } while take(UInt8(ascii: ","))
            return take(UInt8(ascii: "}"))
        }

        /// An object's key, compared in place: no String for each of three million keys.
        struct Key {
            let bytes: UnsafeRawBufferPointer
            static func ~= (pattern: StaticString, key: Key) -> Bool {
                pattern.utf8CodeUnitCount == key.bytes.count
                    && memcmp(pattern.utf8Start, key.bytes.baseAddress!, key.bytes.count) == 0
            }
        }

        private func text(_ r: Range<Int>) -> String {
            String(decoding: UnsafeRawBufferPointer(rebasing: bytes[r]), as: UTF8.self)
        }

        private func same(_ r: Range<Int>, _ stored: [UInt8]) -> Bool {
            r.count == stored.count && UnsafeRawBufferPointer(rebasing: bytes[r]).elementsEqual(stored)
        }

        /// `null` (left as it was) or a value read by `value`.
        private mutating func optional(_ value: (inout Reader) -> Bool) -> Bool {
            if literal("null") { return true }
            return value(&self)
        }

        /// A string without escapes: where its bytes are.
        private mutating func string() -> Range<Int>? {
            guard take(UInt8(ascii: "\"")) else { return nil }
            let start = at
            while at < bytes.count {
                let c = bytes[at]
                if c == UInt8(ascii: "\"") {
                    defer { at += 1 }
                    return start..<at
                }
                if c == UInt8(ascii: "\\") || c < 0x20 { return nil }
                at += 1
            }
            return nil
        }

        /// Digits only, at most `max`.
        private mutating func unsigned(max: UInt64) -> UInt64? {
            space()
            var n: UInt64 = 0
            let start = at
            while at < bytes.count, bytes[at] >= UInt8(ascii: "0"), bytes[at] <= UInt8(ascii: "9") {
                let (m, o1) = n.multipliedReportingOverflow(by: 10)
                let (s, o2) = m.addingReportingOverflow(UInt64(bytes[at] - UInt8(ascii: "0")))
                guard !o1, !o2 else { return nil }
                n = s
                at += 1
            }
            // "1.5", "1e3", "-1": JSONDecoder's to judge.
            guard at > start, at - start == 1 || bytes[start] != UInt8(ascii: "0"), n <= max else { return nil }
            if at < bytes.count, bytes[at] == UInt8(ascii: ".") || bytes[at] | 0x20 == UInt8(ascii: "e") { return nil }
            return n
        }

        private mutating func address() -> IPAddress? {
            guard let r = string() else { return nil }
            // Rules of a transfer share their destination; sources change more often.
            for i in addresses.indices where same(r, addresses[i].0) { return addresses[i].1 }
            guard let a = IPAddress(text(r)) else { return nil }
            if addresses.count >= 4 { addresses.removeFirst() }
            addresses.append((Array(UnsafeRawBufferPointer(rebasing: bytes[r])), a))
            return a
        }

        private mutating func mac() -> MACAddress? {
            guard let r = string() else { return nil }
            for i in macs.indices where same(r, macs[i].0) { return macs[i].1 }
            guard let m = MACAddress(text(r)) else { return nil }
            // A file names few MACs (next hops and the agent's): keep a handful.
            if macs.count >= 8 { macs.removeFirst() }
            macs.append((Array(UnsafeRawBufferPointer(rebasing: bytes[r])), m))
            return m
        }

        /// Any value of a key the reader does not use: only the simple ones are skipped.
        private mutating func skip() -> Bool {
            if string() != nil || unsigned(max: .max) != nil { return true }
            return literal("null") || literal("true") || literal("false")
        }

        private mutating func literal(_ word: StaticString) -> Bool {
            space()
            let n = word.utf8CodeUnitCount
            guard at + n <= bytes.count else { return false }
            for i in 0..<n where bytes[at + i] != word.utf8Start[i] { return false }
            at += n
            return true
        }

        private mutating func space() {
            while at < bytes.count {
                switch bytes[at] {
                case 0x20, 0x0a, 0x0d, 0x09: at += 1
                default: return
                }
            }
        }

        private mutating func take(_ c: UInt8) -> Bool {
            space()
            guard at < bytes.count, bytes[at] == c else { return false }
            at += 1
            return true
        }

        private mutating func end() -> Bool {
            space()
            return at == bytes.count
        }
    }
}
