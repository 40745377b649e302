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

    /// `bench lora --model`: each stage of using a LoRA on a model folder's UNet (the embedded model here), at its native
    /// size; the SD 1.5 default is too large for the suite.
    func testBenchLoRAMeasuresAModelFolder() throws {
        let embedded = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("models/shapes-sd").path
        let output = try bench(["lora", "--model", embedded, "--ranks", "4", "--repetitions", "1"])
        XCTAssertTrue(output.contains("shapes-sd UNet, 2 threads"), output)
        XCTAssertTrue(output.contains("UNet step at 128px batch 2 without LoRA"), output)
        for column in ["load ms", "keymap ms", "merge ms", "restore ms", "runtime step +%"] { XCTAssertTrue(output.contains(column), output) }
        let row = output.split(separator: "\n").first { $0.hasPrefix("4 ") }
        XCTAssertNotNil(row, "no row for rank 4:\n\(output)")
        let bad = try CommandLineTests.execute(
            CommandLineTests.executable!, ["bench", "lora", "--model", embedded, "--resolution", "100"], environment: ProcessInfo.processInfo.environment)
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.contains("--resolution must be a multiple of 64"), bad.stderr)
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

    /// The BAL quality study at a tiny size on the embedded model and both shipped LoRAs: the LoRA forced to land at
    /// each deadline (the command checks the landing step of every image), SSIM/PSNR against synchronous patching,
    /// the table, the plot and the images. The LoRA-effect rate needs the Python evaluator, which CI does not have.
    func testBenchBALWritesTheTableAndThePlot() throws {
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("bal-smoke-\(getpid())")
        defer { try? FileManager.default.removeItem(at: out) }
        let output = try bench(["bal", "--seeds", "2", "--deadlines", "50,100", "--steps", "2", "--size", "64", "--out", out.path])
        for text in ["| heart | 50 % | 1 of 2 |", "| heart | 100 % | 1 of 2 |", "| outline | synchronous |", "| outline | 50 % |", "mean SSIM"] {
            XCTAssertTrue(output.contains(text), "\(text) missing:\n\(output)")
        }
        let table = try String(contentsOf: out.appendingPathComponent("table.md"), encoding: .utf8)
        XCTAssertTrue(output.contains(table), output)
        let png = try Data(contentsOf: out.appendingPathComponent("bal-study.png"))
        XCTAssertEqual(Array(png.prefix(4)), [0x89, 0x50, 0x4E, 0x47])
        let manifest = try String(contentsOf: out.appendingPathComponent("manifest.jsonl"), encoding: .utf8)
        XCTAssertEqual(manifest.split(separator: "\n").count, 2 * 2 * 3, "2 LoRAs x 2 seeds x (synchronous + 2 deadlines)")
        for set in ["lora_heart_sync", "lora_heart_d50", "lora_outline_d100"] {
            let files = try FileManager.default.contentsOfDirectory(atPath: out.appendingPathComponent("images/\(set)").path)
            XCTAssertEqual(files.count, 2, set)
        }
        // SSIM of a LoRA landing before the last of 2 steps vs synchronous: a real value in (-1, 1].
        let row = try XCTUnwrap(table.split(separator: "\n").first { $0.hasPrefix("| heart | 50 % |") })
        let ssim = try XCTUnwrap(Double(row.split(separator: "|")[3].trimmingCharacters(in: .whitespaces)))
        XCTAssertTrue(ssim > -1 && ssim <= 1, "\(ssim)")
    }

    func testBenchBALRejectsBadDeadlines() throws {
        guard let executable = CommandLineTests.executable else { return XCTFail("swiftdiffusion is not built next to the tests") }
        let run = try CommandLineTests.execute(executable, ["bench", "bal", "--deadlines", "0,150"], environment: ProcessInfo.processInfo.environment)
        XCTAssertNotEqual(run.status, 0)
        XCTAssertTrue(run.stderr.contains("--deadlines must be"), run.stderr)
    }

    /// Every benchmark that reports a median refuses zero repetitions (there would be no sample to report).
    func testBenchesRejectZeroRepetitions() throws {
        guard let executable = CommandLineTests.executable else { return XCTFail("swiftdiffusion is not built next to the tests") }
        for command in ["generate", "controlnet", "lora", "ops", "unet", "vae", "workflow", "pipeline"] {
            let run = try CommandLineTests.execute(executable, ["bench", command, "--repetitions", "0"], environment: ProcessInfo.processInfo.environment)
            XCTAssertNotEqual(run.status, 0, command)
            XCTAssertTrue(run.stderr.contains("--repetitions must be") || run.stderr.contains("--batch and --repetitions must be"), "\(command): \(run.stderr)")
        }
    }
}
