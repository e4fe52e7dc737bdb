import Glibc
import Testing

/// Every test here builds labs in the kernel's namespaces, so all suites nest in this one,
/// whose `.serialized` trait applies to them all.
@Suite(.serialized, .enabled(if: getuid() == 0, "needs root for namespaces"))
enum KernelTests {}

/// A payload that names its sender and is unlikely to be mistaken for another datagram.
func payload(_ text: String) -> [UInt8] {
    Array("\(text) \(UInt64.random(in: 0...UInt64.max))".utf8)
}

/// A lab prefix ("bt" + 5 characters), unique per call.
func uniquePrefix() -> String {
    let alphabet = Array("abcdefghijklmnopqrstuvwxyz0123456789")
    return "bt" + String((0..<5).map { _ in alphabet.randomElement()! })
}

struct Boom: Error {}
