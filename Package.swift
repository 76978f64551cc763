// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "mambad",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "mambad", targets: ["mambad"]),
        .library(name: "FalconMamba", targets: ["FalconMamba"]),
        .library(name: "Tokenizer", targets: ["Tokenizer"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.80.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
    ],
    targets: [
        // System libraries (Debian: libopenblas-dev, libsystemd-dev).
        .systemLibrary(name: "COpenBLAS", pkgConfig: "openblas",
                       providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CSystemd", pkgConfig: "libsystemd",
                       providers: [.apt(["libsystemd-dev"])]),

        // Hot numeric loops in C with runtime CPU dispatch; no Swift, no model graph.
        .target(name: "CKernels"),

        // Byte-level BPE from tokenizer.json.
        .target(name: "Tokenizer", resources: [.copy("Resources/falcon-tokenizer.json")]),

        // Checkpoint loading (mmap, safetensors, bitsandbytes 4-bit), config, forward pass, sampler.
        .target(name: "FalconMamba", dependencies: ["CKernels", "COpenBLAS"]),

        // JSON-RPC 2.0 types shared by the daemon and the CLI; no sockets, no model.
        .target(name: "MambaRPC"),

        // The server: Unix-socket listener (NIO), connections, scheduler (queue, continuous
        // batching, cancellation), state cache, config file. Wires MambaRPC to the model.
        .target(name: "MambaDaemon", dependencies: [
            "FalconMamba", "Tokenizer", "MambaRPC", "CSystemd",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
        ]),

        .executableTarget(name: "mambad", dependencies: [
            "FalconMamba", "Tokenizer", "MambaRPC", "MambaDaemon",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),

        .testTarget(name: "CKernelsTests", dependencies: ["CKernels"]),
        // Test support: counts this thread's malloc calls (interposes malloc in the test binary).
        .target(name: "AllocationCounter", path: "Tests/AllocationCounter"),
        .testTarget(name: "FalconMambaTests", dependencies: ["FalconMamba", "AllocationCounter"]),
        .testTarget(name: "TokenizerTests", dependencies: ["Tokenizer"]),
        .testTarget(name: "MambaRPCTests", dependencies: ["MambaRPC"]),
        .testTarget(name: "MambaDaemonTests", dependencies: ["MambaDaemon"]),
        .testTarget(name: "mambadTests", dependencies: ["mambad"]),
        // Starts the real `mambad serve` binary and talks to it over a real socket.
        .testTarget(name: "DaemonEndToEndTests", dependencies: ["MambaDaemon", "MambaRPC"]),
    ]
)
