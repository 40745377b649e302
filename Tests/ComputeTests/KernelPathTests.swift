import Compute
import Foundation
import ParityTesting
import XCTest

/// Kernels chosen from CPUID: the detected features agree with the kernel's view of the processor, every GEMM
/// path this processor can run gives the goldens' numbers, and a path the processor cannot run is never chosen.
final class KernelPathTests: XCTestCase {
    func testFeaturesAgreeWithTheKernelsCPUInfo() throws {
        #if os(Linux) && arch(x86_64)
        let cpuinfo = try String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)
        guard let line = cpuinfo.split(separator: "\n").first(where: { $0.hasPrefix("flags") }) else {
            return XCTFail("no flags line in /proc/cpuinfo")
        }
        let kernelFlags = Set(line.split(separator: ":")[1].split(separator: " ").map(String.init))
        let ours = Set(ProcessorFeatures.current.flags)
        for flag in ["avx2", "fma", "avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512_bf16", "avx512_fp16"] {
            XCTAssertEqual(ours.contains(flag), kernelFlags.contains(flag), flag)
        }
        let expected: ProcessorFeatures.InstructionSet =
            kernelFlags.isSuperset(of: ["avx512f", "avx512bw", "avx512dq", "avx512vl"])
            ? (kernelFlags.contains("avx512_bf16") ? .avx512bf16 : .avx512)
            : kernelFlags.isSuperset(of: ["avx2", "fma"]) ? .avx2 : .baseline
        XCTAssertEqual(ProcessorFeatures.current.instructionSet, expected)
        print("processor: \(ProcessorFeatures.current.summary)")
        #endif
    }

    func testTheDefaultSelectionIsTheBestPathTheProcessorHas() {
        let selection = GEMM.selection
        print("GEMM: \(selection.summary)")
        if ProcessInfo.processInfo.environment["SWIFTDIFFUSION_ISA"] == nil {
            XCTAssertEqual(selection.instructionSet, ProcessorFeatures.current.instructionSet)
            XCTAssertEqual(selection.origin, "cpuid")
        }
        let kernels = Kernels.selection
        print("SIMD kernels: \(kernels.summary)")
        if ProcessInfo.processInfo.environment["SWIFTDIFFUSION_ISA"] == nil {
            XCTAssertEqual(kernels.instructionSet, min(ProcessorFeatures.current.instructionSet, .avx512))
            XCTAssertEqual(kernels.origin, "cpuid")
        }
    }

    func testInstructionSetNames() {
        XCTAssertEqual(ProcessorFeatures.InstructionSet(name: "AVX-512"), .avx512)
        XCTAssertEqual(ProcessorFeatures.InstructionSet(name: "avx512_bf16"), .avx512bf16)
        XCTAssertEqual(ProcessorFeatures.InstructionSet(name: "x86-64-v3"), .avx2)
        XCTAssertEqual(ProcessorFeatures.InstructionSet(name: "baseline"), .baseline)
        XCTAssertNil(ProcessorFeatures.InstructionSet(name: "neon"))
        XCTAssertLessThan(ProcessorFeatures.InstructionSet.avx2, .avx512)
    }

    /// Every GEMM path the processor can run (forced one after another, as `SWIFTDIFFUSION_ISA` does) reproduces the
    /// PyTorch goldens of the ops built on GEMM; asking for more than the processor has gives its best path.
    func testEveryGEMMPathThisProcessorCanRunMatchesTheGoldens() throws {
        let best = ProcessorFeatures.current.instructionSet
        let original = GEMM.selection
        defer { GEMM.restore(original) }
        for set in ProcessorFeatures.InstructionSet.allCases where set <= best {
            let selection = GEMM.select(set)
            XCTAssertEqual(selection.instructionSet, set)
            XCTAssertEqual(GEMM.coreName.lowercased(), ["Prescott", "Haswell", "SkylakeX", "Cooperlake"][set.rawIndex].lowercased())
            let linearGolden = try Golden("ops/linear_bias")
            assertClose(
                linear(try linearGolden.input("x"), weight: try linearGolden.param("weight"), bias: try linearGolden.param("bias")),
                try linearGolden.output("y"), tolerance: 1e-5, "linear on \(set.rawValue)")
            let conv = try Golden("ops/conv2d_3x3_s1_p1")
            let y = conv2d(
                nchwToNHWC(try conv.input("x")), weight: channelsLastKernel(try conv.param("weight")), bias: try conv.param("bias"),
                stride: 1, padding: .uniform(1))
            assertClose(y, nchwToNHWC(try conv.output("y")), tolerance: 2e-5, "conv 3x3 on \(set.rawValue)")
            let sdpa = try Golden("ops/sdpa_long")
            let attrs = try Attributes(sdpa)
            let interleave = { (t: Tensor) in permute(t, [0, 2, 1, 3]).reshaped([t.shape[0], t.shape[2], t.shape[1] * t.shape[3]]) }
            let attended = attention(
                query: interleave(try sdpa.input("q")), key: interleave(try sdpa.input("k")), value: interleave(try sdpa.input("v")),
                heads: try attrs.int("heads"), causal: try attrs.bool("is_causal"))
            assertClose(attended, interleave(try sdpa.output("y")), tolerance: 5e-6, "attention on \(set.rawValue)")
        }
        if best < .avx512bf16 {
            XCTAssertEqual(GEMM.select(.avx512bf16).instructionSet, best, "never a path the processor lacks")
        }
    }

    func testMeasuredPeaksAreOrderedAndPlausible() {
        let processor = ProcessorFeatures.current
        let baseline = processor.measuredPeakGFLOPS(.baseline, seconds: 0.05)
        let best = processor.measuredPeakGFLOPS(seconds: 0.05)
        print("FMA peak per core: baseline \(baseline) GFLOP/s, \(processor.instructionSet.rawValue) \(best) GFLOP/s")
        XCTAssertGreaterThan(baseline, 0.5)
        XCTAssertLessThan(best, 1000, "one core cannot do a teraflop")
        if processor.instructionSet >= .avx2 {
            // Twice the lanes and fused operations: at least 1.5x the SSE multiply-add loop, even on a busy machine.
            XCTAssertGreaterThan(best, 1.5 * baseline)
        }
        let report = KernelReport.make(measure: true)
        XCTAssertNotNil(report.fraction)
        XCTAssertTrue(report.lines.contains { $0.hasPrefix("GEMM: OpenBLAS") }, "\(report.lines)")
    }
}

extension ProcessorFeatures.InstructionSet {
    fileprivate var rawIndex: Int { Self.allCases.firstIndex(of: self)! }
}
