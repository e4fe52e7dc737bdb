// swift-tools-version:6.0
// Baton: session transfer data plane. See docs/architecture.md for the module map.
import PackageDescription

let package = Package(
    name: "baton",
    products: [
        .executable(name: "batonctl", targets: ["batonctl"]),
        .executable(name: "baton-dp", targets: ["baton-dp"]),
        .executable(name: "batond", targets: ["batond"]),
        .executable(name: "baton-bench", targets: ["baton-bench"]),
        .executable(name: "baton-demo", targets: ["baton-demo"]),
        .executable(name: "baton-lab", targets: ["baton-lab"]),
        .library(name: "BatonDataPlane", targets: ["BatonDataPlane"]),
        .library(name: "BatonLab", targets: ["BatonLab"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-crypto", "3.12.3"..<"5.0.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-nio-extras", from: "1.35.2"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.8.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-openapi-runtime", from: "1.13.4"),
        .package(url: "https://github.com/hummingbird-project/swift-openapi-hummingbird", from: "2.1.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
    ],
    targets: [
        // C libraries from Debian packages.
        .systemLibrary(name: "CLibbpf", path: "Sources/CLibbpf", pkgConfig: "libbpf",
                       providers: [.apt(["libbpf-dev"])]),
        .systemLibrary(name: "CMnl", path: "Sources/CMnl", pkgConfig: "libmnl",
                       providers: [.apt(["libmnl-dev"])]),
        // The one definition of map keys and values, shared with bpf/.
        .target(name: "CBatonABI", path: "Sources/CBatonABI"),
        // The compiled XDP objects, embedded with #embed (built by `make bpf`).
        .target(name: "CBatonObjects", path: "Sources/CBatonObjects",
                cSettings: [.unsafeFlags(["-Wno-c23-extensions"])]),

        // Domain model: addresses, MACs, 5-tuples, rules. No unsafe code, no I/O.
        .target(name: "BatonModel"),
        // Frame building, parsing and checksums (tests, benchmark, announcements).
        .target(name: "BatonPacket", dependencies: ["BatonModel"]),
        // Typed Swift over libbpf: the only place with unsafe BPF code.
        .target(name: "BatonBPF", dependencies: ["CLibbpf", "BatonModel"]),
        // The steering data plane: maps, rules, takeovers, counters, attach.
        .target(name: "BatonDataPlane",
                dependencies: ["BatonBPF", "BatonModel", "CBatonABI", "CBatonObjects"]),
        // Netlink (libmnl), network namespaces, ethtool, packet sockets and announcements.
        .target(name: "BatonNet", dependencies: ["CMnl", "BatonModel", "BatonPacket"]),
        // Test hosts in network namespaces (and the small XDP programs they need).
        .target(name: "BatonLab", dependencies: ["BatonAPI", "BatonNet", "BatonModel", "BatonBPF", "CBatonObjects"]),

        // The transfer protocol: session keys, sealing, authenticated messages, replay guard.
        .target(name: "BatonProtocol", dependencies: [
            "BatonModel",
            .product(name: "Crypto", package: "swift-crypto"),
        ]),
        // SIP as values: a strict message parser, URIs and header values, digest authentication,
        // GRUUs and the registrar's bindings, Replaces (RFC 3261, 3891, 5627, 7616). No sockets.
        .target(name: "BatonSIP", dependencies: [
            "BatonModel",
            .product(name: "Crypto", package: "swift-crypto"),
        ]),
        // What the daemon keeps across restarts: transfers, rules, takeovers, devices, policies (SQLite).
        .target(name: "BatonStore", dependencies: [
            "BatonModel",
            .product(name: "GRDB", package: "GRDB.swift"),
        ]),
        // Generated from docs/openapi.json by `make openapi` (never edited by hand): the bodies,
        // the server's APIProtocol and the Client. Its warnings are the generator's unused imports.
        .target(name: "BatonOpenAPI", dependencies: [
            "BatonModel",
            .product(name: "OpenAPIRuntime", package: "swift-openapi-runtime"),
        ], swiftSettings: [.unsafeFlags(["-suppress-warnings"])]),
        // The HTTP/JSON API as the daemon and batonctl use it: the generated code under the
        // names they know, errors with codes, and the blocking client.
        .target(name: "BatonAPI", dependencies: [
            "BatonModel", "BatonOpenAPI",
            .product(name: "OpenAPIRuntime", package: "swift-openapi-runtime"),
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "NIOSSL", package: "swift-nio-ssl"),
        ]),
        // The SIP server (docs/sip.md): registrar and B2BUA over UDP and TCP on one event loop, its calls'
        // media anchored through `MediaAnchors` (the agent's anchored sessions).
        .target(name: "BatonSIPServer", dependencies: [
            "BatonSIP", "BatonModel",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
        ]),
        // batond's roles: the agent (takeover, steering, wake-up) and the node (TN and target).
        .target(name: "BatonDaemon", dependencies: [
            "BatonDataPlane", "BatonBPF", "BatonModel", "BatonPacket", "BatonNet", "BatonProtocol",
            "BatonStore", "BatonAPI", "BatonSIP", "BatonSIPServer",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "HummingbirdCore", package: "hummingbird"),
            .product(name: "HummingbirdTLS", package: "hummingbird"),
            .product(name: "OpenAPIRuntime", package: "swift-openapi-runtime"),
            .product(name: "OpenAPIHummingbird", package: "swift-openapi-hummingbird"),
            .product(name: "NIOSSL", package: "swift-nio-ssl"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
            .product(name: "HTTPTypes", package: "swift-http-types"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "Prometheus", package: "swift-prometheus"),
            .product(name: "Metrics", package: "swift-metrics"),
        ]),

        // What the command-line tools share: tables, JSON output, errors with exit codes, value
        // parsing, and which batond to talk to. No kernel code: batonctl is built on it.
        .target(name: "BatonCLI", dependencies: [
            "BatonModel", "BatonAPI",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),

        .executableTarget(name: "batond", dependencies: [
            "BatonAPI", "BatonDaemon", "BatonSIP", "BatonSIPServer", "BatonNet", "BatonModel", "BatonProtocol", "BatonBPF", "BatonDataPlane",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        // The operator's CLI: the daemon verbs over the API. It links no kernel code (neither
        // libbpf nor netlink) and no test code; it hands the map verbs to baton-dp.
        .executableTarget(name: "batonctl", dependencies: [
            "BatonAPI", "BatonCLI", "BatonModel", "BatonSIP",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        // The data plane, directly (the map verbs: attach, rule, takeover, stats, teardown…):
        // the operator's one tool that links libbpf.
        .executableTarget(name: "baton-dp", dependencies: [
            "BatonAPI", "BatonCLI", "BatonDataPlane", "BatonBPF", "BatonModel", "BatonNet",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .executableTarget(name: "baton-lab", dependencies: [
            "BatonCLI", "BatonLab", "BatonNet",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .executableTarget(name: "baton-demo", dependencies: [
            "BatonAPI", "BatonDataPlane", "BatonBPF", "BatonModel", "BatonNet", "BatonLab", "BatonDaemon",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .executableTarget(name: "baton-bench", dependencies: [
            "BatonAPI", "BatonProtocol", "BatonStore", "BatonDataPlane", "BatonBPF", "BatonModel", "BatonPacket", "BatonNet", "BatonLab", "CBatonABI", "BatonDaemon",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),

        .testTarget(name: "BatonModelTests", dependencies: ["BatonModel"]),
        // Frames built and parsed byte-exactly, checksums, fragments, tunnels, announcements.
        .testTarget(name: "BatonPacketTests", dependencies: ["BatonModel", "BatonPacket"]),
        // BatonBPF against the kernel: pinned collections, batch errors, per-CPU values.
        .testTarget(name: "BatonBPFTests", dependencies: ["BatonBPF", "CBatonABI", "CBatonObjects"]),
        // Every classification decision through BPF_PROG_TEST_RUN.
        .testTarget(name: "BatonDataPlaneTests", dependencies: [
            "BatonDataPlane", "BatonBPF", "BatonModel", "BatonPacket", "BatonNet", "CBatonABI",
        ]),
        // Real frames across veth pairs between network namespaces.
        .testTarget(name: "BatonEndToEndTests", dependencies: [
            "BatonDataPlane", "BatonBPF", "BatonModel", "BatonPacket", "BatonNet", "BatonLab",
        ]),
        .testTarget(name: "BatonNetTests", dependencies: ["BatonNet", "BatonLab", "BatonModel"]),
        // The harness: labs built, read back and removed; baton-lab.
        .testTarget(name: "BatonLabTests", dependencies: ["BatonLab", "BatonNet", "BatonModel", "BatonBPF"]),
        .testTarget(name: "BatonCtlTests", dependencies: ["BatonAPI", "BatonDataPlane", "BatonModel", "BatonNet", "BatonLab", "BatonDaemon", "BatonBPF"]),
        // The API's document (docs/openapi.json) against the route table and the bodies.
        .testTarget(name: "BatonAPITests", dependencies: ["BatonAPI", "BatonModel"]),
        .testTarget(name: "BatonStoreTests", dependencies: ["BatonStore", "BatonModel", "BatonProtocol",
                                                          .product(name: "GRDB", package: "GRDB.swift")]),
        // The SIP parser against RFC 4475's torture messages and random mutations; digest, registrar, Replaces.
        .testTarget(name: "BatonSIPTests", dependencies: ["BatonSIP", "BatonModel"], resources: [.copy("Corpus")]),
        .testTarget(name: "BatonProtocolTests", dependencies: ["BatonProtocol", "BatonModel"]),
        // Whole transfers: batond agent and nodes in lab namespaces, driven through batonctl.
        .testTarget(name: "BatonTransferTests", dependencies: [
            "BatonAPI", "BatonDaemon", "BatonStore", "BatonDataPlane", "BatonModel", "BatonPacket", "BatonNet", "BatonLab", "BatonProtocol",
        ]),
    ]
)
