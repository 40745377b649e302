import Adapters
import ArgumentParser
import Foundation
import Imaging
import Models
import Pipelines
import Samplers
import Serving
import Weights

/// `swiftdiffusion batch`: many generations from a JSONL manifest with the model loaded once (evaluation
/// sets, prompt sweeps). The manifest format is documented in `--help` (`manifestHelp`).
struct BatchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "batch",
        abstract: "Generate every entry of JSONL manifests with one loaded model; writes PNGs and a result manifest.",
        discussion: manifestHelp
    )

    /// Lines under 80 columns: ArgumentParser wraps longer ones.
    static let manifestHelp = """
        A manifest is a JSONL file: one JSON object per line (blank lines are
        skipped). Fields of an entry:
          prompt           string, required
          id               string: writes OUT/<id>.png (default: the entry's number)
          negative_prompt  string (default: none)
          seed             whole number (default: 0)
          width, height    pixels (default: the model's native size; embedded: 128)
          steps            whole number (default: the model's recommendation,
                           embedded: 20)
          sampler          ddim, pndm, euler, euler_a, dpmpp_2m, dpmpp_2m_karras,
                           lcm, or an AUTOMATIC1111 name (default: the model's own
                           scheduler; embedded: dpmpp_2m)
          scheduler        a diffusers scheduler class instead of sampler, e.g.
                           "EulerAncestralDiscreteScheduler"
          guidance         classifier-free guidance scale, also "cfg" (default:
                           the model's recommendation; embedded: 7)
          clip_skip        1 = none (AUTOMATIC1111's Clip skip)
          prompt_syntax    "plain" (default) or "a1111": (emphasis:1.2), long
                           prompts in 75-token chunks
          lora             {"file": PATH, "scale": 1.0} ("weight" for "scale")
          loras            a list of such objects
          control          {"image": PATH, "scale": 1.0, "start": 0, "end": 1,
                           "guess_mode": false}: an image for the --controlnet
                           model (default: the embedded canny ControlNet), resized
                           to the output size, then --control-preprocessor
                           (default none: edge maps)
        Other fields are copied to the result. Relative paths are looked up next
        to the manifest, then in the working directory.
        Writes OUT/<id>.png (with AUTOMATIC1111's "parameters" text chunk) and
        OUT/manifest.jsonl: each entry plus "file" (the PNG) and "seconds".
        Example line:
          {"id": "star", "prompt": "a large green star, white background",
           "seed": 3, "lora": {"file": "outline.safetensors", "scale": 0.9}}
        """

    @Option(name: .customLong("manifest"), help: "A JSONL manifest (repeatable).")
    var manifests: [String]

    @OptionGroup var precisionOption: PrecisionOption

    @Option(help: "Output folder.")
    var out: String

    @Option(help: "Model folder or checkpoint (default: the embedded model).")
    var model: String?

    @Option(help: "ControlNet folder for entries with a control image (default: the embedded canny ControlNet).")
    var controlnet: String?

    @Option(name: .customLong("control-preprocessor"), help: "Preprocessor for control images (default none: they are edge maps already).")
    var controlPreprocessor = "none"

    @Option(help: "Decode with TAESD (a diffusers AutoencoderTiny folder) instead of the VAE.")
    var taesd: String?

    @Option(name: .customLong("lora-mode"), help: "merged (patch weights, restore after) or runtime (add the low-rank product per layer).")
    var loraMode = "merged"

    @Flag(help: "No per-image lines.")
    var quiet = false

    static let schedulerClasses: [String: String] = [
        "DPMSolverMultistepScheduler": "dpmpp_2m", "EulerDiscreteScheduler": "euler", "EulerAncestralDiscreteScheduler": "euler_a",
        "DDIMScheduler": "ddim", "PNDMScheduler": "pndm", "LCMScheduler": "lcm",
    ]

    func run() throws {
        do {
            try runBatch()
        } catch {
            throw CLIError(wrapping: error)
        }
    }

    private func runBatch() throws {
        let manifestURLs = try manifests.map(InputPath.existing)
        let controlnetFolder = try controlnet.map(InputPath.existing)
        let taesdFolder = try taesd.map(InputPath.existing)
        guard DiffusionPipeline.LoRAMode(rawValue: loraMode) != nil else { throw CLIError("--lora-mode must be merged or runtime") }
        let modelURL = try ModelLocation.resolve(model)
        // Every entry runs through the same `ImageEngine` as `generate` and the server; the files it names are its registry.
        let repository = ModelRepository(roots: [], embeddedModels: nil)
        let modelID = repository.register(.checkpoint, path: modelURL.path)
        // Fields an entry leaves out take the model's recommendation.
        let profile = try repository.profile(modelID)
        let embeddedRoot = try? ModelLocation.embeddedModel().deletingLastPathComponent()
        let precision = try precisionOption.resolve()
        if precisionOption.precision != "fp32" { FileHandle.standardError.write(Data((PrecisionOption.describe(precision) + "\n").utf8)) }
        var configuration = EngineConfiguration()
        configuration.precision = precision
        configuration.loraDeadlineFraction = 0  // LoRAs patched before denoising: reproducible images
        configuration.loraMode = loraMode
        configuration.taesdFolder = taesdFolder?.path
        configuration.tokenizerFolder = embeddedRoot?.appendingPathComponent(ModelLocation.embeddedName + "/tokenizer").path
        let engine = ImageEngine(repository: repository, configuration: configuration, logger: CommandLineLog.logger())
        _ = try engine.pipeline(for: modelID)
        let output = URL(fileURLWithPath: out)
        try FileManager.default.createDirectory(at: output, withIntermediateDirectories: true)
        var results: [String] = []
        let started = Date()
        var count = 0

        for (manifest, manifestURL) in zip(manifests, manifestURLs) {
            let base = manifestURL.deletingLastPathComponent()
            func resolvePath(_ path: String, line: Int) throws -> URL {
                let expanded = (path as NSString).expandingTildeInPath
                if !expanded.hasPrefix("/") {
                    let nearManifest = base.appendingPathComponent(expanded)
                    if FileManager.default.fileExists(atPath: nearManifest.path) { return nearManifest }
                }
                guard FileManager.default.fileExists(atPath: expanded) else {
                    throw CLIError("\(manifest):\(line): no such file: \(path)")
                }
                return URL(fileURLWithPath: expanded)
            }
            let text = try String(contentsOf: manifestURL, encoding: .utf8)
            for (lineNumber, line) in text.split(separator: "\n").enumerated() where !line.trimmingCharacters(in: .whitespaces).isEmpty {
                guard var entry = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any] else {
                    throw CLIError("\(manifest):\(lineNumber + 1): not a JSON object")
                }
                let number = { (key: String) in (entry[key] as? NSNumber)?.doubleValue }
                let id = entry["id"] as? String ?? "\(count)"
                guard let prompt = entry["prompt"] as? String else { throw CLIError("\(manifest):\(lineNumber + 1): no prompt") }
                let samplerName =
                    entry["sampler"] as? String ?? (entry["scheduler"] as? String).flatMap { Self.schedulerClasses[$0] } ?? profile.sampler
                // Whole numbers in range, checked before any conversion (a huge value must not trap).
                func integer(_ key: String, _ range: ClosedRange<Int>, default fallback: Int) throws -> Int {
                    guard let value = number(key) else { return fallback }
                    guard value.rounded() == value, value >= Double(range.lowerBound), value <= Double(range.upperBound) else {
                        throw CLIError("\(manifest):\(lineNumber + 1): \(key) must be a whole number in \(range.lowerBound)...\(range.upperBound)")
                    }
                    return Int(value)
                }
                let limits = configuration.limits
                let width = try integer("width", 8...limits.maximumSide, default: profile.width)
                let height = try integer("height", 8...limits.maximumSide, default: profile.height)
                let steps = try integer("steps", 1...limits.maximumSteps, default: profile.steps)
                let seed = try integer("seed", 0...(1 << 53), default: 0)
                let guidance = number("guidance") ?? number("cfg") ?? Double(profile.cfg)
                let clipSkip = number("clip_skip") == nil ? nil : try integer("clip_skip", 1...24, default: 1)
                let syntaxName = entry["prompt_syntax"] as? String ?? "plain"
                guard let syntax = PromptSyntax(rawValue: syntaxName) else {
                    throw CLIError("\(manifest):\(lineNumber + 1): prompt_syntax must be plain or a1111, got '\(syntaxName)'")
                }

                var loras: [LoRASpec] = []
                let loraSpecs = (entry["loras"] as? [[String: Any]]) ?? (entry["lora"] as? [String: Any]).map { [$0] } ?? []
                for spec in loraSpecs {
                    guard let file = spec["file"] as? String else { throw CLIError("\(manifest):\(lineNumber + 1): LoRA without file") }
                    let path = try resolvePath(file, line: lineNumber + 1).path
                    let weight = Float((spec["scale"] as? NSNumber)?.doubleValue ?? (spec["weight"] as? NSNumber)?.doubleValue ?? 1)
                    loras.append(LoRASpec(name: repository.register(.lora, path: path), weight: weight))
                }
                var controls: [Serving.ControlSpec] = []
                if let control = entry["control"] as? [String: Any], let imagePath = control["image"] as? String {
                    let folderPath = controlnetFolder?.path ?? embeddedRoot?.appendingPathComponent("shapes-sd-controlnet-canny").path ?? ""
                    let value = { (key: String, fallback: Float) in Float((control[key] as? NSNumber)?.doubleValue ?? Double(fallback)) }
                    controls.append(
                        Serving.ControlSpec(
                            model: repository.register(.controlnet, path: folderPath),
                            image: try Data(contentsOf: resolvePath(imagePath, line: lineNumber + 1)), preprocessor: controlPreprocessor,
                            resizeMode: ResizeMode.justResize.rawValue, weight: value("scale", 1), start: value("start", 0), end: value("end", 1),
                            guessMode: control["guess_mode"] as? Bool ?? false))
                }
                let spec = JobSpec(
                    model: modelID, prompt: prompt, negativePrompt: entry["negative_prompt"] as? String, width: width, height: height,
                    steps: steps, sampler: samplerName, cfg: Float(guidance), seed: UInt64(seed), clipSkip: clipSkip, loras: loras,
                    controls: controls, promptSyntax: syntax)

                let imageStart = Date()
                let rendered: RenderedImages
                do {
                    rendered = try engine.render(try engine.prepare(spec))
                } catch let error as EngineError {
                    throw CLIError("\(manifest):\(lineNumber + 1): \(error)")
                }
                let seconds = Date().timeIntervalSince(imageStart)
                let file = "\(id).png"
                try rendered.images[0].write(to: output.appendingPathComponent(file))
                entry["file"] = file
                entry["seconds"] = seconds
                results.append(String(decoding: try JSONSerialization.data(withJSONObject: entry, options: [.sortedKeys]), as: UTF8.self))
                count += 1
                if !quiet { FileHandle.standardError.write(Data("\(id): \(String(format: "%.2f", seconds)) s\n".utf8)) }
            }
        }
        try (results.joined(separator: "\n") + "\n").write(to: output.appendingPathComponent("manifest.jsonl"), atomically: true, encoding: .utf8)
        let total = Date().timeIntervalSince(started)
        print("\(count) images in \(String(format: "%.1f", total)) s (\(String(format: "%.3f", total / Double(max(count, 1)))) s/image) -> \(output.path)")
    }
}
