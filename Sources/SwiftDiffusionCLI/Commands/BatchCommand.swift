import Adapters
import ArgumentParser
import Foundation
import Imaging
import Models
import Pipelines
import Samplers
import Weights

/// `swiftdiffusion batch`: many generations from a JSONL manifest with the model loaded once (evaluation
/// sets, prompt sweeps). Each line is an object:
///
///     {"id": "a1", "prompt": "...", "negative_prompt": "", "seed": 1, "steps": 20, "guidance": 7,
///      "width": 128, "height": 128, "sampler": "dpmpp_2m",
///      "lora": {"file": "loras/x.safetensors", "scale": 1.0},          (or "loras": [...])
///      "control": {"image": "outline.png", "scale": 1.0, "start": 0, "end": 1}}
///
/// `scheduler` may name a diffusers scheduler class instead of `sampler`. Relative paths are resolved
/// against the manifest's folder, then the working directory. Writes `<out>/<id>.png` and
/// `<out>/manifest.jsonl` (the input lines plus `"file"` and `"seconds"`).
struct BatchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "batch",
        abstract: "Generate every entry of JSONL manifests with one loaded model; writes PNGs and a result manifest."
    )

    @Option(name: .customLong("manifest"), help: "A JSONL manifest (repeatable).")
    var manifests: [String]

    @Option(help: "Output folder.")
    var out: String

    @Option(help: "Model folder or checkpoint (default: the embedded model).")
    var model: String?

    @Option(help: "ControlNet folder for entries with a control image (default: the embedded canny ControlNet).")
    var controlnet: String?

    @Option(name: .customLong("control-preprocessor"), help: "Preprocessor for control images (default none: they are edge maps already).")
    var controlPreprocessor = "none"

    @Flag(help: "No per-image lines.")
    var quiet = false

    static let schedulerClasses: [String: String] = [
        "DPMSolverMultistepScheduler": "dpmpp_2m", "EulerDiscreteScheduler": "euler", "EulerAncestralDiscreteScheduler": "euler_a",
        "DDIMScheduler": "ddim", "PNDMScheduler": "pndm", "LCMScheduler": "lcm",
    ]

    func run() throws {
        do {
            try runBatch()
        } catch let error as CLIError {
            throw error
        } catch {
            throw CLIError("\(error)")
        }
    }

    private func runBatch() throws {
        let modelURL = try ModelLocation.resolve(model)
        let embeddedRoot = try? ModelLocation.embeddedModel().deletingLastPathComponent()
        let loaded = try StableDiffusionModel(
            contentsOf: modelURL, tokenizerFolder: embeddedRoot?.appendingPathComponent(ModelLocation.embeddedName + "/tokenizer"))
        let pipeline = DiffusionPipeline(model: loaded)
        let preprocessor = try ControlPreprocessor.named(controlPreprocessor)
        let output = URL(fileURLWithPath: out)
        try FileManager.default.createDirectory(at: output, withIntermediateDirectories: true)
        var results: [String] = []
        var loraCache: [String: ResolvedLoRA] = [:]
        var controlnetModel: ControlNetModel?
        let started = Date()
        var count = 0

        for manifest in manifests {
            let manifestURL = URL(fileURLWithPath: manifest)
            let base = manifestURL.deletingLastPathComponent()
            func resolvePath(_ path: String) -> URL {
                if path.hasPrefix("/") { return URL(fileURLWithPath: path) }
                let nearManifest = base.appendingPathComponent(path)
                return FileManager.default.fileExists(atPath: nearManifest.path) ? nearManifest : URL(fileURLWithPath: path)
            }
            let text = try String(contentsOf: manifestURL, encoding: .utf8)
            for (lineNumber, line) in text.split(separator: "\n").enumerated() where !line.trimmingCharacters(in: .whitespaces).isEmpty {
                guard var entry = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
                    throw CLIError("\(manifest):\(lineNumber + 1): not a JSON object")
                }
                let number = { (key: String) in (entry[key] as? NSNumber)?.doubleValue }
                let id = entry["id"] as? String ?? "\(count)"
                guard let prompt = entry["prompt"] as? String else { throw CLIError("\(manifest):\(lineNumber + 1): no prompt") }
                let samplerName =
                    entry["sampler"] as? String ?? (entry["scheduler"] as? String).flatMap { Self.schedulerClasses[$0] } ?? "dpmpp_2m"
                var request = GenerationRequest(
                    prompt: prompt, negativePrompt: entry["negative_prompt"] as? String, width: Int(number("width") ?? 512),
                    height: Int(number("height") ?? 512), steps: Int(number("steps") ?? 20), sampler: try SamplerKind.named(samplerName),
                    guidanceScale: Float(number("guidance") ?? number("cfg") ?? 7.5), seed: UInt64(number("seed") ?? 0))

                var applications: [LoRAApplication] = []
                let loraSpecs = (entry["loras"] as? [[String: Any]]) ?? (entry["lora"] as? [String: Any]).map { [$0] } ?? []
                for spec in loraSpecs {
                    guard let file = spec["file"] as? String else { throw CLIError("\(manifest):\(lineNumber + 1): LoRA without file") }
                    let path = resolvePath(file).path
                    if loraCache[path] == nil {
                        loraCache[path] = try LoRAKeyMap.resolve(try LoRANetwork.load(contentsOf: URL(fileURLWithPath: path)), targets: loaded.loraTargets)
                    }
                    let weight = Float((spec["scale"] as? NSNumber)?.doubleValue ?? (spec["weight"] as? NSNumber)?.doubleValue ?? 1)
                    if let resolved = loraCache[path] { applications.append(LoRAApplication(resolved, weight: weight)) }
                }
                if let control = entry["control"] as? [String: Any], let imagePath = control["image"] as? String {
                    if controlnetModel == nil {
                        let folderPath = controlnet ?? embeddedRoot?.appendingPathComponent("shapes-sd-controlnet-canny").path ?? ""
                        let folder = try ComponentFolder(URL(fileURLWithPath: folderPath))
                        controlnetModel = try ControlNetModel(configData: try folder.configData, weights: try folder.weights(), source: folderPath)
                    }
                    let image = preprocessor(
                        ResizeMode.justResize.apply(
                            to: try ImageCodec.read(contentsOf: resolvePath(imagePath)), width: request.width, height: request.height))
                    let value = { (key: String, fallback: Float) in Float((control[key] as? NSNumber)?.doubleValue ?? Double(fallback)) }
                    if let controlnetModel {
                        request.controls.append(
                            ControlInput(
                                model: controlnetModel, image: image, scale: value("scale", 1), start: value("start", 0), end: value("end", 1)))
                    }
                }

                let imageStart = Date()
                let result = try pipeline.generate(request, loras: applications)
                let seconds = Date().timeIntervalSince(imageStart)
                let infotext = Infotext(request: request, modelName: loaded.name).text
                let file = "\(id).png"
                try ImageCodec.encodePNG(result.images[0], textChunks: [("parameters", infotext)]).write(to: output.appendingPathComponent(file))
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
