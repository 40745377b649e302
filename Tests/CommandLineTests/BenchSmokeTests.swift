import Foundation
import XCTest

/// Smoke runs of the benchmarks added with issues 11 and 12, at tiny sizes (the measured runs are in
/// docs/benchmarks.md): each prints its table and ratios and exits 0.
final class BenchSmokeTests: XCTestCase {
    private func bench(
        _ arguments: [String], environment extra: [String: String] = [:], file: StaticString = #filePath, line: UInt = #line
    ) throws -> String {
        guard let executable = CommandLineTests.executable else {
            XCTFail("swiftdiffusion is not built next to the tests", file: file, line: line)
            return ""
        }
        var environment = ProcessInfo.processInfo.environment
        environment["SWIFTDIFFUSION_THREADS"] = "2"
        environment.merge(extra) { $1 }
        let run = try CommandLineTests.execute(executable, ["bench"] + arguments, environment: environment)
        XCTAssertEqual(run.status, 0, run.stderr, file: file, line: line)
        return run.stdout
    }

    func testBenchOpsPathsComparesEveryKernelPath() throws {
        let output = try bench(["ops", "--paths", "--quick", "--repetitions", "1"])
        XCTAssertTrue(output.contains("baseline: OpenBLAS"), output)
        XCTAssertTrue(output.contains("sse GF/s"), output)
        XCTAssertTrue(output.contains("x "), output)  // the ratio column
    }

    /// `SWIFTDIFFUSION_ISA` forces the SIMD kernels as it forces the GEMM kernels, and the report names both; the
    /// attention line gives its share of the sgemm peak.
    func testBenchOpsNamesTheForcedKernelPaths() throws {
        let output = try bench(["ops", "--quick", "--repetitions", "1"], environment: ["SWIFTDIFFUSION_ISA": "baseline"])
        XCTAssertTrue(output.contains("GEMM: OpenBLAS"), output)
        XCTAssertTrue(output.contains("SIMD kernels: baseline (4 floats per vector, forced by SWIFTDIFFUSION_ISA)"), output)
        XCTAssertTrue(output.contains("attention (fused, baseline kernels): "), output)
        XCTAssertTrue(output.contains("% of the measured sgemm peak"), output)
    }

    func testBenchControlNetRunsItsFourModes() throws {
        let output = try bench(["controlnet", "--steps", "1", "--repetitions", "1"])
        for mode in ["0C, UNet on 1 thread", "1C sequential, 1 thread", "1C service"] {
            XCTAssertTrue(output.contains(mode), output)
        }
        XCTAssertTrue(output.contains("ratio service / sequential on equal cores = "), output)
    }

    func testBenchVAEDecodes() throws {
        let output = try bench(["vae", "--resolution", "64", "--repetitions", "1"])
        XCTAssertTrue(output.contains("swift:   decode to 64x64: median"), output)
    }

    /// The workflow benchmark at a tiny size: both columns for the workloads named, per-stage timings, ratios; on
    /// random weights of the embedded architectures written at bench start (what --sd15 does for SD 1.5).
    func testBenchWorkflowRunsBothColumns() throws {
        let output = try bench([
            "workflow", "--random-weights", "--size", "32", "--steps", "2", "--repetitions", "1", "--rank", "4", "--workloads", "0C/0L,1C/1L,2C/2L",
        ])
        for text in ["baseline s", "swiftdiffusion s", "sd / baseline", "0C/0L", "1C/1L", "2C/2L", "lora_load", "denoise", "vs its 0C/0L"] {
            XCTAssertTrue(output.contains(text), "\(text) missing:\n\(output)")
        }
        XCTAssertFalse(output.contains("diffusers s"), "no diffusers column without --torch-python")
    }

    /// The whole SD 1.5 pipeline (random weights) through the engine's request-to-image path at 64x64, one step.
    func testBenchPipelineRunsTheWholeJob() throws {
        let output = try bench(["pipeline", "--resolution", "64", "--steps", "1", "--repetitions", "1"])
        XCTAssertTrue(output.contains("precision: fp32"), output)
        XCTAssertTrue(output.contains("swift fp32:   median"), output)
        for stage in ["encode_prompt", "denoise", "decode"] { XCTAssertTrue(output.contains(stage), "\(stage) missing: \(output)") }
    }

    /// bench ops --backends: OpenBLAS, oneDNN fp32 and oneDNN bf16 on the same shapes, with ratios.
    func testBenchOpsBackendsComparesOneDNNAndOpenBLAS() throws {
        let output = try bench(["ops", "--backends", "--quick", "--repetitions", "1"])
        XCTAssertTrue(output.contains("oneDNN 2."), output)
        XCTAssertTrue(output.contains("f32: oneDNN/OpenBLAS"), output)
        XCTAssertTrue(output.contains("attention projection"), output)
    }
}
