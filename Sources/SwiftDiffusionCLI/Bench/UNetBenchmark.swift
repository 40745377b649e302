import ArgumentParser
import Compute
import Foundation
import Models
import Weights

/// `swiftdiffusion bench unet`: seconds per denoising step of the full-size SD 1.5 UNet architecture
/// (random weights, no download), batch 2 as classifier-free guidance runs it, and peak memory; with
/// `--torch-python`, diffusers' time for the same call measured in the same run, and the ratio.
struct UNetBenchmarkCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "unet",
        abstract: "Seconds per SD 1.5 UNet step (batch 2, random weights) and peak memory, optionally vs PyTorch."
    )

    @Option(help: "Image resolution in pixels (latents are 1/8).")
    var resolution = 512

    @Option(help: "Batch size of one UNet call (2 = one guidance step).")
    var batch = 2

    @Option(help: "Timed repetitions (the median is reported).")
    var repetitions = 3

    @Option(help: "Python with torch + diffusers: also time tools/bench/torch_unet_step.py in this run (under bf16 autocast with --precision bf16).")
    var torchPython: String?

    @OptionGroup var precisionOption: PrecisionOption

    func validate() throws {
        guard resolution >= 64, resolution % 64 == 0 else { throw ValidationError("--resolution must be a multiple of 64") }
        guard batch >= 1, repetitions >= 1 else { throw ValidationError("--batch and --repetitions must be positive") }
    }

    func run() throws {
        if let torchPython { _ = try InputPath.existing(torchPython) }  // before minutes of Swift work
        let precision = try precisionOption.resolve()
        let threads = ComputePool.shared.threadCount
        print("SwiftDiffusion bench unet: SD 1.5 UNet architecture, random weights, \(precision.rawValue), \(threads) threads")
        print(PrecisionOption.describe(precision))
        var built: UNet2DConditionModel?
        let buildSeconds = try Timing.seconds {
            built = try ModuleLoader.$weightPrecision.withValue(precision) { try Self.makeUNet() }
            if precision == .bf16 { TensorBufferCache.trim() }  // the fp32 values the bf16 weights were rounded from
            TensorBufferCache.fitLimitToResidentSet()  // as a model load does
        }
        guard let unet = built else { return }
        print("model built in \(buildSeconds.formatted(1)) s; resident \(ProcessMemory.residentMiB.map { $0.formatted(0) } ?? "?") MiB")

        let latent = resolution / 8
        let sample = randomTensor([batch, latent, latent, 4], seed: 1)
        let conditioning = UNetConditioning(context: randomTensor([batch, 77, 768], seed: 2))
        var times: [Double] = []
        _ = try unet(sample, timesteps: [500], conditioning: conditioning)  // warm-up
        for _ in 0..<repetitions {
            times.append(try Timing.seconds { _ = try unet(sample, timesteps: [500], conditioning: conditioning) })
        }
        let median = Timing.median(times)
        let peak = ProcessMemory.peakResidentMiB
        print(
            "swift:   \(resolution)px batch \(batch): median \(median.formatted(2)) s/step "
                + "(\(times.map { $0.formatted(2) }.joined(separator: ", "))), peak RSS \(peak.map { $0.formatted(0) } ?? "?") MiB")

        guard let torchPython else {
            print("(pass --torch-python /path/to/venv/bin/python to time diffusers in the same run)")
            return
        }
        let autocast = precision == .bf16 ? "bf16" : "none"
        let torch = try Self.runTorch(
            python: torchPython, resolution: resolution, batch: batch, repetitions: repetitions, threads: threads, autocast: autocast)
        print(
            "pytorch: \(resolution)px batch \(batch)\(precision == .bf16 ? " bf16 autocast" : ""): median \(torch.seconds.formatted(2)) s/step, peak RSS "
                + "\(torch.peakMiB.formatted(0)) MiB (torch \(torch.version))")
        print("ratio:   swift / pytorch = \((median / torch.seconds).formatted(2)) (below 1 means faster than PyTorch)")
    }

    static func makeUNet() throws -> UNet2DConditionModel {
        try UNet2DConditionModel(configData: Data(sd15UNetConfig.utf8), weights: RandomWeights(seed: 7))
    }

    /// diffusers' config of the Stable Diffusion 1.5 UNet (the same as tools/bench/torch_unet_step.py).
    static let sd15UNetConfig = """
        {"act_fn": "silu", "attention_head_dim": 8, "block_out_channels": [320, 640, 1280, 1280],
         "cross_attention_dim": 768, "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
         "CrossAttnDownBlock2D", "DownBlock2D"], "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D",
         "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"], "downsample_padding": 1, "flip_sin_to_cos": true, "freq_shift": 0,
         "in_channels": 4, "out_channels": 4, "layers_per_block": 2, "mid_block_scale_factor": 1, "norm_eps": 1e-05,
         "norm_num_groups": 32, "sample_size": 64}
        """

    static func runTorch(python: String, resolution: Int, batch: Int, repetitions: Int, threads: Int, autocast: String = "none") throws
        -> (seconds: Double, peakMiB: Double, version: String)
    {
        let script = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("tools/bench/torch_unet_step.py")
        let output = try Subprocess.run(
            python,
            [script.path, "--resolution", "\(resolution)", "--batch", "\(batch)", "--repetitions", "\(repetitions)",
             "--threads", "\(threads)", "--autocast", autocast, "--json"])
        guard let line = output.split(separator: "\n").last,
            let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
            let seconds = object["median_seconds"] as? Double, let peak = object["peak_rss_mib"] as? Double
        else { throw ValidationError("unexpected output from the PyTorch script:\n\(output)") }
        return (seconds, peak, object["torch"] as? String ?? "?")
    }
}

/// Runs a program and returns its standard output; a non-zero exit is an error with its output.
enum Subprocess {
    static func run(_ executable: String, _ arguments: [String]) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let text = String(decoding: data, as: UTF8.self)
        guard process.terminationStatus == 0 else {
            throw ValidationError("\(executable) exited with status \(process.terminationStatus):\n\(text)")
        }
        return text
    }
}
