import ArgumentParser
import BatonAPI
import BatonCLI
import Foundation

/// `batonctl device …`: the devices enrolled at the agent. A registration is accepted only
/// from an enrolled device (the TN), for an address it owns, to an enrolled target that a
/// policy allows (`batonctl policy`).
struct DeviceCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "device",
        abstract: "Enrol, list, show and remove the devices the agent accepts transfers between.",
        discussion: """
        Run against the agent's batond (--control, default \(ControlOptions.defaultPath), or \
        --api). A device is a node's batond: its name, its public key (`batond key` on that \
        node) and the address prefixes it owns. The agent accepts a transfer registration only \
        from an enrolled device, for an original address inside its prefixes, to a target whose \
        address is inside an enrolled device's prefixes, when a policy allows the pair \
        (`batonctl policy add`). A node's batond answers these verbs with exit 2.
        """,
        subcommands: [Add.self, List.self, Show.self, Del.self])

    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Enrol a device: its name, public key and the prefixes it owns.",
            discussion: """
            KEY is the device's batond public key, 43 base64url characters as `batond key` \
            prints them; one that begins with '-' must be written --key=KEY. Each --address is \
            a prefix the device owns (ADDRESS/LENGTH; a bare address is a host prefix, /32 or \
            /128). --rate-limit caps the registrations it may make per second (default: the \
            agent's --rate-limit). A name or key already enrolled is refused (exit 1).
            """)

        @OptionGroup(title: "Daemon Options") var daemon: ControlOptions
        @OptionGroup var output: OutputOptions

        @Argument(help: ArgumentHelp("The device's name: 1-63 letters, digits, '-', '_' or '.'.", valueName: "name"))
        var name: String

        @Option(name: .long, help: ArgumentHelp(
            "The device's batond public key (`batond key`); --key=KEY if it begins with '-'.", valueName: "key"))
        var key: String

        @Option(name: .long, help: ArgumentHelp(
            "A prefix the device owns, like 10.0.0.3/32 or 2001:db8::/64 (repeatable; at least one).", valueName: "prefix"))
        var address: [String] = []

        @Option(name: .customLong("rate-limit"), help: ArgumentHelp(
            "Registrations per second this device may make; default: the agent's.", valueName: "n"))
        var rateLimit: String?

        func validate() throws {
            if address.isEmpty { throw ValidationError("Missing expected argument '--address <prefix>'") }
        }

        func run() throws {
            let name = try Parse.deviceName(name)
            let key = try Parse.publicKey(key)
            let prefixes = try address.map { try Parse.prefix($0) }
            let rate = try rateLimit.map { try Parse.rate($0, "--rate-limit") }
            let d = try withDaemon(daemon) {
                try $0.addDevice(Device(name: name, publicKey: key, addresses: prefixes, rateLimit: rate))
            }
            if output.json { try JSON.print(d) } else { DeviceText.detail(d) }
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List the enrolled devices.",
            discussion: "RATE is the device's registrations per second; '-' is the agent's default.")

        @OptionGroup(title: "Daemon Options") var daemon: ControlOptions
        @OptionGroup var output: OutputOptions

        func run() throws {
            let devices = try withDaemon(daemon) { try $0.devices() }
            if output.json {
                try JSON.print(devices)
            } else if devices.isEmpty {
                print("no devices")
            } else {
                DeviceText.table(devices).print()
            }
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show one enrolled device.")

        @OptionGroup(title: "Daemon Options") var daemon: ControlOptions
        @OptionGroup var output: OutputOptions

        @Argument(help: ArgumentHelp("The device's name.", valueName: "name"))
        var name: String

        func run() throws {
            let name = try Parse.deviceName(name)
            let d = try withDaemon(daemon) { try $0.device(name) }
            if output.json { try JSON.print(d) } else { DeviceText.detail(d) }
        }
    }

    struct Del: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "del",
            abstract: "Remove an enrolled device.",
            discussion: """
            The agent accepts no new registration from it or to it; transfers in progress go on \
            until they end. Policies that name it stay (and apply again if it is enrolled again).
            """)

        @OptionGroup(title: "Daemon Options") var daemon: ControlOptions
        @OptionGroup var output: OutputOptions

        @Argument(help: ArgumentHelp("The device's name.", valueName: "name"))
        var name: String

        struct Result: Encodable {
            var device: String
            var removed: Bool
        }

        func run() throws {
            let name = try Parse.deviceName(name)
            try withDaemon(daemon) { try $0.deleteDevice(name) }
            if output.json { try JSON.print(Result(device: name, removed: true)) } else { print("removed device \(name)") }
        }
    }
}

// MARK: - Text

enum DeviceText {
    static func rate(_ r: Double?) -> String {
        guard let r else { return "-" }
        return r == r.rounded() && abs(r) < 1e15 ? String(Int64(r)) : "\(r)"
    }

    static func table(_ devices: [Device]) -> Table {
        var t = Table(["NAME", "PUBLIC KEY", "ADDRESSES", "RATE", "ENROLLED"], numeric: [3])
        for d in devices {
            t.add([d.name, d.publicKey, d.addresses.joined(separator: ", "), rate(d.rateLimit),
                   d.enrolled.map(TransferText.time) ?? "-"])
        }
        return t
    }

    static func detail(_ d: Device) {
        let lines: [(String, String)] = [
            ("name", d.name),
            ("public key", d.publicKey),
            ("addresses", d.addresses.joined(separator: ", ")),
            ("rate limit", d.rateLimit.map { "\(rate($0)) registrations/s" } ?? "the agent's default"),
            ("enrolled", d.enrolled.map(TransferText.time) ?? "-"),
        ]
        for (key, value) in lines { print((key + ":").padding(toLength: 12, withPad: " ", startingAt: 0) + value) }
    }
}
