import Adapters
import Compute
import Foundation
import Imaging
import Models
import ParityTesting
import Pipelines
import Samplers
import Weights
import XCTest

/// End-to-end parity with diffusers' pipelines on the tiny random models of Tests/Fixtures/models
/// (tools/parity/make_pipeline_goldens.py): final latents within 1e-3 (fp32), every sampler, SD 1.x, SD 2.x
/// (v-prediction) and SDXL, img2img, LoRA (merged and runtime), one and two ControlNets.
final class PipelineParityTests: XCTestCase {
    static let models = Golden.fixturesDirectory.appendingPathComponent("models")
    static let pipelines = Golden.fixturesDirectory.appendingPathComponent("pipelines")
    nonisolated(unsafe) static var loaded: [String: DiffusionPipeline] = [:]

    static func pipeline(_ name: String) throws -> DiffusionPipeline {
        if let cached = loaded[name] { return cached }
        let pipeline = DiffusionPipeline(model: try StableDiffusionModel(folder: models.appendingPathComponent(name)))
        loaded[name] = pipeline
        return pipeline
    }

    /// The golden's `request` metadata as a generation request.
    static func request(_ golden: Golden) throws -> (model: String, request: GenerationRequest, json: [String: Any]) {
        guard let json = try golden.json("request") as? [String: Any] else { throw GoldenError.missingAttribute(name: golden.name, key: "request", available: []) }
        let number = { (key: String) -> Double in (json[key] as? NSNumber)?.doubleValue ?? 0 }
        let request = GenerationRequest(
            prompt: json["prompt"] as? String ?? "", negativePrompt: json["negative_prompt"] as? String, width: Int(number("width")),
            height: Int(number("height")), steps: Int(number("steps")), sampler: try SamplerKind.named(json["sampler"] as? String ?? ""),
            guidanceScale: Float(number("guidance")), seed: UInt64(number("seed")), count: Int(number("count")), decode: false)
        return (json["model"] as? String ?? "", request, json)
    }

    private func checkLatents(_ result: GenerationResult, _ golden: Golden, _ key: String = "latents", label: String) throws {
        assertClose(result.latents, try golden.output(key), tolerance: 1e-3, label)
    }

    func testTextToImageEverySamplerAndFamily() throws {
        let files = try FileManager.default.contentsOfDirectory(atPath: Self.pipelines.path)
            .filter { $0.hasPrefix("txt2img_") && $0.hasSuffix(".safetensors") }.sorted()
        XCTAssertGreaterThanOrEqual(files.count, 20, "pipeline goldens are missing")
        for file in files {
            let name = String(file.dropLast(".safetensors".count))
            let golden = try Golden("pipelines/\(name)")
            var (model, request, _) = try Self.request(golden)
            request.decode = golden.file.contains("output.image")
            let result = try Self.pipeline(model).generate(request)
            try checkLatents(result, golden, label: name)
            if request.decode {
                // diffusers' output_type="pt": [N, 3, H, W] in [0, 1].
                let expected = nchwToNHWC(try golden.output("image"))
                let decoded = RGBImage.images(fromSigned: expected * 2 - 1)
                XCTAssertEqual(result.images.count, decoded.count)
                let differing = zip(result.images[0].pixels, decoded[0].pixels).filter { abs(Int($0) - Int($1)) > 1 }.count
                XCTAssertEqual(differing, 0, "\(name): decoded pixels differ from diffusers by more than 1 level")
            }
        }
    }

    func testImageToImage() throws {
        let golden = try Golden("pipelines/img2img_sd1")
        var (model, request, json) = try Self.request(golden)
        request.initImage = try ImageCodec.read(contentsOf: Self.pipelines.appendingPathComponent(json["init_image"] as? String ?? ""))
        request.strength = Float((json["strength"] as? NSNumber)?.doubleValue ?? 0)
        for sampler in json["samplers"] as? [String] ?? [] {
            request.sampler = try SamplerKind.named(sampler)
            let result = try Self.pipeline(model).generate(request)
            try checkLatents(result, golden, "latents_\(sampler)", label: "img2img \(sampler)")
        }
    }

    func testLoRAMergedAndRuntime() throws {
        let golden = try Golden("pipelines/lora_sd1")
        let (model, request, _) = try Self.request(golden)
        let pipeline = try Self.pipeline(model)
        func resolve(_ file: String) throws -> ResolvedLoRA {
            try LoRAKeyMap.resolve(try LoRANetwork.load(contentsOf: Self.models.appendingPathComponent(file)), targets: pipeline.model.loraTargets)
        }
        let a = try resolve("sd1-lora.safetensors"), b = try resolve("sd1-lora-b.safetensors")
        XCTAssertEqual(a.unmatched, [])
        XCTAssertTrue(a.entries.contains { $0.component == .textEncoder }, "the LoRA patches the text encoder too")
        for mode in [DiffusionPipeline.LoRAMode.merged, .runtime] {
            try checkLatents(pipeline.generate(request, loras: [LoRAApplication(a, weight: 0.8)], loraMode: mode), golden, label: "LoRA a 0.8 \(mode)")
            try checkLatents(
                pipeline.generate(request, loras: [LoRAApplication(a, weight: 0.8), LoRAApplication(b, weight: -0.6)], loraMode: mode), golden,
                "latents_two", label: "LoRA a 0.8 + b -0.6 \(mode)")
        }
        // After the requests the model is back to its base weights.
        try checkLatents(pipeline.generate(request), golden, "latents_base", label: "after LoRA requests")
    }

