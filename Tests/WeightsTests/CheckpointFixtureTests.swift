import Compute
import Foundation
import ParityTesting
import Weights
import XCTest

/// The tiny model family (Tests/Fixtures/models, made by tools/parity/make_tiny_models.py): each
/// single-file checkpoint, converted, must hold exactly the diffusers folder's tensors under the same
/// names, with nothing left over and the same configs. diffusers itself loads the same files with
/// `from_single_file` and gets the same tensors (checked by the script), so this proves the Swift
/// conversion against the real layout.
final class CheckpointFixtureTests: XCTestCase {
    private static let regenerate = "/work/venv/bin/python tools/parity/make_tiny_models.py"

    private func models() -> URL { Golden.fixturesDirectory.appendingPathComponent("models", isDirectory: true) }

    private func open(_ family: String) throws -> (SingleFileCheckpoint, DiffusersPipelineFolder) {
        let file = models().appendingPathComponent("\(family).safetensors")
        guard FileManager.default.fileExists(atPath: file.path) else {
            throw XCTSkip("missing fixture \(file.path); regenerate with `\(Self.regenerate)`")
        }
        return (try SingleFileCheckpoint(url: file), try DiffusersPipelineFolder(models().appendingPathComponent(family)))
    }

    /// Every tensor of every component equals the folder's, bit for bit, under the same name; configs equal.
    private func assertMatchesFolder(
        _ family: String, expected: SingleFileCheckpoint.Family, ignored: Set<String>,
        file: StaticString = #filePath, line: UInt = #line
    ) throws {
        let (checkpoint, folder) = try open(family)
        XCTAssertEqual(checkpoint.family, expected, file: file, line: line)
        XCTAssertEqual(checkpoint.leftoverKeys, [], file: file, line: line)
        XCTAssertEqual(Set(checkpoint.ignoredKeys), ignored, file: file, line: line)
        XCTAssertEqual(checkpoint.componentNames, expected.modelComponents, file: file, line: line)

        var compared = 0
        for component in expected.modelComponents {
            let converted = try checkpoint.component(component)
            let reference = try folder.component(component).weights()
            let missing = Set(reference.names).subtracting(converted.names).sorted()
            let extra = Set(converted.names).subtracting(reference.names).sorted()
            XCTAssertEqual(missing, [], "\(family)/\(component): in the folder, not in the checkpoint", file: file, line: line)
            XCTAssertEqual(extra, [], "\(family)/\(component): in the checkpoint, not in the folder", file: file, line: line)
            for name in reference.names where converted.contains(name) {
                let actual = try converted.tensor(name)
                let wanted = try reference.tensor(name)
                XCTAssertEqual(
                    try converted.shape(of: name), wanted.shape, "\(family)/\(component)/\(name)", file: file, line: line)
                XCTAssertEqual(actual.shape, wanted.shape, "\(family)/\(component)/\(name)", file: file, line: line)
                if actual.scalars.map(\.bitPattern) != wanted.scalars.map(\.bitPattern) {
                    XCTFail("\(family)/\(component)/\(name): values differ", file: file, line: line)
                }
                compared += 1
            }
        }
        XCTAssertGreaterThan(compared, 200, file: file, line: line)

        XCTAssertEqual(checkpoint.configComponents.sorted(), (expected.configComponents).sorted(), file: file, line: line)
        for component in checkpoint.configComponents {
            XCTAssertEqual(
                checkpoint.configOrigin(for: component), .checkpointMetadata(key: "swiftdiffusion.\(component).config"),
                file: file, line: line)
            let ours = try JSONSerialization.jsonObject(with: checkpoint.configData(for: component)) as? NSDictionary
            let theirs = try JSONSerialization.jsonObject(with: folder.component(component).configData) as? NSDictionary
            XCTAssertNotNil(ours, file: file, line: line)
            XCTAssertEqual(ours, theirs, "\(family)/\(component) config", file: file, line: line)
        }
        XCTAssertEqual(checkpoint.family.pipelineClass, folder.pipelineClass, file: file, line: line)
    }

    func testSD1MatchesFolder() throws {
        try assertMatchesFolder(
            "sd1", expected: .sd1,
            ignored: ["alphas_cumprod", "cond_stage_model.transformer.text_model.embeddings.position_ids"])
        let (checkpoint, _) = try open("sd1")
        XCTAssertEqual(checkpoint.predictionType, "epsilon")
        XCTAssertEqual(checkpoint.padToken(), "<|endoftext|>")
        XCTAssertNil(checkpoint.textEncoder2)
    }

