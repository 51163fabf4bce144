// swift-tools-version: 6.0
//
// A package outside the project that uses its libraries, as a workshop's own
// exercises or another Swift ML project would. `make test` builds and runs it.

import PackageDescription

let package = Package(
    name: "LibraryConsumer",
    dependencies: [
        .package(name: "RLHFMath", path: "../.."),
    ],
    targets: [
        .executableTarget(
            name: "LibraryConsumer",
            dependencies: [
                .product(name: "RLHFMath", package: "RLHFMath"),  // every math module and the fixture reader
                .product(name: "GAE", package: "RLHFMath"),       // or one stage alone
            ]
        ),
    ]
)
