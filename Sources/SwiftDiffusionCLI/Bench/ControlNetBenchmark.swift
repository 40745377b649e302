import ArgumentParser
import Compute
import Foundation
import Imaging
import Models
import Pipelines
import Samplers
import Weights

/// `swiftdiffusion bench controlnet`: what a ControlNet costs per image, run one after another on the UNet's cores
/// or on a ControlNet worker of its own beside the UNet's down and mid blocks (ControlNet-as-a-Service, §4.1).
/// One run, alternating per repetition:
/// - `0C, 1 thread`: no ControlNet, the UNet on one thread (the paper's reference point);
/// - `1C sequential, 1 thread`: the ControlNet before each UNet call on that same thread;
/// - `1C sequential, N threads`: the same with every op split over the UNet's and the worker's threads together
///   (equal cores to the service);
/// - `1C service`: the UNet on one thread, the ControlNet on a worker thread of its own;
/// - `1C service, idle cores lent`: the same, with the worker's cores joining the UNet's up blocks once the
///   ControlNet is done (what `serve --controlnet-threads N` runs).
struct ControlNetBenchmarkCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "controlnet",
        abstract: "Seconds per image with a ControlNet run sequentially vs on a ControlNet worker beside the UNet (same run)."
    )

    @Option(help: "Model folder or checkpoint (default: the embedded model).")
    var model: String?

    @Option(help: "ControlNet folder (default: the embedded canny ControlNet).")
    var controlnet: String?

    @Option(help: "Image width and height (default: the model's native size).")
    var size: Int?

    @Option(help: "Denoising steps.")
    var steps = 20

    @Option(help: "Guidance scale.")
    var cfg: Float = 7

    @Option(help: "Threads of the ControlNet worker.")
    var workerThreads = 1

    @Option(help: "Timed repetitions (the median is reported).")
    var repetitions = 5

    @Flag(name: .customLong("pin-cores"), help: "Pin the UNet's thread to core 0 and the ControlNet worker's to the next cores.")
    var pinCores = false

    @Flag(help: "Instead of a model folder: the SD 1.5 UNet and ControlNet architectures with random weights, UNet steps only (batch 2 with guidance); --size defaults to 256.")
    var sd15 = false

    func validate() throws {
        try Timing.checkRepetitions(repetitions)
    }

    func run() throws {
        if sd15 { return try runSD15() }
        let url = try ModelLocation.resolve(model)
        let tokenizer = try? ModelLocation.embeddedModel().appendingPathComponent("tokenizer")
        let pipeline = DiffusionPipeline(model: try StableDiffusionModel(contentsOf: url, tokenizerFolder: tokenizer))
        let controlURL: URL
        if let controlnet {
            controlURL = try InputPath.folder(controlnet)
        } else {
            controlURL = try ModelLocation.embeddedModel().deletingLastPathComponent().appendingPathComponent("shapes-sd-controlnet-canny")
        }
        let folder = try ComponentFolder(controlURL)
        let controlModel = try ControlNetModel(configData: try folder.configData, weights: try folder.weights(), source: controlURL.path)
        let side = size ?? (pipeline.model.unet.configuration.sampleSize ?? 64) * pipeline.model.vaeScaleFactor
        // A ring drawn as edges: a control image that works for any size.
        var pixels = [UInt8](repeating: 0, count: side * side * 3)
        for y in 0..<side {
            for x in 0..<side {
                let radius = (Double((x - side / 2) * (x - side / 2) + (y - side / 2) * (y - side / 2))).squareRoot()
                if abs(radius - Double(side) / 4) < 1 { for c in 0..<3 { pixels[(y * side + x) * 3 + c] = 255 } }
            }
        }
        let drawing = RGBImage(width: side, height: side, pixels: pixels)
        var plain = GenerationRequest(
            prompt: "a red circle on a blue background", width: side, height: side, steps: steps, sampler: .dpmPlusPlus2M,
            guidanceScale: cfg, seed: 0)
        plain.decode = false
        var controlled = plain
        controlled.controls = [ControlInput(model: controlModel, image: drawing, scale: 1)]

        let single = ComputePool(threadCount: 1)
        let wide = ComputePool(threadCount: 1 + workerThreads)
        let service = ControlNetService(workers: 1, threadsPerWorker: workerThreads, unetThreads: 1, pinCores: pinCores, lendsIdleCores: false)
        let lending = ControlNetService(workers: 1, threadsPerWorker: workerThreads, unetThreads: 1, pinCores: pinCores)
        if pinCores { CorePinning.pinCurrentThread(to: [0]) }
        defer { wide.shutDown() }
        let sequential = SequentialControlNetExecutor()
        // The guidance branches side by side wherever a step (or its up blocks) has two threads, as the engine runs them;
        // on one thread the guidance batch is one call.
        pipeline.branchParallelism = .automatic
        let modes: [(name: String, request: GenerationRequest, pool: ComputePool, executor: any ControlNetExecutor)] = [
            ("0C, UNet on 1 thread", plain, single, sequential),
            ("1C sequential, 1 thread", controlled, single, sequential),
            ("1C sequential, \(1 + workerThreads) threads", controlled, wide, sequential),
            ("1C service: UNet 1 thread + worker \(workerThreads)", controlled, service.unetPool, service),
            ("1C service, idle cores lent", controlled, lending.unetPool, lending),
        ]
        var samples = [[Double]](repeating: [], count: modes.count)
        for repetition in 0...repetitions {
            for (index, mode) in modes.enumerated() {
                pipeline.controlNetExecutor = mode.executor
                let seconds = try ComputePool.run(on: mode.pool) { try Timing.seconds { _ = try pipeline.generate(mode.request) } }
                if repetition > 0 { samples[index].append(seconds) }  // the first round warms up
            }
        }
        report(
            "\(pipeline.model.name) + \(controlURL.lastPathComponent), \(side)x\(side), \(steps) steps, cfg \(cfg)", modes.map(\.name), samples)
    }

    /// The four modes on the SD 1.5 architectures (random weights): `steps` denoising steps of one guided UNet call
    /// (batch 2) and, where it applies, one ControlNet call, timed per image.
    private func runSD15() throws {
        let side = size ?? 256
        guard side % 64 == 0 else { throw ValidationError("--size must be a multiple of 64") }
        let unet = try UNetBenchmarkCommand.makeUNet()
        var config = try JSONSerialization.jsonObject(with: Data(UNetBenchmarkCommand.sd15UNetConfig.utf8)) as! [String: Any]
        config["conditioning_embedding_out_channels"] = [16, 32, 96, 256]
        let control = try ControlNetModel(configData: try JSONSerialization.data(withJSONObject: config), weights: RandomWeights(seed: 9))
        let latent = side / 8
        let sample = randomTensor([2, latent, latent, 4], seed: 1)
        let conditioning = UNetConditioning(context: randomTensor([2, 77, 768], seed: 2))
        let image = randomTensor([2, side, side, 3], seed: 3)
        let controlCall: @Sendable () throws -> ControlResiduals = {
            try control(sample, timesteps: [500], conditioning: conditioning, controlImage: image, scaling: .init(conditioningScale: 1))
        }
        let single = ComputePool(threadCount: 1)
        let wide = ComputePool(threadCount: 1 + workerThreads)
        let service = ControlNetService(workers: 1, threadsPerWorker: workerThreads, unetThreads: 1, pinCores: pinCores, lendsIdleCores: false)
        let lending = ControlNetService(workers: 1, threadsPerWorker: workerThreads, unetThreads: 1, pinCores: pinCores)
        if pinCores { CorePinning.pinCurrentThread(to: [0]) }
        defer { wide.shutDown() }
        let sequential = SequentialControlNetExecutor()
        let modes: [(name: String, controls: [@Sendable () throws -> ControlResiduals], pool: ComputePool, executor: any ControlNetExecutor)] = [
            ("0C, UNet on 1 thread", [], single, sequential),
            ("1C sequential, 1 thread", [controlCall], single, sequential),
            ("1C sequential, \(1 + workerThreads) threads", [controlCall], wide, sequential),
            ("1C service: UNet 1 thread + worker \(workerThreads)", [controlCall], service.unetPool, service),
            ("1C service, idle cores lent", [controlCall], lending.unetPool, lending),
        ]
        var samples = [[Double]](repeating: [], count: modes.count)
        for repetition in 0...repetitions {
            for (index, mode) in modes.enumerated() {
                let seconds = try ComputePool.run(on: mode.pool) {
                    try Timing.seconds {
                        for _ in 0..<steps {
                            _ = try mode.executor.step(
                                controls: mode.controls,
                                downAndMid: { try unet.downAndMid(sample, timesteps: [500], conditioning: conditioning) },
                                up: { down, residuals in try unet.up(down, conditioning: conditioning, control: residuals) })
                        }
                    }
                }
                if repetition > 0 { samples[index].append(seconds) }
            }
        }
        report(
            "SD 1.5 UNet + ControlNet architectures (random weights), \(side)x\(side), batch 2, \(steps) steps", modes.map(\.name),
            samples)
    }

    private func report(_ title: String, _ names: [String], _ samples: [[Double]]) {
        let medians = samples.map { Timing.median($0) }
        print("SwiftDiffusion bench controlnet: \(title), median of \(repetitions); \(ProcessorFeatures.current.brand)")
        let table = TablePrinter(columns: [("mode", 46), ("s/image", 9), ("vs 0C", 7)])
        table.header()
        for (name, median) in zip(names, medians) { table.row([name, median.formatted(3), "\((median / medians[0]).formatted(2))x"]) }
        print("ratio service / sequential on equal cores = \((medians[3] / medians[2]).formatted(2))")
        print("ratio service / 0C = \((medians[3] / medians[0]).formatted(2)) (the ControlNet's cost left on the critical path)")
        print("ratio service with idle cores lent / sequential on equal cores = \((medians[4] / medians[2]).formatted(2))")
    }
}