    func testSD2MatchesFolder() throws {
        // The OpenCLIP tower has one layer more than diffusers' text encoder (SD 2.x uses the penultimate
        // layer), plus the projection and temperature: all ignored.
        let layer = [
            "attn.in_proj_weight", "attn.in_proj_bias", "attn.out_proj.weight", "attn.out_proj.bias",
            "ln_1.weight", "ln_1.bias", "ln_2.weight", "ln_2.bias", "mlp.c_fc.weight", "mlp.c_fc.bias",
            "mlp.c_proj.weight", "mlp.c_proj.bias",
        ].map { "cond_stage_model.model.transformer.resblocks.2.\($0)" }
        try assertMatchesFolder(
            "sd2", expected: .sd2,
            ignored: Set(layer + ["cond_stage_model.model.text_projection", "cond_stage_model.model.logit_scale"]))
        let (checkpoint, _) = try open("sd2")
        XCTAssertEqual(checkpoint.predictionType, "v_prediction")
        XCTAssertEqual(checkpoint.padToken(), "!")
        // q, k and v come out of the fused in_proj_weight.
        XCTAssertEqual(
            checkpoint.textEncoder?.recipes["text_model.encoder.layers.1.self_attn.v_proj.weight"],
            .rows("transformer.resblocks.1.attn.in_proj_weight", part: 2, parts: 3))
    }

    func testSDXLMatchesFolder() throws {
        try assertMatchesFolder(
            "sdxl", expected: .sdxl,
            ignored: [
                "conditioner.embedders.0.transformer.text_model.embeddings.position_ids",
                "conditioner.embedders.1.model.logit_scale",
            ])
        let (checkpoint, _) = try open("sdxl")
        XCTAssertEqual(checkpoint.predictionType, "epsilon")
        XCTAssertEqual(checkpoint.padToken(tokenizer: "tokenizer"), "<|endoftext|>")
        XCTAssertEqual(checkpoint.padToken(tokenizer: "tokenizer_2"), "!")
        XCTAssertEqual(checkpoint.textEncoder2?.recipes["text_projection.weight"], .transpose("text_projection"))
        XCTAssertEqual(try checkpoint.textEncoder2?.shape(of: "text_projection.weight"), [32, 40])
        // F16 on disk, widened on read.
        let file = try SafeTensorsFile(contentsOf: models().appendingPathComponent("sdxl.safetensors"))
        XCTAssertEqual(try file.info("model.diffusion_model.out.2.weight").dtype, .float16)
    }

    /// Without the embedded configs a tiny checkpoint is checked against the full-size standard configs and
    /// fails naming the fields; with the folder's configs (`configFolder:`) it opens.
    func testNonStandardArchitectureNeedsConfigs() throws {
        let url = models().appendingPathComponent("sd1.safetensors")
        guard FileManager.default.fileExists(atPath: url.path) else { throw XCTSkip("missing fixture; run \(Self.regenerate)") }
        let file = try SafeTensorsFile(contentsOf: url)
        XCTAssertThrowsError(try SingleFileCheckpoint(weights: file, metadata: [:])) { error in
            let message = "\(error)"
            for fragment in [
                "the unet in the checkpoint does not match its configuration",
                "standard Stable Diffusion 1.5 configuration",
                "block_out_channels is [8, 16] in the checkpoint but [320, 640, 1280, 1280] in the configuration",
                "cross_attention_dim is 32 in the checkpoint but 768", "configFolder",
            ] {
                XCTAssertTrue(message.contains(fragment), "\"\(message)\" does not mention \"\(fragment)\"")
            }
        }
        let folder = models().appendingPathComponent("sd1")
        let checkpoint = try SingleFileCheckpoint(weights: file, metadata: [:], configFolder: folder)
        XCTAssertEqual(checkpoint.configOrigin(for: "unet"), .configFolder(folder.appendingPathComponent("unet").path))
        XCTAssertEqual(checkpoint.leftoverKeys, [])
    }

    func testPredictionTypeOverride() throws {
        let url = models().appendingPathComponent("sd2.safetensors")
        guard FileManager.default.fileExists(atPath: url.path) else { throw XCTSkip("missing fixture; run \(Self.regenerate)") }
        let checkpoint = try SingleFileCheckpoint(url: url, predictionType: "epsilon")
        XCTAssertEqual(checkpoint.predictionType, "epsilon")
        let scheduler = try JSONSerialization.jsonObject(with: checkpoint.configData(for: "scheduler")) as? [String: Any]
        XCTAssertEqual(scheduler?["_class_name"] as? String, "DDIMScheduler")
        XCTAssertEqual(scheduler?["prediction_type"] as? String, "epsilon")
        XCTAssertThrowsError(try SingleFileCheckpoint(url: url, predictionType: "velocity")) {
            XCTAssertTrue("\($0)".contains("prediction type 'velocity'"), "\($0)")
        }
        assertWeightsError(["has no component 'text_encoder_2'", "unet, vae, text_encoder"]) {
            try checkpoint.component("text_encoder_2")
        }
    }
}
