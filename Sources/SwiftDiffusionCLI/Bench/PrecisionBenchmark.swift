import ArgumentParser
import Compute
import Foundation
import Pipelines
import Samplers
import Serving

/// `swiftdiffusion bench precision`: what bf16 costs in quality, measured. The embedded model draws the same
/// prompts and seeds in fp32 and in bf16 (PSNR of the 8-bit images, bf16 against fp32); the tiny parity models
/// of Tests/Fixtures/models (SD 1.x, SD 2.x v-prediction, SDXL) give their final latents in both precisions
/// (max and mean absolute difference, and the largest latent for scale).
struct PrecisionBenchmarkCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "precision",
        abstract: "bf16 vs fp32: PSNR of embedded-model images and final-latent error on the parity models."
    )

    @Option(help: "Seeds per prompt on the embedded model.")
    var seeds = 3

    @Option(help: "Folder of the parity models (default: Tests/Fixtures/models of this checkout).")
    var parityModels: String?

    static let prompts = [
        "a red circle on a blue background", "a large green star in the center, white background",
        "a yellow triangle and a red circle, blue background", "a small purple square on an orange background",
    ]

    func validate() throws {
        guard (1...20).contains(seeds) else { throw ValidationError("--seeds must be between 1 and 20") }
    }

    func run() throws {
        print("SwiftDiffusion bench precision: bf16 against fp32, \(ComputePool.shared.threadCount) threads")
        print(PrecisionOption.describe(.bf16))
        let embedded = try ModelLocation.embeddedModel()
        let tokenizer = embedded.appendingPathComponent("tokenizer")
        let profile = try ModelProfile.read(path: embedded.path)
        let models = try ComputePrecision.allCases.map { try StableDiffusionModel(contentsOf: embedded, tokenizerFolder: tokenizer, precision: $0) }
        var psnrs: [Double] = []
        for prompt in Self.prompts {
            for seed in 0..<UInt64(seeds) {
                let request = GenerationRequest(
                    prompt: prompt, negativePrompt: "", width: profile.width, height: profile.height, steps: profile.steps,
                    sampler: try SamplerKind.named(profile.sampler), guidanceScale: profile.cfg, seed: seed)
                let images = try models.map { try DiffusionPipeline(model: $0).generate(request).images[0] }
                psnrs.append(Self.psnr(images[0].pixels, images[1].pixels))
            }
        }
        let finite = psnrs.filter(\.isFinite)
        print(
            "embedded model (\(embedded.lastPathComponent), \(profile.width)x\(profile.height), \(profile.steps) steps, \(profile.sampler)): "
                + "\(psnrs.count) images, PSNR bf16 vs fp32: min \(psnrs.min()!.formatted(1)) dB, mean "
                + "\(finite.isEmpty ? "inf" : (finite.reduce(0, +) / Double(finite.count)).formatted(1)) dB"
                + (finite.count < psnrs.count ? " (\(psnrs.count - finite.count) identical images: infinite PSNR, left out of the mean)" : ""))

        let folder = try parityModels.map(InputPath.existing)
            ?? URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Tests/Fixtures/models")
        let table = TablePrinter(columns: [("parity model", 14), ("sampler", 10), ("max |bf16 - fp32|", 18), ("mean |bf16 - fp32|", 19), ("max |latent|", 12), ("max error / max |latent|", 24)])
        table.header()
        for name in ["sd1", "sd2", "sdxl"] {
            let url = folder.appendingPathComponent(name)
            let parity = try ComputePrecision.allCases.map { try StableDiffusionModel(folder: url, precision: $0) }
            let side = (parity[0].unet.configuration.sampleSize ?? 8) * parity[0].vaeScaleFactor
            for sampler in [SamplerKind.dpmPlusPlus2M, .eulerAncestral] {
                let request = GenerationRequest(
                    prompt: "a red circle on a blue background", negativePrompt: "", width: side, height: side, steps: 10,
                    sampler: sampler, guidanceScale: 6, seed: 1, decode: false)
                let latents = try parity.map { try DiffusionPipeline(model: $0).generate(request).latents }
                let error = Self.errors(latents[1], latents[0])
                table.row([name, sampler.rawValue, error.max.formatted(5), error.mean.formatted(6), error.scale.formatted(3), "\((100 * error.max / max(error.scale, 1e-12)).formatted(2)) %"])
            }
        }
    }

    /// Peak signal-to-noise ratio of two 8-bit images in dB (infinite when identical).
    static func psnr(_ a: [UInt8], _ b: [UInt8]) -> Double {
        precondition(a.count == b.count && !a.isEmpty, "PSNR of images of different sizes")
        var sum = 0.0
        for (x, y) in zip(a, b) {
            let d = Double(x) - Double(y)
            sum += d * d
        }
        let mse = sum / Double(a.count)
        return mse == 0 ? .infinity : 10 * log10(255 * 255 / mse)
    }

    static func errors(_ a: Tensor, _ b: Tensor) -> (max: Double, mean: Double, scale: Double) {
        let x = a.scalars, y = b.scalars
        var worst = 0.0, total = 0.0, scale = 0.0
        for (p, q) in zip(x, y) {
            let d = abs(Double(p) - Double(q))
            worst = max(worst, d)
            total += d
            scale = max(scale, abs(Double(q)))
        }
        return (worst, total / Double(max(x.count, 1)), scale)
    }
}
