import ArgumentParser
import Compute
import Foundation
import Pipelines
import Samplers
import Serving

/// `swiftdiffusion bench generate`: seconds per complete image through the engine (prompt encoding, denoising with
/// guidance, VAE decode, PNG encoding) on a loaded model, the model load excluded. tools/bench/compare_generate.py runs it next to
/// diffusers on the same model. Also times the same requests with latent parallelism off (one batch-2 UNet call
/// per step) in the same run and prints the ratio.
struct GenerateBenchmarkCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Seconds per generated image on a model (load excluded); --json for one JSON line."
    )

    @Option(help: "Model folder or checkpoint (default: the embedded model).")
    var model: String?

    @Option(help: "Image width and height.")
    var size: Int?

    @Option(help: "Denoising steps.")
    var steps = 20

    @Option(help: "Sampler.")
    var sampler = "dpmpp_2m"

    @Option(help: "Guidance scale.")
    var cfg: Float = 6

    @Option(help: "Timed repetitions (the median is reported).")
    var repetitions = 5

    @Flag(help: "Print one JSON line.")
    var json = false

    @Option(
        name: .customLong("latent-parallel"),
        help: "Latent parallelism for the timed run: automatic, on or off (the baseline run is always off).")
    var latentParallel = "automatic"

    func validate() throws {
        try Timing.checkRepetitions(repetitions)
    }

    func run() throws {
        let url = try ModelLocation.resolve(model)
        // Through the engine every front end uses (`ImageEngine.prepare` + `render`), PNG encoding included.
        let repository = ModelRepository(roots: [], embeddedModels: nil)
        let modelID = repository.register(.checkpoint, path: url.path)
        var configuration = EngineConfiguration()
        configuration.tokenizerFolder = try? ModelLocation.embeddedModel().appendingPathComponent("tokenizer").path
        configuration.limits.maximumSteps = max(configuration.limits.maximumSteps, steps)
        let engine = ImageEngine(repository: repository, configuration: configuration, logger: CommandLineLog.logger())
        let pipeline = try engine.pipeline(for: modelID)
        let loaded = pipeline.model
        let side = size ?? (loaded.unet.configuration.sampleSize ?? 64) * loaded.vaeScaleFactor
        var spec = JobSpec(
            model: modelID, prompt: "a red circle on a blue background", negativePrompt: "", width: side, height: side, steps: steps,
            sampler: sampler, cfg: cfg, seed: 0)
        let samplerKind = try SamplerKind.named(sampler)
        guard let mode = DiffusionPipeline.BranchParallelism(rawValue: latentParallel) else {
            throw ValidationError("--latent-parallel must be automatic, on or off")
        }
        // Timed mode and the batched baseline alternate, repetition by repetition, in one run.
        var times: [Double] = []
        var baseline: [Double] = []
        var stages: [String: [Double]] = [:]
        for repetition in 0...repetitions {
            spec.seed = UInt64(repetition)
            let request = try engine.prepare(spec)
            for (index, branchMode) in [mode, .off].enumerated() {
                pipeline.branchParallelism = branchMode
                var result: RenderedImages?
                let seconds = try Timing.seconds { result = try engine.render(request) }
                if repetition == 0 { continue }  // warm-up
                if index == 1 {
                    baseline.append(seconds)
                    continue
                }
                times.append(seconds)
                for (stage, value) in result?.timings ?? [:] where stage != "generate" { stages[stage, default: []].append(value) }
            }
        }
        let median = { (values: [Double]) in Timing.median(values) }
        if json {
            var object: [String: Any] = [
                "median_seconds": median(times), "all_seconds": times, "threads": ComputePool.shared.threadCount, "size": side,
                "steps": steps, "latent_parallel": mode.rawValue, "batched_median_seconds": median(baseline),
            ]
            for (stage, values) in stages { object["\(stage)_seconds"] = median(values) }
            let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        } else {
            print("\(loaded.name): \(side)x\(side), \(steps) steps, \(samplerKind.a1111Name), cfg \(cfg): median \(median(times).formatted(3)) s/image")
            for (stage, values) in stages.sorted(by: { $0.key < $1.key }) { print("  \(stage): \(median(values).formatted(3)) s") }
            print(
                "baseline, latent parallelism off (one batch-2 UNet call per step): median \(median(baseline).formatted(3)) s/image; "
                    + "ratio latent-parallel=\(mode.rawValue) / off = \((median(times) / median(baseline)).formatted(2))")
        }
    }
}
