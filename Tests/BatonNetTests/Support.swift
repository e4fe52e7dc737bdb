import BatonNet
import Glibc
import Testing

/// Every test here touches the kernel's namespaces and interfaces, so all suites nest in this
/// one, whose `.serialized` trait applies to them all.
@Suite(.serialized, .enabled(if: getuid() == 0, "needs root for namespaces"))
enum KernelTests {}

/// A namespace name in the labs' style ("bt" + 5 characters + "-" + suffix), unique per call.
func uniqueNamespaceName(_ suffix: String) -> String {
    let alphabet = Array("abcdefghijklmnopqrstuvwxyz0123456789")
    return "bt" + String((0..<5).map { _ in alphabet.randomElement()! }) + "-" + suffix
}

/// Creates namespaces, runs `body`, and deletes them again, also when `body` throws.
func withNamespaces<T>(_ suffixes: String..., body: ([NetworkNamespace]) throws -> T) throws -> T {
    var made: [NetworkNamespace] = []
    defer { for namespace in made { try? namespace.delete() } }
    for suffix in suffixes { made.append(try NetworkNamespace.create(name: uniqueNamespaceName(suffix))) }
    return try body(made)
}

/// A payload that names its sender and is unlikely to be mistaken for another datagram.
func payload(_ text: String) -> [UInt8] {
    Array("\(text) \(UInt64.random(in: 0...UInt64.max))".utf8)
}

struct Boom: Error {}
