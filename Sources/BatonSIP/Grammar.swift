/// RFC 3261's character classes (section 25.1) over bytes, and the small
/// scanners every header parser shares. Pure functions: the parser's speed
/// and strictness live here.
enum Grammar {
    static let cr: UInt8 = 0x0d, lf: UInt8 = 0x0a, sp: UInt8 = 0x20, htab: UInt8 = 0x09
    static let dquote: UInt8 = 0x22, backslash: UInt8 = 0x5c

    private static func table(_ chars: String, alnum: Bool) -> [Bool] {
        var t = [Bool](repeating: false, count: 256)
        if alnum {
            for c in UInt8(ascii: "a")...UInt8(ascii: "z") { t[Int(c)] = true }
            for c in UInt8(ascii: "A")...UInt8(ascii: "Z") { t[Int(c)] = true }
            for c in UInt8(ascii: "0")...UInt8(ascii: "9") { t[Int(c)] = true }
        }
        for c in chars.utf8 { t[Int(c)] = true }
        return t
    }

    /// token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~")
    static let tokenChars = table("-.!%*_+`'~", alnum: true)
    /// word: token's characters and the separators a Call-ID may hold.
    static let wordChars = table("-.!%*_+`'~()<>:\\\"/[]?{}", alnum: true)
    /// unreserved = alphanum / mark
    static let unreserved = table("-_.!~*'()", alnum: true)
    /// user = 1*( unreserved / escaped / user-unreserved )
    static let userChars = table("-_.!~*'()&=+$,;?/", alnum: true)
    /// password = *( unreserved / escaped / "&" / "=" / "+" / "$" / "," )
    static let passwordChars = table("-_.!~*'()&=+$,", alnum: true)
    /// paramchar = param-unreserved / unreserved / escaped
    static let paramChars = table("-_.!~*'()[]/:&+$", alnum: true)
    /// hnv-unreserved / unreserved (URI headers' names and values)
    static let headerChars = table("-_.!~*'()[]/?:+$", alnum: true)
    /// uric (an absolute URI's opaque part, other schemes)
    static let uricChars = table("-_.!~*'();/?:@&=+$,%", alnum: true)

    static func isToken(_ c: UInt8) -> Bool { tokenChars[Int(c)] }
    static func isDigit(_ c: UInt8) -> Bool { c >= 0x30 && c <= 0x39 }
    static func isHex(_ c: UInt8) -> Bool { isDigit(c) || (c | 0x20 >= 0x61 && c | 0x20 <= 0x66) }
    static func isAlnum(_ c: UInt8) -> Bool { isDigit(c) || (c | 0x20 >= 0x61 && c | 0x20 <= 0x7a) }
    static func isWS(_ c: UInt8) -> Bool { c == sp || c == htab }

    static func isToken<S: Collection<UInt8>>(_ s: S) -> Bool { !s.isEmpty && s.allSatisfy(isToken) }
    static func isToken(_ s: String) -> Bool { isToken(s.utf8) }

    /// A decimal number of at most `maxDigits` digits that fits `limit`; nil otherwise.
    static func number<S: Collection<UInt8>>(_ s: S, limit: UInt64, maxDigits: Int = 19) -> UInt64? {
        guard !s.isEmpty, s.count <= maxDigits, s.allSatisfy(isDigit) else { return nil }
        var v: UInt64 = 0
        for c in s {
            let (m, o1) = v.multipliedReportingOverflow(by: 10)
            let (a, o2) = m.addingReportingOverflow(UInt64(c - 0x30))
            if o1 || o2 { return nil }
            v = a
        }
        return v <= limit ? v : nil
    }

    static func number(_ s: Substring, limit: UInt64) -> UInt64? { number(s.utf8, limit: limit) }

    /// True when every byte is in `allowed` or part of a well-formed `escaped` (%HH).
    static func isEscapedRun(_ s: Substring, allowed: [Bool]) -> Bool {
        let b = Array(s.utf8)
        var i = 0
        while i < b.count {
            if b[i] == UInt8(ascii: "%") {
                guard i + 2 < b.count, isHex(b[i + 1]), isHex(b[i + 2]) else { return false }
                i += 3
            } else {
                guard allowed[Int(b[i])] else { return false }
                i += 1
            }
        }
        return true
    }

    /// Percent-decodes `s` (already checked by `isEscapedRun`).
    static func unescape(_ s: Substring) -> String {
        guard s.contains("%") else { return String(s) }
        var out: [UInt8] = []
        let b = Array(s.utf8)
        var i = 0
        while i < b.count {
            if b[i] == UInt8(ascii: "%"), i + 2 < b.count, let v = UInt8(String(decoding: b[i + 1...i + 2], as: UTF8.self), radix: 16) {
                out.append(v)
                i += 3
            } else {
                out.append(b[i])
                i += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Trims SP and HTAB at both ends.
    static func trim(_ s: Substring) -> Substring {
        var a = s.startIndex, b = s.endIndex
        while a < b, s[a] == " " || s[a] == "\t" { a = s.index(after: a) }
        while b > a, s[s.index(before: b)] == " " || s[s.index(before: b)] == "\t" { b = s.index(before: b) }
        return s[a..<b]
    }

    /// Splits `s` at `separator` outside quoted strings and angle brackets.
    /// nil when a quoted string or an angle bracket is left open.
    static func split(_ s: Substring, on separator: Character) -> [Substring]? {
        var parts: [Substring] = []
        var start = s.startIndex, i = s.startIndex
        var quoted = false, angle = 0
        while i < s.endIndex {
            let c = s[i]
            if quoted {
                if c == "\\" {
                    i = s.index(after: i)
                    if i == s.endIndex { return nil }
                } else if c == "\"" { quoted = false }
            } else if c == "\"" {
                quoted = true
            } else if c == "<" {
                angle += 1
                if angle > 1 { return nil }
            } else if c == ">" {
                angle -= 1
                if angle < 0 { return nil }
            } else if c == separator && angle == 0 {
                parts.append(s[start..<i])
                start = s.index(after: i)
            }
            i = s.index(after: i)
        }
        if quoted || angle != 0 { return nil }
        parts.append(s[start..<s.endIndex])
        return parts
    }
}
