/// One line saying where a JSON body is wrong ("sessions[0].destination: missing"), for
/// batonctl's input files and for the daemon's 400 answers alike.
extension DecodingError {
    public var summary: String {
        func path(_ c: [any CodingKey]) -> String {
            var out = ""
            for k in c {
                if let i = k.intValue { out += "[\(i)]" } else { out += (out.isEmpty ? "" : ".") + k.stringValue }
            }
            return out.isEmpty ? "top level" : out
        }
        switch self {
        case .dataCorrupted(let c):
            // JSONSerialization's own message is in the underlying error.
            if let u = c.underlyingError { return "\(path(c.codingPath)): \(c.debugDescription) (\(u.localizedDescription))" }
            return "\(path(c.codingPath)): \(c.debugDescription)"
        case .keyNotFound(let k, let c):
            return "\(path(c.codingPath + [k])): missing"
        case .typeMismatch(let t, let c):
            return "\(path(c.codingPath)): expected \(t)"
        case .valueNotFound(let t, let c):
            return "\(path(c.codingPath)): expected \(t), found null"
        @unknown default:
            return "\(self)"
        }
    }
}
