import Foundation
import XCTest

/// Smoke runs of the benchmarks added with issues 11 and 12, at tiny sizes (the measured runs are in
/// docs/benchmarks.md): each prints its table and ratios and exits 0.
final class BenchSmokeTests: XCTestCase {
    private func bench(_ arguments: [String], file: StaticString = #filePath, line: UInt = #line) throws -> String {
        guard let executable = CommandLineTests.executable else {
            XCTFail("swiftdiffusion is not built next to the tests", file: file, line: line)
            return ""
        }
        var environment = ProcessInfo.processInfo.environment
        environment["SWIFTDIFFUSION_THREADS"] = "2"
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
