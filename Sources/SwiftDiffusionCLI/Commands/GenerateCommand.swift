import Adapters
import ArgumentParser
import Compute
import Foundation
import Imaging
import Models
import Pipelines
import Samplers
import Serving
import Weights

/// `swiftdiffusion generate`: text-to-image and image-to-image on the command line.
struct GenerateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Generate images from a prompt (text-to-image or image-to-image), with LoRAs and ControlNets.",
        discussion: """
            With no --model, the embedded default model draws (shapes in named colours on coloured backgrounds).
            Width, height, sampler, steps and CFG default to what the model recommends: its native size and its
            scheduler config (the embedded model: 128x128, dpmpp_2m, 20 steps, CFG 7).
            Examples (from the repository folder):
              swiftdiffusion generate "a red circle on a blue background"
              swiftdiffusion generate --lora models/shapes-sd-loras/outline.safetensors:0.9 \\
                  "a large green star in the center, white background"
              swiftdiffusion generate --control models/shapes-sd-controlnet-canny:docs/images/control-drawing.png \\
                  --control-preprocessor none "a yellow triangle and a red circle, blue background"
              swiftdiffusion generate --model PATH ...     (a diffusers folder or a single-file .safetensors checkpoint)
            """
    )

    @Argument(help: "The prompt (or use --prompt).")
    var positionalPrompt: String?

    @Option(help: "The prompt.")
    var prompt: String?

    @Option(name: .customLong("negative-prompt"), help: "What the image should not contain.")
    var negativePrompt: String?

    @Option(help: "A diffusers model folder or a single-file .safetensors checkpoint (default: the embedded model).")
    var model: String?

    @Option(help: "Image width in pixels (default: the model's native size).")
    var width: Int?

    @Option(help: "Image height in pixels (default: the model's native size).")
    var height: Int?

    @Option(help: "Denoising steps (default: the model's recommendation).")
    var steps: Int?

    @Option(
        help: """
            Sampler: ddim, pndm, euler, euler_a, dpmpp_2m, dpmpp_2m_karras, lcm (AUTOMATIC1111 names work too; \
            default: the model's own scheduler).
            """)
    var sampler: String?

    @Option(help: "Classifier-free guidance scale (default: the model's recommendation).")
    var cfg: Float?

    @OptionGroup var precisionOption: PrecisionOption

    @Option(help: "Random seed (default: a random one, printed).")
    var seed: UInt64?

    @Option(help: "Number of images.")
    var count = 1

    @Option(name: .customLong("clip-skip"), help: "Skip the last N-1 layers of the text encoder (A1111's 'Clip skip', 1 = none).")
    var clipSkip: Int?

    @Option(name: .customLong("init-image"), help: "Image-to-image: the starting image (PNG or JPEG), resized to the output size.")
    var initImage: String?

    @Option(help: "Image-to-image: denoising strength in (0, 1].")
    var strength: Float = 0.75

    @Option(name: .customLong("init-latents"), help: "Starting latents (float32 .npy, NCHW as diffusers) instead of drawing them from the seed.")
    var initLatents: String?

    @Option(name: .customLong("output-latents"), help: "Write the final latents (float32 .npy, NCHW) here.")
    var outputLatents: String?

    @Option(name: [.short, .long], help: "Output PNG (with several images: NAME-1.png, NAME-2.png, ...).")
    var output: String?

    @Option(name: .customLong("lora"), help: "PATH[:WEIGHT]; repeatable. A LoRA in kohya, diffusers or PEFT format.")
    var loras: [String] = []

    @Option(name: .customLong("lora-mode"), help: "merged (patch weights, restore after) or runtime (add the low-rank product per layer).")
    var loraMode = "merged"

    @Option(
        name: .customLong("lora-deadline"),
        help: """
            Bounded asynchronous LoRA loading: LoRAs load while denoising starts and are patched in by this fraction of \
            the steps (as serve --lora-deadline); 0 (the default) loads them first.
            """)
    var loraDeadline: Double = 0

    @Option(
        name: .customLong("control"),
        help: """
            MODEL:IMAGE[:SCALE[:START:END]][:guess]; repeatable. A ControlNet folder and its control image; a last part \
            'guess' runs that ControlNet in guess mode.
            """)
    var controls: [String] = []

    @Flag(name: .customLong("guess-mode"), help: "Every ControlNet in guess mode (it sees the conditional branch only; 'guess' in --control sets one).")
    var guessMode = false

    @Option(name: .customLong("control-preprocessor"), help: "canny, threshold, scribble, invert or none (for ready-made maps).")
    var controlPreprocessor = "canny"

    @Option(name: .customLong("control-resize"), help: "just_resize, crop_and_resize or resize_and_fill.")
    var controlResize = "crop_and_resize"

    @Option(
        name: .customLong("prompt-syntax"),
        help: "plain (diffusers: 77 tokens) or a1111 (AUTOMATIC1111: (emphasis:1.2), [less], prompts over 75 tokens in chunks).")
    var promptSyntax = "plain"

    @Option(help: "A CLIP tokenizer folder for single-file checkpoints (default: the embedded model's).")
    var tokenizer: String?

    @Option(help: "Decode with TAESD (a diffusers AutoencoderTiny folder, e.g. madebyollin/taesd) instead of the VAE: fast drafts.")
    var taesd: String?

    @Flag(help: "No progress bar.")
    var quiet = false

    @Flag(help: "Print the processor, the GEMM kernels chosen for it and their measured share of its FMA peak.")
    var verbose = false

    var resolvedPrompt: String? { prompt ?? positionalPrompt }

    func validate() throws {
        guard let resolvedPrompt, !resolvedPrompt.isEmpty else { throw ValidationError("give a prompt (argument or --prompt)") }
        if prompt != nil && positionalPrompt != nil { throw ValidationError("give the prompt once, as an argument or with --prompt") }
        // Ranges (steps, size, cfg, count, clip skip, strength) are the engine's limits, the same as the server's:
        // `ImageEngine.prepare` checks them before the model loads.
        guard DiffusionPipeline.LoRAMode(rawValue: loraMode) != nil else { throw ValidationError("--lora-mode must be merged or runtime") }
        guard PromptSyntax(rawValue: promptSyntax) != nil else { throw ValidationError("--prompt-syntax must be plain or a1111") }
        guard loraDeadline.isFinite, (0...1).contains(loraDeadline) else { throw ValidationError("--lora-deadline must be between 0 and 1") }
    }

    func run() throws {
        if verbose {
            for line in KernelReport.make(measure: true).lines { FileHandle.standardError.write(Data((line + "\n").utf8)) }
        }
        do {
            try generate()
        } catch let error as CLIError {
            throw error
        } catch let error as ValidationError {
            throw error
        } catch {
            throw CLIError(wrapping: error)
        }
    }

    private func generate() throws {
        let modelURL = try ModelLocation.resolve(model)
        // Every input path is checked before the model loads: a typo costs no waiting.
        let tokenizerFolder = try tokenizer.map(InputPath.existing) ?? ModelLocation.embeddedModel().appendingPathComponent("tokenizer")
        let taesdFolder = try taesd.map(InputPath.existing)
        let initImageURL = try initImage.map(InputPath.existing)
        let initLatentsURL = try initLatents.map(InputPath.existing)
        let loraFiles = try loras.map { spec -> (URL, Float) in
            let (path, weight) = try Self.splitWeight(spec)
            return (try InputPath.existing(path), weight)
        }
        let controlSpecs = try controls.map { spec -> (ControlSpec, URL, URL) in
            let parsed = try ControlSpec(spec)
            return (parsed, try InputPath.existing(parsed.model), try InputPath.existing(parsed.image))
        }
        let outputURL = try output.map(InputPath.output)
        let latentsURL = try outputLatents.map(InputPath.output)

        // The files named on the command line become the engine's registry: the request names them as the
        // server's clients name theirs, and runs through the same `ImageEngine`.
        let repository = ModelRepository(roots: [], embeddedModels: nil)
        let modelID = repository.register(.checkpoint, path: modelURL.path)
        var configuration = EngineConfiguration()
        configuration.loraMode = loraMode
        configuration.loraDeadlineFraction = loraDeadline
        configuration.taesdFolder = taesdFolder?.path
        configuration.tokenizerFolder = tokenizerFolder.path
        // Unset fields take the model's recommendation (native size, its scheduler, steps, guidance).
        let profile = try repository.profile(modelID)
        let seed = self.seed ?? UInt64.random(in: 0..<(1 << 32))
        let precision = try precisionOption.resolve()
        configuration.precision = precision
        let spec = JobSpec(
            model: modelID, prompt: resolvedPrompt ?? "", negativePrompt: negativePrompt, width: width, height: height,
            steps: steps ?? profile.steps, sampler: sampler ?? profile.sampler, cfg: cfg ?? profile.cfg, seed: seed, count: count,
            clipSkip: clipSkip, loras: loraFiles.map { LoRASpec(name: repository.register(.lora, path: $0.0.path), weight: $0.1) },
            controls: try controlSpecs.map { parsed, modelFolder, imageFile in
                Serving.ControlSpec(
                    model: repository.register(.controlnet, path: modelFolder.path), image: try Data(contentsOf: imageFile),
                    preprocessor: controlPreprocessor, resizeMode: controlResize, weight: parsed.scale, start: parsed.start, end: parsed.end,
                    guessMode: guessMode || parsed.guessMode)
            },
            initImage: try initImageURL.map { try Data(contentsOf: $0) }, strength: strength,
            promptSyntax: PromptSyntax(rawValue: promptSyntax) ?? .plain, initLatents: try initLatentsURL.map { try Data(contentsOf: $0) })
        let engine = ImageEngine(repository: repository, configuration: configuration, logger: CommandLineLog.logger())
        let request = try engine.prepare(spec)

        let status = StatusPrinter(quiet: quiet)
        status.line("loading \(modelURL.path)")
        if precisionOption.precision != "fp32" || verbose { status.line(PrecisionOption.describe(precision)) }
        _ = try engine.pipeline(for: modelID)
        let progress = ProgressBar(enabled: !quiet)
        status.line(
            "generating \(count) image(s) \(request.width)x\(request.height), \(spec.steps) steps, \(request.sampler.a1111Name), "
                + "cfg \(spec.cfg), seed \(seed)")
        let rendered = try engine.render(request, observer: progress.observer)
        progress.finish()

        if let latentsURL { try NumPy.write(rendered.latents, to: latentsURL) }
        let base = outputURL?.path ?? "swiftdiffusion-\(seed).png"
        for (index, png) in rendered.images.enumerated() {
            let path = rendered.images.count == 1 ? base : Self.numbered(base, index + 1)
            try png.write(to: URL(fileURLWithPath: path))
            print(path)
        }
        let timings = rendered.timings.filter { $0.key != "generate" }.sorted { $0.key < $1.key }
            .map { "\($0.key) \(String(format: "%.2f", $0.value)) s" }
        status.line("done: " + timings.joined(separator: ", "))
    }

    /// `path:weight` -> (path, weight); a trailing part that is not a number belongs to the path.
    static func splitWeight(_ spec: String) throws -> (String, Float) {
        if let colon = spec.lastIndex(of: ":"), let weight = Float(spec[spec.index(after: colon)...]) {
            guard weight.isFinite, abs(weight) <= 10 else { throw CLIError("LoRA weight \(weight) is out of range (-10...10)") }
            return (String(spec[..<colon]), weight)
        }
        return (spec, 1)
    }

    static func numbered(_ path: String, _ index: Int) -> String {
        let url = URL(fileURLWithPath: path)
        let ext = url.pathExtension.isEmpty ? "png" : url.pathExtension
        return url.deletingPathExtension().path + "-\(index).\(ext)"
    }
}

