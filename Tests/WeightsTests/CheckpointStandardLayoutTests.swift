import Foundation
import Weights
import XCTest

/// Full-size SD 1.5 / SD 2.1 / SDXL base checkpoint layouts (shapes only, no data) opened with the
/// embedded standard configs: detection, conversion of every key, and the config cross-checks.
///
/// `SWIFTDIFFUSION_LDM_LAYOUTS=<dir>` additionally compares the layouts built here with diffusers' own
/// (`python tools/parity/convert_diffusers_to_ldm.py --dump-standard-layouts <dir>`).
final class CheckpointStandardLayoutTests: XCTestCase {
    private func open(_ layout: [String: [Int]], _ name: String) throws -> SingleFileCheckpoint {
        try SingleFileCheckpoint(weights: ShapeOnlyWeights(layout, description: name))
    }

    func testSD15() throws {
        let checkpoint = try open(LDMLayouts.sd15(), "sd15.safetensors")
        XCTAssertEqual(checkpoint.family, .sd1)
        XCTAssertEqual(checkpoint.leftoverKeys, [])
        XCTAssertEqual(checkpoint.unet.names.count, 686)
        XCTAssertEqual(checkpoint.vae?.names.count, 248)
        XCTAssertEqual(checkpoint.textEncoder?.names.count, 196)
        XCTAssertEqual(checkpoint.configOrigin(for: "unet"), .standard(model: "Stable Diffusion 1.5"))
        XCTAssertEqual(checkpoint.predictionType, "epsilon")
        XCTAssertEqual(checkpoint.padToken(), "<|endoftext|>")
        XCTAssertEqual(
            Set(checkpoint.ignoredKeys),
            LDMLayouts.extras(.sd1).union(["cond_stage_model.transformer.text_model.embeddings.position_ids"]))
        XCTAssertEqual(try checkpoint.vae?.shape(of: "decoder.mid_block.attentions.0.to_q.weight"), [512, 512])
        XCTAssertEqual(
            checkpoint.unet.recipes["up_blocks.3.attentions.2.proj_out.weight"], .rename("output_blocks.11.1.proj_out.weight"))
    }

    func testSD21() throws {
        let checkpoint = try open(LDMLayouts.sd21(), "sd21.safetensors")
        XCTAssertEqual(checkpoint.family, .sd2)
        XCTAssertEqual(checkpoint.leftoverKeys, [])
        XCTAssertEqual(checkpoint.unet.names.count, 686)
        XCTAssertEqual(checkpoint.textEncoder?.names.count, 372)  // 23 layers of OpenCLIP's 24
        XCTAssertEqual(
            try checkpoint.textEncoder?.shape(of: "text_model.encoder.layers.22.self_attn.k_proj.weight"), [1024, 1024])
        XCTAssertEqual(Set(checkpoint.ignoredKeys), LDMLayouts.extras(.sd2))
        XCTAssertEqual(checkpoint.predictionType, "v_prediction")
        XCTAssertEqual(
            try SingleFileCheckpoint(weights: ShapeOnlyWeights(LDMLayouts.sd21()), predictionType: "epsilon").predictionType,
            "epsilon")
        XCTAssertEqual(checkpoint.padToken(), "!")
    }