    /// A diffusers-layout LoRA on SD 1.x (UNet + text encoder, alphas only in `lora_adapter_metadata`) and a
    /// kohya SDXL LoRA (SGM UNet names, `lora_te1_` / `lora_te2_`, float16) against diffusers' own
    /// `load_lora_weights`, at one weight and at separate UNet / text-encoder weights, merged and runtime.
    func testLoRAFormatsMatchDiffusersLoader() throws {
        let cases: [(String, LoRAFormat, Set<LoRAComponent>)] = [
            ("lora_sd1_diffusers", .diffusers, [.unet, .textEncoder]),
            ("lora_sdxl_kohya", .kohya, [.unet, .textEncoder, .textEncoder2]),
        ]
        for (name, format, components) in cases {
            let golden = try Golden("pipelines/\(name)")
            let (model, request, json) = try Self.request(golden)
            let pipeline = try Self.pipeline(model)
            let network = try LoRANetwork.load(contentsOf: Self.models.appendingPathComponent(json["lora"] as? String ?? ""))
            XCTAssertEqual(network.format, format, name)
            XCTAssertEqual(network.ignoredKeys, [], name)
            let lora = try LoRAKeyMap.resolve(network, targets: pipeline.model.loraTargets)
            XCTAssertEqual(lora.unmatched, [], name)
            XCTAssertEqual(lora.entries.count, network.modules.count, name)
            XCTAssertEqual(Set(lora.entries.map(\.component)), components, name)
            XCTAssertTrue(lora.entries.contains { if case .conv = $0.layer { true } else { false } }, "\(name) patches convolutions")
            let weights = json["weights"] as? [Any] ?? []
            XCTAssertEqual(weights.count, 2, name)
            for (index, weight) in weights.enumerated() {
                let application: LoRAApplication
                if let split = weight as? [String: NSNumber] {
                    // One strength for both SDXL text encoders, as A1111's `<lora:name:unet:te>`.
                    XCTAssertEqual(split["text_encoder_2"] ?? split["text_encoder"], split["text_encoder"], name)
                    application = LoRAApplication(
                        lora, unetWeight: split["unet"]?.floatValue ?? 1, textEncoderWeight: split["text_encoder"]?.floatValue ?? 1)
                } else {
                    application = LoRAApplication(lora, weight: (weight as? NSNumber)?.floatValue ?? 1)
                }
                for mode in [DiffusionPipeline.LoRAMode.merged, .runtime] {
                    try checkLatents(
                        pipeline.generate(request, loras: [application], loraMode: mode), golden, index == 0 ? "latents" : "latents_split",
                        label: "\(name) \(weight) \(mode)")
                }
            }
        }
    }

    func testControlNets() throws {
        let golden = try Golden("pipelines/controlnet_sd1")
        let (model, base, json) = try Self.request(golden)
        let pipeline = try Self.pipeline(model)
        func controls(_ key: String) throws -> [ControlInput] {
            try (json[key] as? [[Any]] ?? []).map { spec in
                let folder = try ComponentFolder(Self.models.appendingPathComponent(spec[0] as? String ?? ""))
                let controlnet = try ControlNetModel(configData: try folder.configData, weights: try folder.weights())
                let image = try ImageCodec.read(contentsOf: Self.pipelines.appendingPathComponent(spec[1] as? String ?? ""))
                let value = { (i: Int) in Float((spec[i] as? NSNumber)?.doubleValue ?? 0) }
                return ControlInput(model: controlnet, image: image, scale: value(2), start: value(3), end: value(4))
            }
        }
        var request = base
        request.controls = try controls("controls")
        try checkLatents(pipeline.generate(request), golden, label: "one ControlNet")
        request.controls = try controls("controls_two")
        try checkLatents(pipeline.generate(request), golden, "latents_two", label: "two ControlNets with start/end")
    }

    func testSingleFileCheckpointMatchesFolder() throws {
        for family in ["sd1", "sd2", "sdxl"] {
            let folder = Self.models.appendingPathComponent(family)
            let checkpoint = try StableDiffusionModel(
                checkpoint: Self.models.appendingPathComponent("\(family).safetensors"), tokenizerFolder: folder.appendingPathComponent("tokenizer"))
            XCTAssertEqual(checkpoint.family.rawValue, family)
            let request = GenerationRequest(
                prompt: "a red circle", negativePrompt: "blue", width: 32, height: 32, steps: 3, sampler: .euler, seed: 3, decode: true)
            let fromFile = try DiffusionPipeline(model: checkpoint).generate(request)
            let fromFolder = try Self.pipeline(family).generate(request)
            XCTAssertTrue(fromFile.latents.isBitwiseEqual(to: fromFolder.latents), "\(family): single file and folder differ")
            XCTAssertEqual(fromFile.images, fromFolder.images)
        }
    }

    func testBadRequestsAreRejected() throws {
        let pipeline = try Self.pipeline("sd1")
        let bad: [(GenerationRequest, String)] = [
            (GenerationRequest(prompt: "x", width: 33, height: 32), "multiples"),
            (GenerationRequest(prompt: "x", width: 32, height: 32, steps: 0), "steps"),
            (GenerationRequest(prompt: "x", width: 32, height: 32, count: 0), "count"),
            (GenerationRequest(prompt: "x", width: 32, height: 32, initLatents: Tensor.zeros([1, 4, 8, 8])), "init latents"),
            (GenerationRequest(prompt: "x", width: 32, height: 32, initImage: RGBImage(width: 8, height: 8, red: 0, green: 0, blue: 0)), "init image"),
        ]
        for (request, fragment) in bad {
            XCTAssertThrowsError(try pipeline.generate(request)) { error in
                XCTAssertTrue("\(error)".contains(fragment), "\(error) should mention \(fragment)")
            }
        }
    }
}
