import ArgumentParser
import Compute
import Foundation
import Pipelines
import Samplers

/// `swiftdiffusion bench pipeline`: the whole job a user runs — prompt to image with the SD 1.5 architecture
/// (random weights): CLIP text encoder, UNet with classifier-free guidance (two branches), DPM++ 2M, VAE decode —
/// through the engine's own request-to-image path (`DiffusionPipeline.generate`, what `generate` and `serve` run).
/// With `--torch-python`, diffusers' `StableDiffusionPipeline` built from the same configs runs the same job in
/// its own process in the same run (tools/bench/torch_pipeline.py), with the same threads and the same warm-up
/// (one 1-step image at the same size); seconds, peak RSS and ratios for each side.
struct PipelineBenchmarkCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pipeline",
        abstract: "Seconds and peak memory per SD 1.5 image (text encoder + UNet with guidance + VAE, random weights), optionally vs diffusers.",
        discussion: """
            The full run (about 8 minutes per side on 2 cores):
              swiftdiffusion bench pipeline --torch-python /work/venv/bin/python
              swiftdiffusion bench pipeline --torch-python /work/venv/bin/python --precision bf16
            With bf16, diffusers runs twice, fp32 and under torch.autocast("cpu", dtype=torch.bfloat16), each in its own process.
            """
    )

    @Option(help: "Image width and height in pixels.")
    var resolution = 512

    @Option(help: "Denoising steps.")
    var steps = 20

    @Option(help: "Timed images per side (the median is reported).")
    var repetitions = 1

    @Option(help: "Python with torch + diffusers: also run tools/bench/torch_pipeline.py in this run.")
    var torchPython: String?

    @OptionGroup var precisionOption: PrecisionOption

    static let prompt = "a photograph of an astronaut riding a horse"
    static let guidance: Float = 7.5

    func validate() throws {
        guard resolution >= 64, resolution <= 1024, resolution % 64 == 0 else {
            throw ValidationError("--resolution must be a multiple of 64 between 64 and 1024")
        }
        guard (1...150).contains(steps) else { throw ValidationError("--steps must be between 1 and 150") }
        try Timing.checkRepetitions(repetitions, upTo: 20)
    }

    func run() throws {
        if let torchPython { _ = try InputPath.existing(torchPython) }  // before minutes of Swift work
        let precision = try precisionOption.resolve()
        let threads = ComputePool.shared.threadCount
        print("SwiftDiffusion bench pipeline: SD 1.5 architecture, random weights, \(resolution)x\(resolution), \(steps) steps, "
            + "DPM++ 2M, guidance \(Self.guidance), \(threads) threads")
        print(PrecisionOption.describe(precision))
        let tokenizer = try ModelLocation.embeddedModel().appendingPathComponent("tokenizer")
        var built: StableDiffusionModel?
        let buildSeconds = try Timing.seconds { built = try StableDiffusionModel(randomStandardSD15: tokenizer, precision: precision) }
        guard let model = built else { return }
        print("model built in \(buildSeconds.formatted(1)) s; resident \(ProcessMemory.residentMiB.map { $0.formatted(0) } ?? "?") MiB")

        let pipeline = DiffusionPipeline(model: model)
        func request(steps: Int, seed: UInt64) -> GenerationRequest {
            GenerationRequest(
                prompt: Self.prompt, negativePrompt: "", width: resolution, height: resolution, steps: steps,
                sampler: .dpmPlusPlus2M, guidanceScale: Self.guidance, seed: seed)
        }
        _ = try pipeline.generate(request(steps: 1, seed: 0))  // warm-up, as the PyTorch side does
        var times: [Double] = []
        var stages: [String: [Double]] = [:]
        for repetition in 0..<repetitions {
            var result: GenerationResult?
            times.append(try Timing.seconds { result = try pipeline.generate(request(steps: steps, seed: UInt64(repetition))) })
            for (stage, seconds) in result?.timings ?? [:] { stages[stage, default: []].append(seconds) }
        }
        let median = Self.median(times)
        let peak = ProcessMemory.peakResidentMiB ?? 0
        print("swift \(precision.rawValue):   median \(median.formatted(2)) s/image (\(times.map { $0.formatted(2) }.joined(separator: ", "))), peak RSS \(peak.formatted(0)) MiB")
        print("  stages: " + stages.sorted { $0.key < $1.key }.map { "\($0.key) \(Self.median($0.value).formatted(2)) s" }.joined(separator: ", "))

        guard let torchPython else {
            print("(pass --torch-python /path/to/venv/bin/python to run diffusers in the same run)")
            return
        }
        var baselines = ["none"]
        if precision == .bf16 { baselines.append("bf16") }
        for autocast in baselines {
            let torch = try runTorch(python: torchPython, threads: threads, autocast: autocast)
            let label = autocast == "bf16" ? "pytorch bf16 autocast" : "pytorch fp32"
            print("\(label): median \(torch.seconds.formatted(2)) s/image, peak RSS \(torch.peakMiB.formatted(0)) MiB (\(torch.versions))")
            print("ratio:   swift \(precision.rawValue) / \(label) = \((median / torch.seconds).formatted(2)) (time), "
                + "\((peak / torch.peakMiB).formatted(2)) (peak RSS); below 1 means faster / smaller than diffusers")
        }
    }

    static func median(_ values: [Double]) -> Double { Timing.median(values) }

    private func runTorch(python: String, threads: Int, autocast: String) throws -> (seconds: Double, peakMiB: Double, versions: String) {
        let script = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("tools/bench/torch_pipeline.py")
        let tokenizer = try ModelLocation.embeddedModel().appendingPathComponent("tokenizer")
        let output = try Subprocess.run(
            python,
            [script.path, "--resolution", "\(resolution)", "--steps", "\(steps)", "--repetitions", "\(repetitions)",
             "--threads", "\(threads)", "--autocast", autocast, "--tokenizer", tokenizer.path, "--json"])
        guard let line = output.split(separator: "\n").last,
            let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
            let seconds = object["median_seconds"] as? Double, let peak = object["peak_rss_mib"] as? Double
        else { throw ValidationError("unexpected output from the PyTorch script:\n\(output)") }
        return (seconds, peak, "diffusers \(object["diffusers"] as? String ?? "?"), torch \(object["torch"] as? String ?? "?")")
    }
}
