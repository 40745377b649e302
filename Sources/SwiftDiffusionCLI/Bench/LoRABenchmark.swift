import Adapters
import ArgumentParser
import Compute
import Foundation
import Models
import Pipelines
import Weights

/// `swiftdiffusion bench lora`: the cost of each stage of using a LoRA on a full-size SD 1.5 UNet (random
/// weights), or on a model folder's UNet (`--model`): reading the file, resolving its keys, merging, restoring,
/// and the runtime mode's per-step overhead; with `--torch-python`, diffusers' `load_lora_weights` + `fuse_lora`
/// + `unfuse_lora` on the same files (and model) in the same run, with the same warm-up (one untimed round) and
/// thread count as the Swift side.
/// The memory a merge keeps for the bitwise restore (a copy of every patched weight) is reported per rank.
struct LoRABenchmarkCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lora",
        abstract: "LoRA load / key map / merge / restore / runtime-step times on SD 1.5 (random weights) or --model, optionally vs diffusers."
    )

    @Option(help: "Model folder or checkpoint whose UNet the LoRAs patch (default: the SD 1.5 architecture, random weights).")
    var model: String?

    @Option(parsing: .upToNextOption, help: "LoRA ranks to generate and measure.")
    var ranks: [Int] = [8, 32, 128]

    @Option(help: "Resolution of the UNet step used to measure runtime-mode overhead (batch 2; default: 256, or --model's native size).")
    var resolution: Int?

    @Option(help: "Timed repetitions (the median is reported).")
    var repetitions = 3

    @Option(help: "Python with torch + diffusers: also time diffusers on the same files (tools/bench/torch_lora.py).")
    var torchPython: String?

    @Option(help: "Folder for the generated LoRA files (default: a temporary folder, removed afterwards).")
    var directory: String?

    func validate() throws {
        guard !ranks.isEmpty, ranks.allSatisfy({ (1...1024).contains($0) }) else { throw ValidationError("--ranks must be in 1...1024") }
        if let resolution, resolution < 64 || resolution > 2048 || resolution % 64 != 0 {
            throw ValidationError("--resolution must be a multiple of 64 from 64 to 2048")
        }
        try Timing.checkRepetitions(repetitions)
    }

    func run() throws {
        let python = try torchPython.map { try InputPath.existing($0).path }  // before minutes of Swift work
        let unet: UNet2DConditionModel
        // The whole model stays loaded, as in a server: freeing its other components here would park their weights in the
        // tensor buffer cache and leave no room there for the LoRA buffers a server reuses between loads.
        var whole: StableDiffusionModel?
        defer { withExtendedLifetime(whole) {} }
        let targets: LoRATargets
        let title: String
        let modelURL = try model.map { try ModelLocation.resolve($0) }
        if let url = modelURL {
            let tokenizer = try? ModelLocation.embeddedModel().appendingPathComponent("tokenizer")
            let loaded = try StableDiffusionModel(contentsOf: url, tokenizerFolder: tokenizer)
            (unet, title, whole) = (loaded.unet, "\(loaded.name) UNet", loaded)
            targets = LoRATargets(registries: [.unet: unet.registry], unetLayersPerBlock: loaded.loraTargets.unetLayersPerBlock)
        } else {
            unet = try UNetBenchmarkCommand.makeUNet()
            targets = LoRATargets(registries: [.unet: unet.registry], unetLayersPerBlock: 2)
            title = "SD 1.5 UNet architecture, random weights"
        }
        print("SwiftDiffusion bench lora: \(title), \(ComputePool.shared.threadCount) threads; \(ProcessorFeatures.current.brand)")
        let folder = directory.map { URL(fileURLWithPath: $0) }
            ?? FileManager.default.temporaryDirectory.appendingPathComponent("swiftdiffusion-bench-lora-\(getpid())")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { if directory == nil { try? FileManager.default.removeItem(at: folder) } }

        let resolution = resolution ?? (modelURL == nil ? 256 : (unet.configuration.sampleSize ?? 64) * 8)
        let latent = resolution / 8
        let sample = randomTensor([2, latent, latent, unet.configuration.inChannels], seed: 1)
        let context = try unet.configuration.crossAttentionDim.values(count: 1, field: "cross_attention_dim")[0]
        var conditioning = UNetConditioning(context: randomTensor([2, 77, context], seed: 2))
        let configuration = unet.configuration
        if configuration.additionEmbedType == "text_time", let projection = configuration.projectionClassEmbeddingsInputDim,
            let timeDim = configuration.additionTimeEmbedDim
        {
            // SDXL: pooled text embeddings and the six size/crop numbers.
            conditioning.textEmbeds = randomTensor([2, projection - 6 * timeDim], seed: 3)
            conditioning.timeIds = Tensor(shape: [2, 6], values: [Float](repeating: Float(resolution), count: 12))
        }
        if let dim = configuration.timeCondProjDim { conditioning.timestepCondition = randomTensor([2, dim], seed: 4) }
        let baseStep = try Timing.median(repetitions: repetitions) { _ = try unet(sample, timesteps: [500], conditioning: conditioning) }

        let table = TablePrinter(columns: [
            ("rank", 5), ("modules", 8), ("file MB", 8), ("load ms", 8), ("keymap ms", 9), ("1st merge ms", 12), ("merge ms", 9),
            ("restore ms", 10), ("kept MiB", 9), ("runtime step +%", 15),
        ])
        var rows: [(rank: Int, file: URL, load: Double, keyMap: Double, merge: Double, restore: Double, keptMiB: Double)] = []
        print("UNet step at \(resolution)px batch 2 without LoRA: \((baseStep * 1000).formatted(0)) ms")
        table.header()
        for rank in ranks {
            let file = folder.appendingPathComponent("lora-rank\(rank).safetensors")
            let modules = try Self.writeLoRA(for: unet.registry, rank: rank, to: file)
            let size = Double((try? FileManager.default.attributesOfItem(atPath: file.path)[.size] as? Int) ?? 0) / 1e6
            var network: LoRANetwork?
            let load = try Timing.median(repetitions: repetitions) { network = try LoRANetwork.load(contentsOf: file) }
            guard let network else { continue }
            var resolved: ResolvedLoRA?
            let keyMap = try Timing.median(repetitions: repetitions) { resolved = try LoRAKeyMap.resolve(network, targets: targets) }
            guard let resolved else { continue }
            precondition(resolved.unmatched.isEmpty, "generated LoRA does not match the model")
            let patcher = LoRAPatcher()
            // The first merge also saves the original weights; later ones only copy them back.
            var merges: [Double] = [], restores: [Double] = []
            for _ in 0...repetitions {
                merges.append(Timing.seconds { patcher.merge([LoRAApplication(resolved)]) })
                restores.append(Timing.seconds { patcher.restore() })
            }
            let firstMerge = merges.removeFirst()
            restores.removeFirst()
            // The originals of every patched weight, kept so that restore() is bitwise (and reused by later merges).
            let keptMiB = Double(patcher.savedBytes) / 1_048_576
            patcher.attachRuntime([LoRAApplication(resolved)])
            let runtimeStep = try Timing.median(repetitions: repetitions) { _ = try unet(sample, timesteps: [500], conditioning: conditioning) }
            patcher.detachRuntime()
            let median = { (values: [Double]) in Timing.median(values) }
            let row = (rank, file, load, keyMap, median(merges), median(restores), keptMiB)
            rows.append(row)
            table.row([
                "\(rank)", "\(modules)", size.formatted(1), (load * 1000).formatted(1), (keyMap * 1000).formatted(1),
                (firstMerge * 1000).formatted(1), (row.4 * 1000).formatted(1), (row.5 * 1000).formatted(1), keptMiB.formatted(1),
                (100 * (runtimeStep / baseStep - 1)).formatted(1),
            ])
        }

        guard let python else {
            print("(pass --torch-python /path/to/venv/bin/python to time diffusers on the same files)")
            return
        }
        let threads = ComputePool.shared.threadCount
        print("")
        print(
            "diffusers on the same files (load_lora_weights / fuse_lora / unfuse_lora; \(threads) torch threads, one untimed round first, "
                + "medians of \(repetitions)), and swift's load+keymap / merge / restore (the same warm-up and threads):")
        let compare = TablePrinter(columns: [
            ("rank", 5), ("diffusers load", 14), ("fuse", 8), ("unfuse", 8), ("swift load+map", 14), ("merge", 8), ("restore", 8),
            ("speed-up", 9),
        ])
        compare.header()
        let modelArguments = modelURL.map { ["--model", $0.path] } ?? []
        for row in rows {
            let output = try Subprocess.run(
                python,
                [Self.script.path, "--file", row.file.path, "--repetitions", "\(repetitions)", "--warmup", "1", "--threads", "\(threads)", "--json"]
                    + modelArguments)
            guard let line = output.split(separator: "\n").last,
                let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                let load = object["load_seconds"] as? Double, let fuse = object["fuse_seconds"] as? Double,
                let unfuse = object["unfuse_seconds"] as? Double
            else { throw ValidationError("unexpected output from tools/bench/torch_lora.py:\n\(output)") }
            let ours = row.load + row.keyMap + row.merge + row.restore
            compare.row([
                "\(row.rank)", (load * 1000).formatted(0) + " ms", (fuse * 1000).formatted(0) + " ms", (unfuse * 1000).formatted(0) + " ms",
                ((row.load + row.keyMap) * 1000).formatted(0) + " ms", (row.merge * 1000).formatted(0) + " ms",
                (row.restore * 1000).formatted(0) + " ms", ((load + fuse + unfuse) / ours).formatted(1) + "x",
            ])
        }
        print(
            "Swift keeps a copy of each patched weight for the bitwise restore (column 'kept MiB' above); diffusers' unfuse_lora "
                + "subtracts the product again and keeps no copy.")
    }

    static var script: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("tools/bench/torch_lora.py")
    }

    /// A kohya LoRA of `rank` on every attention projection, feed-forward layer, transformer projection and
    /// resnet convolution of the model; returns the number of modules.
    static func writeLoRA(for registry: LayerRegistry, rank: Int, to url: URL, seed: UInt64 = 0) throws -> Int {
        let patterns = ["to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj", "ff.net.2", "proj_in", "proj_out", "conv1", "conv2", "conv_shortcut"]
        var tensors: [String: Tensor] = [:]
        var count = 0
        func matches(_ path: String) -> Bool { patterns.contains { path.hasSuffix("." + $0) } }
        for (path, layer) in registry.linears where matches(path) {
            let stem = "lora_unet_" + path.replacingOccurrences(of: ".", with: "_")
            // SD 1.5's proj_in/proj_out are 1x1 convolutions in the checkpoint: their LoRA factors are 4-D.
            let pointwise = path.hasSuffix("proj_in") || path.hasSuffix("proj_out")
            let down = randomTensor([rank, layer.inFeatures], seed: seed &+ UInt64(count)) * 0.01
            let up = randomTensor([layer.outFeatures, rank], seed: seed &+ UInt64(count) + 1) * 0.01
            tensors[stem + ".lora_down.weight"] = pointwise ? down.reshaped([rank, layer.inFeatures, 1, 1]) : down
            tensors[stem + ".lora_up.weight"] = pointwise ? up.reshaped([layer.outFeatures, rank, 1, 1]) : up
            tensors[stem + ".alpha"] = Tensor(shape: [], values: [Float(rank)])
            count += 1
        }
        for (path, layer) in registry.convs where matches(path) {
            let stem = "lora_unet_" + path.replacingOccurrences(of: ".", with: "_")
            let k = layer.kernelSize
            tensors[stem + ".lora_down.weight"] = randomTensor([rank, layer.inChannels, k, k], seed: seed &+ UInt64(count)) * 0.01
            tensors[stem + ".lora_up.weight"] = randomTensor([layer.outChannels, rank, 1, 1], seed: seed &+ UInt64(count) + 1) * 0.01
            tensors[stem + ".alpha"] = Tensor(shape: [], values: [Float(rank)])
            count += 1
        }
        try SafeTensorsWriter.write(tensors, precision: .float16, to: url)
        return count
    }
}
