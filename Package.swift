// swift-tools-version:6.0
import PackageDescription

// The numeric targets are always compiled with optimisation, also in debug builds: an unoptimised
// convolution is ~50x slower, which would turn the parity tests from seconds into minutes.
// Everything is built for the architecture's baseline (x86-64: SSE2), so one binary runs on every x86-64
// processor: the code that needs wide vectors chooses its instruction set at run time from CPUID
// (Compute/ProcessorFeatures.swift): the GEMM back end (OpenBLAS's kernel set) and the engine's own SIMD
// kernels (Sources/CKernels, compiled for AVX-512, AVX2 + FMA and SSE2 in the same binary).
// (SWIFTDIFFUSION_PORTABLE, which once chose a baseline build instead of `-target-cpu haswell`, is not read
// any more: every build is portable.)
let numericSettings: [SwiftSetting] = [.unsafeFlags(["-Ounchecked"])]

let package = Package(
    name: "SwiftDiffusion",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "swiftdiffusion", targets: ["swiftdiffusion"]),
        .library(name: "Compute", targets: ["Compute"]),
        .library(name: "Weights", targets: ["Weights"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-configuration", from: "1.4.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/mattpolzin/OpenAPIKit", from: "6.4.0"),
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.2"),
        // gRPC for remote ControlNet workers (issue 12 item 2). The generated code is committed
        // (tools/generate-grpc.sh), so no build plugin runs in CI.
        .package(url: "https://github.com/grpc/grpc-swift-2", from: "2.4.3"),
        .package(url: "https://github.com/grpc/grpc-swift-nio-transport", from: "2.9.2"),
        .package(url: "https://github.com/grpc/grpc-swift-protobuf", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
    ],
    targets: [
        // OpenBLAS (Debian: libopenblas-dev) through its CBLAS header.
        .systemLibrary(
            name: "COpenBLAS",
            path: "Sources/COpenBLAS",
            pkgConfig: "openblas",
            providers: [.apt(["libopenblas-dev"]), .brew(["openblas"])]
        ),
        // oneDNN (Debian: libdnnl-dev 2.6, what PyTorch runs on CPU): bf16 matmul on AVX512-BF16/AMX kernels it picks
        // from CPUID. Debian ships no pkg-config file for it; the headers and library are on the default paths.
        .systemLibrary(name: "CDNNL", path: "Sources/CDNNL", providers: [.apt(["libdnnl-dev"])]),
        // A per-shape cache of single-threaded oneDNN matmul primitives, and f32 <-> bf16 conversion.
        // (A C target does not autolink a module map's `link`: the library is named here too.)
        .target(
            name: "CDNNLMatmul", dependencies: ["CDNNL"], path: "Sources/CDNNLMatmul", cSettings: [.unsafeFlags(["-O2"])],
            linkerSettings: [.linkedLibrary("dnnl")]),
        // Image codecs from Debian: libpng (simplified API), libjpeg-turbo (TurboJPEG API), zlib (CRC-32).
        .systemLibrary(name: "CPNG", path: "Sources/CPNG", pkgConfig: "libpng", providers: [.apt(["libpng-dev"]), .brew(["libpng"])]),
        .systemLibrary(
            name: "CTurboJPEG", path: "Sources/CTurboJPEG", pkgConfig: "libturbojpeg",
            providers: [.apt(["libturbojpeg0-dev"]), .brew(["jpeg-turbo"])]),
        .systemLibrary(name: "CZlib", path: "Sources/CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        // CPUID/XGETBV feature detection, OpenBLAS kernel re-selection and per-ISA FMA peak loops (C: one file
        // carries code for several instruction sets, each function compiled for its own target).
        .target(name: "CCPUFeatures", path: "Sources/CCPUFeatures", cSettings: [.unsafeFlags(["-O2"])]),
        // The engine's SIMD kernels (elementwise functions, softmax, norms, fp16/bf16 widening, fused attention),
        // written once on clang vector extensions and compiled per instruction set; Compute/Kernels.swift dispatches.
        .target(name: "CKernels", path: "Sources/CKernels", cSettings: [.unsafeFlags(["-O2"])]),
        // Tensors, ops, CPU kernels and the engine's thread pool.
        .target(name: "Compute", dependencies: ["COpenBLAS", "CCPUFeatures", "CKernels", "CDNNLMatmul"], swiftSettings: numericSettings),
        // safetensors, diffusers folders, .npy, checkpoint key conversion.
        .target(name: "Weights", dependencies: ["Compute"], swiftSettings: numericSettings),
        // CLIP tokenizer and text encoders, UNet, VAE, ControlNet, TAESD: built from diffusers configs.
        .target(name: "Models", dependencies: ["Compute", "Weights"], swiftSettings: numericSettings),
        // LoRA formats -> one canonical form; key maps; merged and runtime application.
        .target(name: "Adapters", dependencies: ["Compute", "Weights", "Models"], swiftSettings: numericSettings),
        // Schedulers (DDIM, PNDM, Euler, Euler ancestral, DPM++ 2M, LCM, ...) and PyTorch-compatible noise.
        .target(name: "Samplers", dependencies: ["Compute"], swiftSettings: numericSettings),
        // One request's workflow: encode the prompt, denoise, decode; step hooks.
        .target(name: "Pipelines", dependencies: ["Compute", "Weights", "Models", "Adapters", "Samplers", "Imaging"], swiftSettings: numericSettings),
        // PNG/JPEG in and out, image <-> tensor conversion, ControlNet preprocessors.
        .target(name: "Imaging", dependencies: ["Compute", "CPNG", "CTurboJPEG", "CZlib"], swiftSettings: numericSettings),
        // Jobs, queue and scheduler, caches, bounded asynchronous LoRA loading, job store, metrics. No HTTP.
        .target(
            name: "Serving",
            dependencies: [
                "Compute", "Weights", "Models", "Adapters", "Samplers", "Pipelines", "Imaging",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // ControlNet workers in other processes or hosts: the gRPC service (`swiftdiffusion worker --role controlnet`)
        // and the `remote` ControlNet executor that `serve --controlnet-worker` uses. Generated code in Generated/.
        .target(
            name: "RemoteControlNet",
            dependencies: [
                "Compute", "Models", "Pipelines", "Serving",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2Posix", package: "grpc-swift-nio-transport"),
                .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            exclude: ["Protos"],
            swiftSettings: numericSettings
        ),
        // HTTP surfaces: native /v1 API, AUTOMATIC1111 /sdapi/v1, OpenAI images, operations routes, web page.
        .target(
            name: "Server",
            dependencies: [
                "Serving", "Imaging", "Pipelines", "Samplers",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            resources: [.copy("Resources")]
        ),
        // The commands behind the `swiftdiffusion` executable (a library so tests can drive them).
        .target(
            name: "SwiftDiffusionCLI",
            dependencies: [
                "Compute", "Weights", "Models", "Adapters", "Samplers", "Pipelines", "Imaging", "Serving", "Server",
                "RemoteControlNet", "Dependence", "Traces", "Charts",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Configuration", package: "swift-configuration"),
            ],
            swiftSettings: numericSettings
        ),
        .executableTarget(name: "swiftdiffusion", dependencies: ["SwiftDiffusionCLI"]),
        // Dependence measures (Pearson ... MICe, HHG) with permutation p-values. No model code, no dependencies.
        .target(name: "Dependence", swiftSettings: numericSettings),
        // Charts as PNG: a raster back end for the Dependence chart layout (5x7 bitmap font), written with Imaging's libpng.
        .target(name: "Charts", dependencies: ["Dependence", "Imaging"], swiftSettings: numericSettings),
        // Request traces: schema (JSONL/CSV), job-store export, synthetic generator, replay, characterization. No HTTP server.
        .target(name: "Traces", dependencies: ["Dependence", "Charts", "Serving", .product(name: "GRDB", package: "GRDB.swift")], swiftSettings: numericSettings),

        // Shared helpers for tests: golden-file loading and tensor comparison.
        .target(name: "ParityTesting", dependencies: ["Compute", "Weights"], path: "Tests/ParityTesting"),
        .testTarget(name: "ComputeTests", dependencies: ["Compute", "ParityTesting"]),
        .testTarget(name: "WeightsTests", dependencies: ["Weights", "ParityTesting"]),
        .testTarget(name: "ModelsTests", dependencies: ["Models", "ParityTesting"]),
        .testTarget(name: "SamplersTests", dependencies: ["Samplers", "ParityTesting"]),
        .testTarget(name: "AdaptersTests", dependencies: ["Adapters", "ParityTesting"]),
        .testTarget(name: "ImagingTests", dependencies: ["Imaging", "ParityTesting"]),
        .testTarget(
            name: "ServingTests",
            // RemoteControlNet: replicas on the shared store with registered ControlNet workers (ControlNetWorkerRegistryTests).
            dependencies: ["Serving", "RemoteControlNet", "ParityTesting", .product(name: "PostgresNIO", package: "postgres-nio")]
        ),
        .testTarget(
            name: "ServerTests",
            dependencies: [
                "Server", "Serving", "ParityTesting",
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "OpenAPIKit", package: "OpenAPIKit"),
            ]
        ),
        .testTarget(name: "PipelinesTests", dependencies: ["Pipelines", "ParityTesting"]),
        .testTarget(
            name: "RemoteControlNetTests",
            dependencies: [
                "RemoteControlNet", "Pipelines", "Models", "Compute", "ParityTesting",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2Posix", package: "grpc-swift-nio-transport"),
            ]
        ),
        .testTarget(name: "DependenceTests", dependencies: ["Dependence"], exclude: ["Fixtures"]),
        .testTarget(name: "TracesTests", dependencies: ["Traces", "Serving", "Dependence", "Charts", "Imaging"]),
        .testTarget(name: "ChartsTests", dependencies: ["Charts", "Dependence", "Imaging"]),
        // Runs the built `swiftdiffusion` executable as a subprocess.
        .testTarget(name: "CommandLineTests", dependencies: ["Weights", "ParityTesting"]),
    ]
)
