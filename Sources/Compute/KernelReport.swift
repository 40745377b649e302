import Foundation

/// What the engine's kernels are on this machine, in words, and whether the GEMM back end reaches a fair share of
/// the processor's own measured peak: `bench ops`, `generate --verbose` and the server's start-up log print it.
public struct KernelReport: Sendable {
    public let processor: ProcessorFeatures
    public let gemm: GEMM.KernelSelection
    /// The engine's own SIMD kernels (elementwise, norms, conversions, attention), chosen at run time.
    public let simd: Kernels.Selection
    /// Single-core GFLOP/s: register-only FMA chains on the selected instruction set, and a single-threaded
    /// 512x512x512 `sgemm`.
    public let fmaPeak: Double?
    public let gemmGFLOPS: Double?

    /// Below this share of the FMA peak the back end is reported as running slow kernels.
    public static let slowFraction = 0.5

    /// Describes the kernels; with `measure`, also times the FMA peak and one GEMM on this core (about 0.3 s).
    public static func make(measure: Bool) -> KernelReport {
        let processor = ProcessorFeatures.current
        let gemm = GEMM.selection
        var fmaPeak: Double?, gemmGFLOPS: Double?
        if measure {
            fmaPeak = processor.measuredPeakGFLOPS(gemm.instructionSet, seconds: 0.1)
            gemmGFLOPS = singleThreadGEMM(size: 512)
        }
        return KernelReport(processor: processor, gemm: gemm, simd: Kernels.selection, fmaPeak: fmaPeak, gemmGFLOPS: gemmGFLOPS)
    }

    /// The share of the FMA peak the GEMM reaches, when both were measured.
    public var fraction: Double? {
        guard let fmaPeak, let gemmGFLOPS, fmaPeak > 0 else { return nil }
        return gemmGFLOPS / fmaPeak
    }

    /// Lines for a log or a terminal.
    public var lines: [String] {
        var lines = [
            "processor: \(processor.summary)",
            "GEMM: \(gemm.summary); fp32 weight products on \(GEMM.fp32Backend == .oneDNN ? GEMM.oneDNNSummary + " matmul" : "OpenBLAS")",
            "convolution: \(ConvolutionPaths.summary)",
            "SIMD kernels: \(simd.summary): elementwise, softmax, norms, fp16/bf16 widening, fused attention",
        ]
        if let fmaPeak, let gemmGFLOPS, let fraction {
            lines.append(
                "single core: FMA peak \(String(format: "%.1f", fmaPeak)) GFLOP/s (\(gemm.instructionSet.rawValue)), "
                    + "sgemm 512^3 \(String(format: "%.1f", gemmGFLOPS)) GFLOP/s = \(Int((fraction * 100).rounded())) %")
        }
        if let warning { lines.append(warning) }
        return lines
    }

    /// A warning with the fix, when the kernels are slower than the processor allows.
    public var warning: String? {
        var problems: [String] = []
        if gemm.instructionSet < processor.instructionSet {
            let fix =
                gemm.origin == "openblas"
                ? "unset SWIFTDIFFUSION_ISA=openblas to let the engine choose from CPUID"
                : "unset SWIFTDIFFUSION_ISA, or set it to \(processor.instructionSet.rawValue)"
            problems.append(
                "GEMM runs \(gemm.instructionSet.rawValue) kernels (\(gemm.core)) on a processor with \(processor.instructionSet.rawValue): \(fix)")
        }
        if Kernels.kernelSet(simd.instructionSet) < Kernels.kernelSet(processor.instructionSet) {
            problems.append(
                "SIMD kernels run \(simd.instructionSet.rawValue) on a processor with \(processor.instructionSet.rawValue): "
                    + "unset SWIFTDIFFUSION_ISA, or set it to \(processor.instructionSet.rawValue)")
        }
        if let fraction, fraction < Self.slowFraction {
            problems.append(
                "GEMM reaches \(Int((fraction * 100).rounded())) % of this core's measured FMA peak (below \(Int(Self.slowFraction * 100)) %): "
                    + "another process may be using the cores, or OpenBLAS \(GEMM.openBLASVersion) lacks kernels for this processor "
                    + "(try SWIFTDIFFUSION_ISA=avx2 or avx512 and compare with `swiftdiffusion bench ops --only gemm`)")
        }
        return problems.isEmpty ? nil : "warning: " + problems.joined(separator: "; ")
    }

    private static func singleThreadGEMM(size: Int) -> Double {
        let a = Tensor(shape: [size, size], values: (0..<size * size).map { Float($0 % 7) * 0.01 })
        let b = Tensor(shape: [size, size], values: (0..<size * size).map { Float($0 % 5) * 0.01 })
        let c = Tensor.zeros([size, size])
        var best = Double.infinity
        for _ in 0..<3 {
            let start = DispatchTime.now().uptimeNanoseconds
            GEMM.serial(false, false, size, size, size, 1, a.storage.base, size, b.storage.base, size, 0, c.storage.base, size)
            best = min(best, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
        }
        return 2 * Double(size * size * size) / best / 1e9
    }
}