/// `MODEL:IMAGE[:SCALE[:START:END]][:guess]`
struct ControlSpec {
    var model: String
    var image: String
    var scale: Float = 1
    var start: Float = 0
    var end: Float = 1
    var guessMode = false

    init(_ spec: String) throws {
        var parts = spec.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        if parts.count > 2, parts.last == "guess" {
            guessMode = true
            parts.removeLast()
        }
        guard parts.count == 2 || parts.count == 3 || parts.count == 5, !parts[0].isEmpty, !parts[1].isEmpty else {
            throw CLIError("--control expects MODEL:IMAGE[:SCALE[:START:END]][:guess], got '\(spec)'")
        }
        model = parts[0]
        image = parts[1]
        let numbers = try parts.dropFirst(2).map { text -> Float in
            guard let value = Float(text), value.isFinite else { throw CLIError("--control: '\(text)' is not a number in '\(spec)'") }
            return value
        }
        if numbers.count >= 1 { scale = numbers[0] }
        if numbers.count == 3 { (start, end) = (numbers[1], numbers[2]) }
        guard start >= 0, end <= 1, start < end else { throw CLIError("--control: need 0 <= START < END <= 1 in '\(spec)'") }
        guard abs(scale) <= 10 else { throw CLIError("--control: scale \(scale) is out of range") }
    }
}
