import ArgumentParser
import Compute
import Foundation
import Imaging
import Models
import Pipelines
import Serving
import Weights

/// `swiftdiffusion bench workflow`: the paper's workflow benchmark. Workloads `xC/yL` (x ControlNets, y LoRAs of
/// rank 64 written to disk at bench start and not yet cached when a request comes) on one model, each request run
/// through `ImageEngine` (the path every front end uses) in two configurations on equal cores, alternating
/// request by request:
/// - `baseline`: the engine run the way a diffusers-style server runs add-ons — LoRAs read and fused before
///   denoising on every request, ControlNets one after another on the base model's cores, one batch-2 UNet call;
/// - `swiftdiffusion`: the adapter schedule (LoRAs loading beside denoising, patched by the deadline step), the
///   ControlNet worker beside the UNet (requests with ControlNets) and latent parallelism.
/// `--torch-python` adds the `diffusers` column: tools/bench/torch_workflow.py doing what diffusers users do per
/// request (`load_lora_weights` + `fuse_lora`, a MultiControlNet pipeline, `unfuse_lora` + `unload_lora_weights`).
struct WorkflowBenchmarkCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "workflow",
        abstract: "The paper's workflow benchmark (xC/yL): baseline vs SwiftDiffusion (and diffusers) per workload, same run, equal cores."
    )

    @Option(help: "Model folder (default: the embedded model).")
    var model: String?

    @Option(help: "ControlNet folder used for every ControlNet of a workload, each under its own name (default: the embedded canny ControlNet).")
    var controlnet: String?

    @Option(help: "Image width and height (default: the model's native size).")
    var size: Int?

    @Option(help: "Denoising steps.")
    var steps = 10

    @Option(help: "Guidance scale.")
    var cfg: Float = 7

    @Option(help: "LoRA rank.")
    var rank = 64

    @Option(help: "Workloads, comma-separated xC/yL (default: the paper's six and 0C/2L).")
    var workloads = "0C/0L,1C/0L,0C/1L,0C/2L,1C/1L,2C/2L,3C/2L"

    @Option(help: "Timed requests per workload and column (the median is reported), after one untimed warm-up.")
    var repetitions = 3

    @Option(name: .customLong("torch-python"), help: "A Python with torch and diffusers: adds the diffusers column (tools/bench/torch_workflow.py).")
    var torchPython: String?

    @Flag(help: "The SD 1.5 architectures (UNet, CLIP ViT-L text encoder, VAE, ControlNet) with random weights, written to a temporary folder at bench start; --size defaults to 256.")
    var sd15 = false

    @Flag(name: .customLong("random-weights"), help: "Random weights of --model's and --controlnet's architectures instead of their weights (what --sd15 does for SD 1.5).")
    var randomWeights = false

    @Flag(help: "Print one JSON line.")
    var json = false

    struct Workload: Hashable {
        var controls: Int
        var loras: Int
        var name: String { "\(controls)C/\(loras)L" }
    }

    func parsedWorkloads() throws -> [Workload] {
        try workloads.split(separator: ",").map { text in
            let parts = text.split(separator: "/")
            guard parts.count == 2, parts[0].hasSuffix("C"), parts[1].hasSuffix("L"), let c = Int(parts[0].dropLast()), let l = Int(parts[1].dropLast()),
                (0...4).contains(c), (0...8).contains(l)
            else { throw ValidationError("--workloads: '\(text)' is not xC/yL with 0 <= x <= 4, 0 <= y <= 8") }
            return Workload(controls: c, loras: l)
        }
    }

    func validate() throws {
        _ = try parsedWorkloads()
        guard (1...150).contains(steps) else { throw ValidationError("--steps must be between 1 and 150") }
        try Timing.checkRepetitions(repetitions, upTo: 50)
        guard (1...256).contains(rank) else { throw ValidationError("--rank must be between 1 and 256") }
    }

    func run() throws {
        let torch = try torchPython.map(InputPath.existing)
        var modelURL = try ModelLocation.resolve(model)
        var controlURL =
            try controlnet.map(InputPath.folder)
            ?? ModelLocation.embeddedModel().deletingLastPathComponent().appendingPathComponent("shapes-sd-controlnet-canny")
        let list = try parsedWorkloads()
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("swiftdiffusion-bench-workflow-\(getpid())")
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: work) }
        if sd15 || randomWeights {
            // A pipeline folder of random weights both SwiftDiffusion and diffusers load.
            let configs = sd15 ? try RandomModelFolder.sd15 : try RandomModelFolder.configs(model: modelURL, controlnet: controlURL)
            (modelURL, controlURL) = try RandomModelFolder.write(
                configs, embedded: try ModelLocation.embeddedModel(), to: work.appendingPathComponent(sd15 ? "sd15-random" : "random"))
        }

        // One registry and one engine for both columns: the model, up to 4 ControlNets (the same weights under their own
        // names: each is loaded and cached as a model of its own) and the LoRAs, written now. The columns differ only
        // in how the engine runs a request (set per request below).
        let repository = ModelRepository(roots: [], embeddedModels: nil)
        let modelID = repository.register(.checkpoint, path: modelURL.path)
        let maximumControls = list.map(\.controls).max() ?? 0, maximumLoRAs = list.map(\.loras).max() ?? 0
        var controlIDs: [String] = []
        for index in 0..<maximumControls {
            let link = work.appendingPathComponent("controlnet-\(index + 1)")
            try FileManager.default.createSymbolicLink(at: link, withDestinationURL: controlURL)
            controlIDs.append(repository.register(.controlnet, path: link.path))
        }
        var configuration = EngineConfiguration()
        configuration.tokenizerFolder = try? ModelLocation.embeddedModel().appendingPathComponent("tokenizer").path
        configuration.limits.maximumControls = 4
        let cores = ComputePool.shared.threadCount
        configuration.controlNetWorkerThreads = cores >= 2 ? max(1, cores / 2) : 0
        let engine = ImageEngine(repository: repository, configuration: configuration, logger: CommandLineLog.logger())
        let pipeline = try engine.pipeline(for: modelID)
        let model = pipeline.model
        let columns = ["baseline", "swiftdiffusion"]
        func use(_ column: String) {
            let baseline = column == "baseline"
            pipeline.branchParallelism = baseline ? .off : .automatic
            engine.usesControlNetWorker = !baseline
        }
        var loraIDs: [String] = []
        var loraPaths: [String] = []
        for index in 0..<maximumLoRAs {
            let file = work.appendingPathComponent("lora-\(index + 1)-rank\(rank).safetensors")
            _ = try LoRABenchmarkCommand.writeLoRA(for: model.unet.registry, rank: rank, to: file, seed: UInt64(index) * 1000)
            loraIDs.append(repository.register(.lora, path: file.path))
            loraPaths.append(file.path)
        }
        let side = size ?? (sd15 ? 256 : (model.unet.configuration.sampleSize ?? 64) * model.vaeScaleFactor)
        let controlImage = try ImageCodec.encodePNG(Self.ring(side: side))

        func spec(_ workload: Workload, seed: UInt64, column: String) -> JobSpec {
            JobSpec(
                model: modelID, prompt: "a red circle on a blue background", negativePrompt: "", width: side, height: side, steps: steps,
                sampler: "dpmpp_2m", cfg: cfg, seed: seed, loras: loraIDs.prefix(workload.loras).map { LoRASpec(name: $0, weight: 0.8) },
                controls: controlIDs.prefix(workload.controls).map { Serving.ControlSpec(model: $0, image: controlImage, preprocessor: "none") },
                // baseline: LoRAs loaded and patched before denoising; swiftdiffusion: the engine's default deadline (EngineConfiguration.loraDeadlineFraction).
                loraDeadlineStep: column == "baseline" ? 0 : nil)
        }

        // Every request of both columns sees its LoRAs uncached (read from disk); ControlNets and the model stay loaded,
        // as on a server that has served them before (the warm-up loads them).
        var seconds: [Workload: [String: [Double]]] = [:]
        var stages: [Workload: [String: [String: [Double]]]] = [:]
        // Workloads alternate within each repetition, as the columns do within each workload, so a drift of the machine's
        // speed over the run (other load, clocks) weighs on every workload alike instead of on the ones measured last.
        for repetition in 0...repetitions {
            for workload in list {
                for column in columns {
                    use(column)
                    engine.dropCachedLoRAs()
                    let request = try engine.prepare(spec(workload, seed: UInt64(repetition), column: column))
                    var rendered: RenderedImages?
                    let elapsed = try Timing.seconds { rendered = try engine.render(request) }
                    if repetition == 0 { continue }  // warm-up: loads the ControlNets, first-touch buffers
                    seconds[workload, default: [:]][column, default: []].append(elapsed)
                    for (stage, value) in rendered?.timings ?? [:] where stage != "generate" {
                        stages[workload, default: [:]][column, default: [:]][stage, default: []].append(value)
                    }
                }
            }
        }
        var diffusers: [String: [String: Double]] = [:]
        if let torch {
            diffusers = try Self.runDiffusers(
                python: torch, model: modelURL, controlnet: controlURL, loras: loraPaths, workloads: list, side: side, steps: steps, cfg: cfg,
                repetitions: repetitions)
        }
        report(list, seconds: seconds, stages: stages, diffusers: diffusers, title: "\(model.name), \(side)x\(side), \(steps) steps, cfg \(cfg)")
    }

    private func report(
        _ list: [Workload], seconds: [Workload: [String: [Double]]], stages: [Workload: [String: [String: [Double]]]],
        diffusers: [String: [String: Double]], title: String
    ) {
        let median = { (values: [Double]) in Timing.median(values) }
        if json {
            var rows: [[String: Any]] = []
            for workload in list {
                var row: [String: Any] = ["workload": workload.name]
                for (column, values) in seconds[workload] ?? [:] {
                    row["\(column)_seconds"] = median(values)
                    for (stage, stageValues) in stages[workload]?[column] ?? [:] { row["\(column)_\(stage)_seconds"] = median(stageValues) }
                }
                if let torch = diffusers[workload.name] {
                    for (key, value) in torch { row["diffusers_\(key)_seconds"] = value }
                }
                rows.append(row)
            }
            let object: [String: Any] = ["title": title, "threads": ComputePool.shared.threadCount, "repetitions": repetitions, "rows": rows]
            if let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) { print(String(decoding: data, as: UTF8.self)) }
            return
        }
        print(
            "SwiftDiffusion bench workflow: \(title), LoRAs rank \(rank) uncached, median of \(repetitions), "
                + "\(ComputePool.shared.threadCount) threads per column; \(ProcessorFeatures.current.brand)")
        let hasTorch = !diffusers.isEmpty
        var columns: [(String, Int)] = [("workload", 9)]
        if hasTorch { columns.append(("diffusers s", 12)) }
        columns += [("baseline s", 11), ("swiftdiffusion s", 17), ("sd / baseline", 14)]
        if hasTorch { columns.append(("sd / diffusers", 15)) }
        let table = TablePrinter(columns: columns)
        table.header()
        for workload in list {
            let base = median(seconds[workload]?["baseline"] ?? [0]), ours = median(seconds[workload]?["swiftdiffusion"] ?? [0])
            var row = [workload.name]
            let torch = diffusers[workload.name]?["total"]
            if hasTorch { row.append(torch.map { $0.formatted(3) } ?? "-") }
            row += [base.formatted(3), ours.formatted(3), "\((ours / base).formatted(2))x"]
            if hasTorch { row.append(torch.map { "\((ours / $0).formatted(2))x" } ?? "-") }
            table.row(row)
        }
        print("stages (median s): lora_load = LoRAs read and resolved before denoising, lora_wait = waited for them at the deadline step,")
        print("  lora_patch = merged into the weights, encode_prompt, denoise (UNet + ControlNets), controlnet = ControlNet compute")
        print("  inside denoise (beside the UNet on the worker, or before it), decode")
        for workload in list {
            for column in ["baseline", "swiftdiffusion"] {
                let line = (stages[workload]?[column] ?? [:]).sorted { $0.key < $1.key }.map { "\($0.key) \(median($0.value).formatted(3))" }
                print("  \(workload.name) \(column): " + line.joined(separator: ", "))
            }
            if let torch = diffusers[workload.name] {
                print("  \(workload.name) diffusers: " + torch.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value.formatted(3))" }.joined(separator: ", "))
            }
        }
        if let first = list.first, first.controls == 0, first.loras == 0 {
            let reference = median(seconds[first]?["swiftdiffusion"] ?? [1])
            let relative = list.dropFirst().map { "\($0.name) \((median(seconds[$0]?["swiftdiffusion"] ?? [0]) / reference).formatted(2))x" }
            print("swiftdiffusion vs its 0C/0L: " + relative.joined(separator: ", "))
        }
    }

    /// A ring drawn as edges: a ready-made control map for any size.
    static func ring(side: Int) -> RGBImage {
        var pixels = [UInt8](repeating: 0, count: side * side * 3)
        for y in 0..<side {
            for x in 0..<side {
                let radius = (Double((x - side / 2) * (x - side / 2) + (y - side / 2) * (y - side / 2))).squareRoot()
                if abs(radius - Double(side) / 4) < 1 { for c in 0..<3 { pixels[(y * side + x) * 3 + c] = 255 } }
            }
        }
        return RGBImage(width: side, height: side, pixels: pixels)
    }

    static var script: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("tools/bench/torch_workflow.py")
    }

    /// The diffusers column: per workload, median seconds in total and per stage.
    static func runDiffusers(
        python: URL, model: URL, controlnet: URL, loras: [String], workloads: [Workload], side: Int, steps: Int, cfg: Float, repetitions: Int
    ) throws -> [String: [String: Double]] {
        let process = Process()
        process.executableURL = python
        process.arguments = [
            script.path, "--model", model.path, "--controlnet", controlnet.path, "--loras", loras.joined(separator: ","),
            "--workloads", workloads.map(\.name).joined(separator: ","), "--size", "\(side)", "--steps", "\(steps)", "--cfg", "\(cfg)",
            "--repetitions", "\(repetitions)", "--threads", "\(ComputePool.shared.threadCount)",
        ]
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0,
            let rows = (try? JSONSerialization.jsonObject(with: data)) as? [String: [String: Double]]
        else {
            throw CLIError("tools/bench/torch_workflow.py failed (exit \(process.terminationStatus)): \(String(decoding: data.suffix(400), as: UTF8.self))")
        }
        return rows
    }
}
