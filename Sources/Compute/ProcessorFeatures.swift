import CCPUFeatures
import Foundation

/// What this processor and operating system can run, read from CPUID and XGETBV at start-up. Kernels are chosen
/// from these features, never from a table of processor models (a table is out of date on the next processor).
public struct ProcessorFeatures: Sendable, Equatable {
    /// The widest vector instruction set the engine has kernels for.
    public enum InstructionSet: String, Sendable, CaseIterable, Comparable {
        /// x86-64 baseline (SSE2..SSE4.2).
        case baseline
        /// AVX2 with FMA (x86-64-v3).
        case avx2 = "avx2"
        /// AVX-512 F, BW, DQ, VL (x86-64-v4).
        case avx512 = "avx512"
        /// AVX-512 with bf16 dot products (AVX512-BF16).
        case avx512bf16 = "avx512_bf16"

        public static func < (lhs: Self, rhs: Self) -> Bool {
            allCases.firstIndex(of: lhs)! < allCases.firstIndex(of: rhs)!
        }

        /// Floats per vector register.
        public var vectorWidth: Int {
            switch self {
            case .baseline: 4
            case .avx2: 8
            case .avx512, .avx512bf16: 16
            }
        }

        /// Accepts our names and common spellings (`avx512bf16`, `avx-512`, `x86-64-v3`, `sse`, ...).
        public init?(name: String) {
            switch name.lowercased().replacingOccurrences(of: "-", with: "").replacingOccurrences(of: "_", with: "") {
            case "baseline", "sse", "sse2", "sse42", "x8664", "x8664v2", "none": self = .baseline
            case "avx2", "avx2fma", "x8664v3", "haswell": self = .avx2
            case "avx512", "avx512f", "x8664v4", "skylakex": self = .avx512
            case "avx512bf16", "bf16", "cooperlake": self = .avx512bf16
            default: return nil
            }
        }
    }

    public let vendor: String
    public let brand: String
    /// Feature names as Linux's /proc/cpuinfo spells them, for those the engine looks at.
    public let flags: [String]
    /// The best instruction set both the processor and the OS support.
    public let instructionSet: InstructionSet
    /// AMX tiles with bf16, usable by this process (the OS granted the tile state).
    public let hasAMX: Bool
    /// Hardware bf16 arithmetic (AVX512-BF16 or AMX-BF16).
    public var hasBF16: Bool { instructionSet == .avx512bf16 || hasAMX }

    /// The processor this process runs on.
    public static let current = ProcessorFeatures()

    private init() {
        var raw = sd_cpu_features()
        sd_cpu_features_detect(&raw)
        vendor = withUnsafeBytes(of: raw.vendor) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
        brand = withUnsafeBytes(of: raw.brand) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
            .trimmingCharacters(in: .whitespaces)
        let named: [(String, Bool)] = [
            ("sse4_2", raw.sse42), ("avx", raw.avx && raw.osAVX), ("avx2", raw.avx2 && raw.osAVX), ("fma", raw.fma && raw.osAVX),
            ("f16c", raw.f16c), ("avx512f", raw.avx512f && raw.osAVX512), ("avx512bw", raw.avx512bw && raw.osAVX512),
            ("avx512dq", raw.avx512dq && raw.osAVX512), ("avx512vl", raw.avx512vl && raw.osAVX512),
            ("avx512cd", raw.avx512cd && raw.osAVX512), ("avx512_vnni", raw.avx512vnni && raw.osAVX512),
            ("avx512_bf16", raw.avx512bf16 && raw.osAVX512), ("avx512_fp16", raw.avx512fp16 && raw.osAVX512),
            ("amx_tile", raw.amxTile && raw.osAMX), ("amx_bf16", raw.amxBF16 && raw.osAMX), ("amx_int8", raw.amxInt8 && raw.osAMX),
        ]
        flags = named.filter(\.1).map(\.0)
        let avx2 = raw.avx2 && raw.fma && raw.osAVX
        let avx512 = avx2 && raw.osAVX512 && raw.avx512f && raw.avx512bw && raw.avx512dq && raw.avx512vl
        instructionSet = avx512 ? (raw.avx512bf16 ? .avx512bf16 : .avx512) : avx2 ? .avx2 : .baseline
        hasAMX = raw.osAMX && raw.amxBF16
    }

    /// One line for logs: `AMD EPYC 9R14 (AuthenticAMD): avx512_bf16 [avx2 fma avx512f ...]`.
    public var summary: String {
        "\(brand.isEmpty ? "unknown processor" : brand) (\(vendor)): \(instructionSet.rawValue)\(hasAMX ? " + AMX" : "") [\(flags.joined(separator: " "))]"
    }

    /// The measured peak of fused multiply-adds on one core in GFLOP/s for an instruction set this processor has:
    /// register-only FMA chains for about `seconds`, so it reflects the clock the core really runs at.
    public func measuredPeakGFLOPS(_ set: InstructionSet? = nil, seconds: Double = 0.2) -> Double {
        let set = min(set ?? instructionSet, instructionSet)
        let width = set.vectorWidth
        let flopsPerIteration = width == 4 ? 8.0 * 4 * 2 : 12.0 * Double(width) * 2
        var iterations = 1 << 12
        var sink = 0.0
        // Grow the run to about a tenth of the budget, then keep the best of the rounds that fit (the first
        // ones also wake the core up to its full clock).
        var best = 0.0
        var spent = 0.0
        while spent < seconds {
            let start = DispatchTime.now().uptimeNanoseconds
            sink += sd_fma_loop(Int32(width), iterations)
            let elapsed = max(1e-9, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
            spent += elapsed
            best = max(best, Double(iterations) * flopsPerIteration / elapsed / 1e9)
            if elapsed < seconds / 10 && iterations < 1 << 34 { iterations *= 2 }
        }
        precondition(!sink.isInfinite)  // keeps the loops' results alive
        return best
    }
}
