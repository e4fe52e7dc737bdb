// swift-tools-version:6.0
// The OpenAPI generator, kept out of the main package so that building Baton never builds it.
// `make openapi` runs it on docs/openapi.json and writes Sources/BatonOpenAPI/.
import PackageDescription

let package = Package(
    name: "baton-openapi",
    dependencies: [
        .package(url: "https://github.com/apple/swift-openapi-generator", exact: "1.14.3"),
    ]
)
