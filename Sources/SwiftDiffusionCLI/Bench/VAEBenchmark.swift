import ArgumentParser
import Compute
import Foundation
import Models
import Weights

/// `swiftdiffusion bench vae`: seconds per VAE decode of the SD 1.5 AutoencoderKL architecture (random weights),
/// latents to an R x R image, and peak memory; with `--torch-python`, diffusers' decode of the same architecture in
/// the same run with the same thread count and one untimed decode on both sides.
struct VAEBenchmarkCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vae",
        abstract: "Seconds per SD 1.5 VAE decode (random weights) and peak memory, optionally vs PyTorch."
    )

    @Option(help: "Image resolution in pixels (latents are 1/8).")
    var resolution = 512

    @Option(help: "Timed repetitions (the median is reported).")
    var repetitions = 3

    @Option(help: "Python with torch + diffusers: also time tools/bench/torch_vae.py in this run.")
    var torchPython: String?

    func validate() throws {
        guard resolution >= 64, resolution <= 2048, resolution % 8 == 0 else {
            throw ValidationError("--resolution must be a multiple of 8 between 64 and 2048")
        }
        try Timing.checkRepetitions(repetitions, upTo: 100)
    }

    func run() throws {
        if let torchPython { _ = try InputPath.existing(torchPython) }
        let threads = ComputePool.shared.threadCount
        print("SwiftDiffusion bench vae: SD 1.5 AutoencoderKL architecture, random weights, fp32, \(threads) threads")
        let config = StandardConfigs.json(for: "vae", family: .sd1) ?? ""
        let vae = try AutoencoderKL(configData: Data(config.utf8), weights: RandomWeights(seed: 7), decoderOnly: true)
        let latents = randomTensor([1, resolution / 8, resolution / 8, 4], seed: 1)
        let median = try Timing.median(repetitions: repetitions) { _ = try vae.decode(latents) }
        let peak = ProcessMemory.peakResidentMiB
        print("swift:   decode to \(resolution)x\(resolution): median \(median.formatted(2)) s, peak RSS \(peak.map { $0.formatted(0) } ?? "?") MiB")
        guard let torchPython else {
            print("(pass --torch-python /path/to/venv/bin/python to time diffusers in the same run)")
            return
        }
        let script = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("tools/bench/torch_vae.py")
        let output = try Subprocess.run(
            torchPython,
            [script.path, "--resolution", "\(resolution)", "--repetitions", "\(repetitions)", "--threads", "\(threads)", "--json"])
        guard let line = output.split(separator: "\n").last,
            let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
            let seconds = object["median_seconds"] as? Double, let torchPeak = object["peak_rss_mib"] as? Double
        else { throw ValidationError("unexpected output from the PyTorch script:\n\(output)") }
        print("pytorch: decode to \(resolution)x\(resolution): median \(seconds.formatted(2)) s, peak RSS \(torchPeak.formatted(0)) MiB (torch \(object["torch"] as? String ?? "?"))")
        print("ratio:   swift / pytorch = \((median / seconds).formatted(2)) (time), \(((peak ?? 0) / torchPeak).formatted(2)) (peak RSS)")
    }
}
