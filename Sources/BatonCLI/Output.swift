import ArgumentParser
import Foundation

/// `--json` on every command that prints.
public struct OutputOptions: ParsableArguments {
    @Flag(name: .long, help: "Print JSON (for scripts) instead of text for people.")
    public var json = false

    public init() {}
}

public enum JSON {
    /// Pretty, sorted keys: stable for scripts and diffs.
    public static func print<T: Encodable>(_ value: T) throws {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        let data = try e.encode(value)
        Swift.print(String(decoding: data, as: UTF8.self))
    }
}

/// stderr, unbuffered.
public func printError(_ text: String) {
    FileHandle.standardError.write(Data((text + "\n").utf8))
}

/// The running tool's name (argv[0]'s last component), which starts its messages.
public let toolName = URL(fileURLWithPath: CommandLine.arguments.first ?? "baton").lastPathComponent

/// A notice for people, on stderr so stdout stays clean for --json: "<tool>: text".
public func note(_ text: String) {
    printError("\(toolName): " + text)
}
