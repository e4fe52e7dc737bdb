import ArgumentParser
import BatonAPI
import BatonCLI
import Foundation

/// `batonctl metrics`: the daemon's Prometheus metrics, as a scraper gets them.
struct MetricsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "metrics",
        abstract: "Print the daemon's Prometheus metrics (agent or node).",
        discussion: """
        What GET /metrics answers, the Prometheus text exposition: event counters since the \
        daemon started (registrations, takeovers, wake-ups, rejections, ended transfers) and a \
        snapshot of its state (transfers by state, map fill, per-session packets and bytes on \
        the agent). --json prints one object per sample instead: {"name", "labels", "value", \
        "type", "help"} (a value that is not a finite number is a string: "NaN", "+Inf", "-Inf").
        """)

    @OptionGroup(title: "Daemon Options") var daemon: ControlOptions
    @OptionGroup var output: OutputOptions

    func run() throws {
        let text = try withDaemon(daemon) { try $0.metrics() }
        if output.json {
            try JSON.print(Exposition.parse(text))
        } else {
            print(text, terminator: text.isEmpty || text.hasSuffix("\n") ? "" : "\n")
        }
    }
}

/// The Prometheus text format (version 0.0.4), as far as reading samples goes.
enum Exposition {
    struct Sample: Encodable, Equatable {
        var name: String
        var labels: [String: String]
        var value: Value
        /// The family's # TYPE (counter, gauge, histogram, summary, untyped), if given.
        var type: String?
        /// The family's # HELP, if given.
        var help: String?
    }

    /// A sample's value: a JSON number when finite, else "NaN", "+Inf" or "-Inf".
    enum Value: Encodable, Equatable {
        case number(Double)
        case special(String)

        init?(_ text: String) {
            switch text {
            case "NaN": self = .special("NaN")
            case "+Inf", "Inf": self = .special("+Inf")
            case "-Inf": self = .special("-Inf")
            default:
                guard let d = Double(text), d.isFinite else { return nil }
                self = .number(d)
            }
        }

        func encode(to encoder: any Encoder) throws {
            var c = encoder.singleValueContainer()
            switch self {
            case .number(let d): try c.encode(d)
            case .special(let s): try c.encode(s)
            }
        }
    }

    /// Every sample, in order; lines that are not samples or # HELP / # TYPE are skipped.
    static func parse(_ text: String) throws -> [Sample] {
        var types: [String: String] = [:], helps: [String: String] = [:]
        var samples: [Sample] = []
        for (number, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty { continue }
            if line.hasPrefix("#") {
                let words = line.dropFirst().split(separator: " ", maxSplits: 2, omittingEmptySubsequences: true)
                guard words.count >= 2 else { continue }
                let name = String(words[1]), rest = words.count > 2 ? String(words[2]) : ""
                if words[0] == "TYPE" { types[name] = rest }
                if words[0] == "HELP" { helps[name] = unescape(rest) }
                continue
            }
            guard var s = sample(line) else {
                throw CLIError("the daemon's metrics are not Prometheus text: line \(number + 1): \(line)")
            }
            let family = familyName(s.name, types)
            s.type = types[family]
            s.help = helps[family]
            samples.append(s)
        }
        return samples
    }

    /// A histogram's or summary's `_bucket`, `_sum`, `_count` samples belong to the family.
    static func familyName(_ name: String, _ types: [String: String]) -> String {
        if types[name] != nil { return name }
        for suffix in ["_bucket", "_sum", "_count"] where name.hasSuffix(suffix) {
            let base = String(name.dropLast(suffix.count))
            if types[base] != nil { return base }
        }
        return name
    }

    /// `name{label="value",…} value [timestamp]`
    static func sample(_ line: String) -> Sample? {
        let chars = Array(line)
        var i = 0
        while i < chars.count, chars[i] != "{", chars[i] != " ", chars[i] != "\t" { i += 1 }
        let name = String(chars[0..<i])
        guard !name.isEmpty else { return nil }
        var labels: [String: String] = [:]
        if i < chars.count, chars[i] == "{" {
            i += 1
            while true {
                while i < chars.count, chars[i] == " " || chars[i] == "," { i += 1 }
                guard i < chars.count else { return nil }
                if chars[i] == "}" { i += 1; break }
                let start = i
                while i < chars.count, chars[i] != "=" { i += 1 }
                let key = String(chars[start..<i]).trimmingCharacters(in: .whitespaces)
                guard i + 1 < chars.count, chars[i + 1] == "\"", !key.isEmpty else { return nil }
                i += 2
                var value = ""
                while i < chars.count, chars[i] != "\"" {
                    if chars[i] == "\\", i + 1 < chars.count {
                        value.append(chars[i + 1] == "n" ? "\n" : chars[i + 1])
                        i += 2
                    } else {
                        value.append(chars[i])
                        i += 1
                    }
                }
                guard i < chars.count else { return nil }
                i += 1
                labels[key] = value
            }
        }
        let rest = String(chars[i...]).split(whereSeparator: { $0 == " " || $0 == "\t" })
        guard let first = rest.first, rest.count <= 2, let value = Value(String(first)) else { return nil }
        return Sample(name: name, labels: labels, value: value)
    }

    static func unescape(_ text: String) -> String {
        var out = "", escaped = false
        for c in text {
            if escaped {
                out.append(c == "n" ? "\n" : c)
                escaped = false
            } else if c == "\\" {
                escaped = true
            } else {
                out.append(c)
            }
        }
        return out
    }
}