    func testSDXLBase() throws {
        let checkpoint = try open(LDMLayouts.sdxlBase(), "sdxl.safetensors")
        XCTAssertEqual(checkpoint.family, .sdxl)
        XCTAssertEqual(checkpoint.leftoverKeys, [])
        XCTAssertEqual(checkpoint.unet.names.count, 1680)
        XCTAssertEqual(checkpoint.vae?.names.count, 248)
        XCTAssertEqual(checkpoint.textEncoder?.names.count, 196)
        XCTAssertEqual(checkpoint.textEncoder2?.names.count, 517)
        XCTAssertEqual(try checkpoint.textEncoder2?.shape(of: "text_projection.weight"), [1280, 1280])
        XCTAssertEqual(try checkpoint.unet.shape(of: "add_embedding.linear_1.weight"), [1280, 2816])
        XCTAssertEqual(
            checkpoint.unet.recipes["mid_block.attentions.0.transformer_blocks.9.attn2.to_k.weight"],
            .rename("middle_block.1.transformer_blocks.9.attn2.to_k.weight"))
        XCTAssertEqual(checkpoint.configOrigin(for: "text_encoder_2"), .standard(model: "Stable Diffusion XL base 1.0"))
        XCTAssertEqual(checkpoint.padToken(tokenizer: "tokenizer_2"), "!")
    }

    /// Inpainting checkpoints (9 input channels) keep the standard config with `in_channels` taken from
    /// the checkpoint; a `v_pred` marker selects v-prediction.
    func testStandardConfigFollowsInputChannelsAndVPredMarker() throws {
        var layout = LDMLayouts.sd15()
        layout["model.diffusion_model.input_blocks.0.0.weight"] = [320, 9, 3, 3]
        layout["v_pred"] = []
        let checkpoint = try open(layout, "inpainting.safetensors")
        let unet = try JSONSerialization.jsonObject(with: checkpoint.configData(for: "unet")) as? [String: Any]
        XCTAssertEqual(unet?["in_channels"] as? Int, 9)
        XCTAssertEqual(unet?["cross_attention_dim"] as? Int, 768)
        XCTAssertEqual(checkpoint.predictionType, "v_prediction")
        XCTAssertTrue(checkpoint.ignoredKeys.contains("v_pred"))
    }

    /// A checkpoint whose shapes contradict the standard config (an SD 1.x file with an SD 2.x-width
    /// context) fails naming the field.
    func testShapeMismatchWithStandardConfig() throws {
        var layout = LDMLayouts.sd15()
        for (key, shape) in layout where key.hasSuffix("attn2.to_k.weight") { layout[key] = [shape[0], 1024] }
        XCTAssertThrowsError(try open(layout, "odd.safetensors")) { error in
            XCTAssertTrue(
                "\(error)".contains("cross_attention_dim is 1024 in the checkpoint but 768 in the configuration"), "\(error)")
        }
        var missing = LDMLayouts.sdxlBase()
        missing["conditioner.embedders.1.model.text_projection"] = nil
        XCTAssertThrowsError(try open(missing, "noproj.safetensors")) { error in
            XCTAssertTrue("\(error)".contains("text_projection: absent in the checkpoint"), "\(error)")
        }
    }

    /// Optional: the layouts above against diffusers' own (see the class comment).
    func testLayoutsMatchDiffusers() throws {
        guard let directory = ProcessInfo.processInfo.environment["SWIFTDIFFUSION_LDM_LAYOUTS"], !directory.isEmpty else {
            throw XCTSkip("set SWIFTDIFFUSION_LDM_LAYOUTS to compare with diffusers' layouts")
        }
        let layouts: [(String, SingleFileCheckpoint.Family, [String: [Int]])] = [
            ("sd1", .sd1, LDMLayouts.sd15()), ("sd2", .sd2, LDMLayouts.sd21()), ("sdxl", .sdxl, LDMLayouts.sdxlBase()),
        ]
        for (name, family, ours) in layouts {
            let data = try Data(contentsOf: URL(fileURLWithPath: directory).appendingPathComponent("\(name).json"))
            let theirs = try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [String: [Int]])
            XCTAssertEqual(Set(ours.keys).subtracting(theirs.keys), LDMLayouts.extras(family), name)
            XCTAssertEqual(Set(theirs.keys).subtracting(ours.keys), [], name)
            for (key, shape) in theirs where ours[key] != shape {
                XCTFail("\(name): \(key) is \(ours[key] ?? []) here, \(shape) in diffusers")
            }
        }
    }
}
