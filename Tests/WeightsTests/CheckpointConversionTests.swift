import Compute
import Foundation
import Weights
import XCTest

/// The original-layout -> diffusers key tables on their own: representative keys of each family mapped to
/// the names diffusers' `convert_ldm_*_checkpoint` gives them, the tensor recipes, family detection and
/// the errors for files that are not checkpoints.
final class CheckpointConversionTests: XCTestCase {
    /// Converts `keys` and checks that each key in `expected` got that diffusers name (by plain rename).
    private func assertRenames(
        _ conversion: KeyConversion, _ expected: [String: String], file: StaticString = #filePath, line: UInt = #line
    ) {
        for (source, target) in expected.sorted(by: { $0.key < $1.key }) {
            XCTAssertEqual(conversion.recipes[target], .rename(source), "\(source) -> \(target)", file: file, line: line)
        }
    }

    // MARK: - UNet

    /// One key per slot of the SD 1.x / 2.x UNet (4 levels x 2 layers, attention in the first three).
    private let sd15UNetKeys = [
        "input_blocks.0.0.weight", "time_embed.0.weight", "time_embed.2.bias", "out.0.weight", "out.2.bias",
        "input_blocks.1.0.in_layers.0.weight", "input_blocks.1.1.proj_in.weight",
        "input_blocks.2.0.emb_layers.1.weight", "input_blocks.2.1.transformer_blocks.0.attn2.to_k.weight",
        "input_blocks.3.0.op.weight", "input_blocks.3.0.op.bias",
        "input_blocks.4.0.skip_connection.weight", "input_blocks.4.1.norm.bias", "input_blocks.5.0.in_layers.2.weight",
        "input_blocks.5.1.proj_out.weight", "input_blocks.6.0.op.weight",
        "input_blocks.7.0.out_layers.0.weight", "input_blocks.7.1.transformer_blocks.0.ff.net.0.proj.weight",
        "input_blocks.8.0.out_layers.3.weight", "input_blocks.8.1.transformer_blocks.0.norm3.bias",
        "input_blocks.9.0.op.weight", "input_blocks.10.0.in_layers.0.bias", "input_blocks.11.0.out_layers.3.bias",
        "middle_block.0.in_layers.2.weight", "middle_block.1.proj_out.weight", "middle_block.2.emb_layers.1.weight",
        "output_blocks.0.0.skip_connection.weight", "output_blocks.1.0.in_layers.0.weight",
        "output_blocks.2.0.in_layers.0.weight", "output_blocks.2.1.conv.weight",
        "output_blocks.3.0.in_layers.0.weight", "output_blocks.3.1.norm.weight",
        "output_blocks.4.0.in_layers.0.weight", "output_blocks.4.1.norm.weight",
        "output_blocks.5.0.in_layers.0.weight", "output_blocks.5.1.norm.weight", "output_blocks.5.2.conv.bias",
        "output_blocks.6.0.in_layers.0.weight", "output_blocks.6.1.norm.weight",
        "output_blocks.7.0.in_layers.0.weight", "output_blocks.7.1.norm.weight",
        "output_blocks.8.0.in_layers.0.weight", "output_blocks.8.1.norm.weight", "output_blocks.8.2.conv.weight",
        "output_blocks.9.0.in_layers.0.weight", "output_blocks.9.1.norm.weight",
        "output_blocks.10.0.in_layers.0.weight", "output_blocks.10.1.norm.weight",
        "output_blocks.11.0.emb_layers.1.bias", "output_blocks.11.1.transformer_blocks.0.attn1.to_out.0.bias",
    ]

    func testSD15UNetKeys() throws {
        let conversion = try UNetKeyConversion.convert(sd15UNetKeys)
        XCTAssertEqual(conversion.unconverted, [])
        XCTAssertEqual(conversion.recipes.count, sd15UNetKeys.count)
        assertRenames(
            conversion,
            [
                "input_blocks.0.0.weight": "conv_in.weight",
                "time_embed.0.weight": "time_embedding.linear_1.weight",
                "time_embed.2.bias": "time_embedding.linear_2.bias",
                "out.0.weight": "conv_norm_out.weight",
                "out.2.bias": "conv_out.bias",
                "input_blocks.1.0.in_layers.0.weight": "down_blocks.0.resnets.0.norm1.weight",
                "input_blocks.1.1.proj_in.weight": "down_blocks.0.attentions.0.proj_in.weight",
                "input_blocks.2.0.emb_layers.1.weight": "down_blocks.0.resnets.1.time_emb_proj.weight",
                "input_blocks.2.1.transformer_blocks.0.attn2.to_k.weight":
                    "down_blocks.0.attentions.1.transformer_blocks.0.attn2.to_k.weight",
                "input_blocks.3.0.op.weight": "down_blocks.0.downsamplers.0.conv.weight",
                "input_blocks.4.0.skip_connection.weight": "down_blocks.1.resnets.0.conv_shortcut.weight",
                "input_blocks.5.0.in_layers.2.weight": "down_blocks.1.resnets.1.conv1.weight",
                "input_blocks.7.0.out_layers.0.weight": "down_blocks.2.resnets.0.norm2.weight",
                "input_blocks.8.0.out_layers.3.weight": "down_blocks.2.resnets.1.conv2.weight",
                "input_blocks.9.0.op.weight": "down_blocks.2.downsamplers.0.conv.weight",
                "input_blocks.10.0.in_layers.0.bias": "down_blocks.3.resnets.0.norm1.bias",
                "input_blocks.11.0.out_layers.3.bias": "down_blocks.3.resnets.1.conv2.bias",
                "middle_block.0.in_layers.2.weight": "mid_block.resnets.0.conv1.weight",
                "middle_block.1.proj_out.weight": "mid_block.attentions.0.proj_out.weight",
                "middle_block.2.emb_layers.1.weight": "mid_block.resnets.1.time_emb_proj.weight",
                "output_blocks.0.0.skip_connection.weight": "up_blocks.0.resnets.0.conv_shortcut.weight",
                "output_blocks.2.0.in_layers.0.weight": "up_blocks.0.resnets.2.norm1.weight",
                "output_blocks.2.1.conv.weight": "up_blocks.0.upsamplers.0.conv.weight",
                "output_blocks.3.1.norm.weight": "up_blocks.1.attentions.0.norm.weight",
                "output_blocks.5.1.norm.weight": "up_blocks.1.attentions.2.norm.weight",
                "output_blocks.5.2.conv.bias": "up_blocks.1.upsamplers.0.conv.bias",
                "output_blocks.8.2.conv.weight": "up_blocks.2.upsamplers.0.conv.weight",
                "output_blocks.9.0.in_layers.0.weight": "up_blocks.3.resnets.0.norm1.weight",
                "output_blocks.11.0.emb_layers.1.bias": "up_blocks.3.resnets.2.time_emb_proj.bias",
                "output_blocks.11.1.transformer_blocks.0.attn1.to_out.0.bias":
                    "up_blocks.3.attentions.2.transformer_blocks.0.attn1.to_out.0.bias",
            ])
        let layout = try LDMUNetLayout(keys: sd15UNetKeys)
        XCTAssertEqual(layout.downLayers, [2, 2, 2, 2])
        XCTAssertEqual(layout.upLayers, [3, 3, 3, 3])
        XCTAssertEqual(layout.inputSlots[3], .downsampler(block: 0))
        XCTAssertEqual(layout.inputSlots[11], .layer(block: 3, layer: 1))
    }

    /// SDXL: 3 levels, no attention in the first, `label_emb` for the added time/text embedding, 10
    /// transformer blocks in the deepest level.
    func testSDXLUNetKeys() throws {
        var keys = [
            "input_blocks.0.0.weight", "label_emb.0.0.weight", "label_emb.0.2.bias",
            "input_blocks.1.0.in_layers.0.weight", "input_blocks.2.0.in_layers.0.weight", "input_blocks.3.0.op.weight",
            "input_blocks.4.0.skip_connection.weight", "input_blocks.4.1.proj_in.weight", "input_blocks.5.0.in_layers.0.weight",
            "input_blocks.6.0.op.weight", "input_blocks.7.0.in_layers.0.weight",
            "input_blocks.7.1.transformer_blocks.9.attn1.to_q.weight", "input_blocks.8.0.in_layers.0.weight",
            "middle_block.1.transformer_blocks.9.ff.net.2.weight",
            "output_blocks.2.2.conv.weight", "output_blocks.5.2.conv.weight", "output_blocks.6.0.in_layers.0.weight",
            "output_blocks.8.0.in_layers.2.weight",
        ]
        keys += [0, 1, 3, 4, 7].map { "output_blocks.\($0).0.in_layers.0.weight" }
        let conversion = try UNetKeyConversion.convert(keys)
        XCTAssertEqual(conversion.unconverted, [])
        assertRenames(
            conversion,
            [
                "label_emb.0.0.weight": "add_embedding.linear_1.weight",
                "label_emb.0.2.bias": "add_embedding.linear_2.bias",
                "input_blocks.2.0.in_layers.0.weight": "down_blocks.0.resnets.1.norm1.weight",
                "input_blocks.3.0.op.weight": "down_blocks.0.downsamplers.0.conv.weight",
                "input_blocks.4.1.proj_in.weight": "down_blocks.1.attentions.0.proj_in.weight",
                "input_blocks.7.1.transformer_blocks.9.attn1.to_q.weight":
                    "down_blocks.2.attentions.0.transformer_blocks.9.attn1.to_q.weight",
                "middle_block.1.transformer_blocks.9.ff.net.2.weight":
                    "mid_block.attentions.0.transformer_blocks.9.ff.net.2.weight",
                "output_blocks.2.2.conv.weight": "up_blocks.0.upsamplers.0.conv.weight",
                "output_blocks.5.2.conv.weight": "up_blocks.1.upsamplers.0.conv.weight",
                "output_blocks.6.0.in_layers.0.weight": "up_blocks.2.resnets.0.norm1.weight",
                "output_blocks.8.0.in_layers.2.weight": "up_blocks.2.resnets.2.conv1.weight",
            ])
        XCTAssertEqual(try LDMUNetLayout(keys: keys).downLayers, [2, 2, 2])
    }

    /// The index arithmetic follows the keys: 2 levels with 1 layer each (the tiny SD 1.x test model).
    func testUNetLayoutWithOneLayerPerLevel() throws {
        let keys = [
            "input_blocks.0.0.weight", "input_blocks.1.0.in_layers.0.weight", "input_blocks.1.1.norm.weight",
            "input_blocks.2.0.op.weight", "input_blocks.3.0.in_layers.0.weight",
            "output_blocks.0.0.in_layers.0.weight", "output_blocks.1.0.in_layers.0.weight", "output_blocks.1.1.conv.weight",
            "output_blocks.2.0.in_layers.0.weight", "output_blocks.2.1.norm.weight", "output_blocks.3.0.in_layers.0.weight",
            "output_blocks.3.1.norm.weight",
        ]
        let conversion = try UNetKeyConversion.convert(keys)
        assertRenames(
            conversion,
            [
                "input_blocks.2.0.op.weight": "down_blocks.0.downsamplers.0.conv.weight",
                "input_blocks.3.0.in_layers.0.weight": "down_blocks.1.resnets.0.norm1.weight",
                "output_blocks.1.1.conv.weight": "up_blocks.0.upsamplers.0.conv.weight",
                "output_blocks.2.0.in_layers.0.weight": "up_blocks.1.resnets.0.norm1.weight",
                "output_blocks.3.1.norm.weight": "up_blocks.1.attentions.1.norm.weight",
            ])
        let layout = try LDMUNetLayout(keys: keys)
        XCTAssertEqual(layout.downLayers, [1, 1])
        XCTAssertEqual(layout.upLayers, [2, 2])
    }

    func testUnknownUNetKeysAreReportedNotConverted() throws {
        let keys =
            sd15UNetKeys + [
                "input_blocks.1.0.in_layers.1.weight",  // no such module (in_layers.1 is SiLU)
                "input_blocks.1.1.transformer_blocks.0.attn3.to_q.weight",
                "middle_block.3.in_layers.0.weight",
                "input_hint_block.0.weight",
            ]
        let conversion = try UNetKeyConversion.convert(keys)
        XCTAssertEqual(
            conversion.unconverted,
            [
                "input_blocks.1.0.in_layers.1.weight", "input_blocks.1.1.transformer_blocks.0.attn3.to_q.weight",
                "input_hint_block.0.weight", "middle_block.3.in_layers.0.weight",
            ])
        XCTAssertEqual(conversion.recipes.count, sd15UNetKeys.count)
    }

    func testInconsistentUNetLayoutIsAnError() {
        // input_blocks.2 missing; output path with fewer levels than the input path.
        XCTAssertThrowsError(
            try LDMUNetLayout(keys: [
                "input_blocks.0.0.weight", "input_blocks.1.0.in_layers.0.weight",
                "input_blocks.3.0.in_layers.0.weight", "output_blocks.0.0.x.weight",
            ])
        ) {
            XCTAssertTrue("\($0)".contains("input_blocks must be numbered 0, 1, 2"), "\($0)")
        }
        XCTAssertThrowsError(
            try LDMUNetLayout(keys: [
                "input_blocks.0.0.weight", "input_blocks.1.0.in_layers.0.weight",
                "input_blocks.2.0.op.weight", "input_blocks.3.0.in_layers.0.weight",
                "output_blocks.0.0.in_layers.0.weight", "output_blocks.1.0.in_layers.0.weight",
            ])
        ) {
            XCTAssertTrue("\($0)".contains("2 down levels (input_blocks) but 1 up levels"), "\($0)")
        }
    }

    // MARK: - VAE

    func testVAEKeys() throws {
        var keys = [
            "encoder.conv_in.weight", "encoder.norm_out.bias", "encoder.conv_out.weight", "quant_conv.weight",
            "post_quant_conv.bias", "decoder.conv_in.bias", "decoder.norm_out.weight", "decoder.conv_out.bias",
            "encoder.down.0.block.1.conv1.weight", "encoder.down.1.block.0.nin_shortcut.weight",
            "encoder.down.2.downsample.conv.weight", "encoder.mid.block_1.norm2.bias", "encoder.mid.attn_1.q.weight",
            "encoder.mid.attn_1.norm.weight", "decoder.mid.attn_1.proj_out.bias", "decoder.mid.attn_1.proj_out.weight",
            "decoder.mid.block_2.norm1.weight", "decoder.up.0.block.2.conv2.bias", "decoder.up.3.upsample.conv.weight",
            "decoder.up.1.block.0.nin_shortcut.bias",
        ]
        keys += ["encoder.down.3.block.0.conv1.weight", "decoder.up.2.block.0.conv1.weight"]
        let conversion = try VAEKeyConversion.convert(keys)
        XCTAssertEqual(conversion.unconverted, [])
        assertRenames(
            conversion,
            [
                "encoder.conv_in.weight": "encoder.conv_in.weight",
                "encoder.norm_out.bias": "encoder.conv_norm_out.bias",
                "quant_conv.weight": "quant_conv.weight",
                "decoder.norm_out.weight": "decoder.conv_norm_out.weight",
                "encoder.down.0.block.1.conv1.weight": "encoder.down_blocks.0.resnets.1.conv1.weight",
                "encoder.down.1.block.0.nin_shortcut.weight": "encoder.down_blocks.1.resnets.0.conv_shortcut.weight",
                "encoder.down.2.downsample.conv.weight": "encoder.down_blocks.2.downsamplers.0.conv.weight",
                "encoder.mid.block_1.norm2.bias": "encoder.mid_block.resnets.0.norm2.bias",
                "encoder.mid.attn_1.norm.weight": "encoder.mid_block.attentions.0.group_norm.weight",
                "decoder.mid.attn_1.proj_out.bias": "decoder.mid_block.attentions.0.to_out.0.bias",
                "decoder.mid.block_2.norm1.weight": "decoder.mid_block.resnets.1.norm1.weight",
                // The decoder's blocks are numbered the other way round.
                "decoder.up.0.block.2.conv2.bias": "decoder.up_blocks.3.resnets.2.conv2.bias",
                "decoder.up.1.block.0.nin_shortcut.bias": "decoder.up_blocks.2.resnets.0.conv_shortcut.bias",
                "decoder.up.3.upsample.conv.weight": "decoder.up_blocks.0.upsamplers.0.conv.weight",
            ])
        // The attention's 1x1 convolutions become linear weights.
        XCTAssertEqual(
            conversion.recipes["encoder.mid_block.attentions.0.to_q.weight"], .squeezeConv("encoder.mid.attn_1.q.weight"))
        XCTAssertEqual(
            conversion.recipes["decoder.mid_block.attentions.0.to_out.0.weight"],
            .squeezeConv("decoder.mid.attn_1.proj_out.weight"))
    }

    // MARK: - Text encoders

    func testCLIPKeys() {
        let conversion = TextEncoderKeyConversion.convertCLIP([
            "text_model.encoder.layers.11.self_attn.q_proj.weight", "text_model.final_layer_norm.bias",
            "text_model.embeddings.position_ids", "embeddings.position_embedding.weight", "text_model.pooler.weight",
        ])
        assertRenames(
            conversion,
            [
                "text_model.encoder.layers.11.self_attn.q_proj.weight": "text_model.encoder.layers.11.self_attn.q_proj.weight",
                "text_model.final_layer_norm.bias": "text_model.final_layer_norm.bias",
                // very old exports lack the text_model. level
                "embeddings.position_embedding.weight": "text_model.embeddings.position_embedding.weight",
            ])
        XCTAssertEqual(conversion.ignored, ["text_model.embeddings.position_ids"])
        XCTAssertEqual(conversion.unconverted, ["text_model.pooler.weight"])
    }

    func testOpenCLIPKeys() {
        let keys = [
            "token_embedding.weight", "positional_embedding", "ln_final.weight", "text_projection", "logit_scale",
            "transformer.resblocks.0.attn.in_proj_weight", "transformer.resblocks.0.attn.in_proj_bias",
            "transformer.resblocks.0.attn.out_proj.weight", "transformer.resblocks.5.ln_1.bias",
            "transformer.resblocks.5.ln_2.weight", "transformer.resblocks.5.mlp.c_fc.bias",
            "transformer.resblocks.22.mlp.c_proj.weight", "transformer.resblocks.23.mlp.c_proj.weight",
        ]
        let sd2 = TextEncoderKeyConversion.convertOpenCLIP(keys, layers: 23, projection: false)
        assertRenames(
            sd2,
            [
                "token_embedding.weight": "text_model.embeddings.token_embedding.weight",
                "positional_embedding": "text_model.embeddings.position_embedding.weight",
                "ln_final.weight": "text_model.final_layer_norm.weight",
                "transformer.resblocks.0.attn.out_proj.weight": "text_model.encoder.layers.0.self_attn.out_proj.weight",
                "transformer.resblocks.5.ln_1.bias": "text_model.encoder.layers.5.layer_norm1.bias",
                "transformer.resblocks.5.ln_2.weight": "text_model.encoder.layers.5.layer_norm2.weight",
                "transformer.resblocks.5.mlp.c_fc.bias": "text_model.encoder.layers.5.mlp.fc1.bias",
                "transformer.resblocks.22.mlp.c_proj.weight": "text_model.encoder.layers.22.mlp.fc2.weight",
            ])
        let fused = "transformer.resblocks.0.attn.in_proj_weight"
        XCTAssertEqual(sd2.recipes["text_model.encoder.layers.0.self_attn.q_proj.weight"], .rows(fused, part: 0, parts: 3))
        XCTAssertEqual(sd2.recipes["text_model.encoder.layers.0.self_attn.k_proj.weight"], .rows(fused, part: 1, parts: 3))
        XCTAssertEqual(
            sd2.recipes["text_model.encoder.layers.0.self_attn.v_proj.bias"],
            .rows("transformer.resblocks.0.attn.in_proj_bias", part: 2, parts: 3))
        // SD 2.x: the last layer, the projection and the temperature are not part of the diffusers model.
        XCTAssertEqual(sd2.ignored, ["logit_scale", "text_projection", "transformer.resblocks.23.mlp.c_proj.weight"])
        XCTAssertEqual(sd2.unconverted, [])

        let sdxl = TextEncoderKeyConversion.convertOpenCLIP(keys, layers: nil, projection: true)
        XCTAssertEqual(sdxl.recipes["text_projection.weight"], .transpose("text_projection"))
        XCTAssertEqual(
            sdxl.recipes["text_model.encoder.layers.23.mlp.fc2.weight"], .rename("transformer.resblocks.23.mlp.c_proj.weight"))
        XCTAssertEqual(sdxl.ignored, ["logit_scale"])
    }

    // MARK: - Recipes

    func testRecipesSplitFlattenAndTranspose() throws {
        let source = InMemoryWeights([
            "fused": Tensor(shape: [6, 2], values: (0..<12).map(Float.init)),
            "conv": Tensor(shape: [2, 3, 1, 1], values: (0..<6).map(Float.init)),
            "projection": Tensor(shape: [2, 3], values: (0..<6).map(Float.init)),
            "odd": Tensor(shape: [4, 2], repeating: 0),
        ])
        let weights = ConvertedWeights(
            base: source,
            recipes: [
                "q": .rows("fused", part: 0, parts: 3), "k": .rows("fused", part: 1, parts: 3),
                "v": .rows("fused", part: 2, parts: 3),
                "linear": .squeezeConv("conv"), "projection.weight": .transpose("projection"),
                "bad": .rows("odd", part: 0, parts: 3),
                "same": .rename("projection"),
            ],
            component: "test")
        XCTAssertEqual(weights.names, ["bad", "k", "linear", "projection.weight", "q", "same", "v"])
        XCTAssertEqual(try weights.shape(of: "k"), [2, 2])
        XCTAssertEqual(try weights.tensor("q").scalars, [0, 1, 2, 3])
        XCTAssertEqual(try weights.tensor("k").scalars, [4, 5, 6, 7])
        XCTAssertEqual(try weights.tensor("v").scalars, [8, 9, 10, 11])
        XCTAssertEqual(try weights.shape(of: "linear"), [2, 3])
        XCTAssertEqual(try weights.tensor("linear").scalars, [0, 1, 2, 3, 4, 5])
        XCTAssertEqual(try weights.shape(of: "projection.weight"), [3, 2])
        XCTAssertEqual(try weights.tensor("projection.weight").scalars, [0, 3, 1, 4, 2, 5])
        XCTAssertEqual(try weights.tensor("same").shape, [2, 3])
        XCTAssertThrowsError(try weights.shape(of: "bad")) { XCTAssertTrue("\($0)".contains("cannot be split into 3"), "\($0)") }
        assertWeightsError(["no tensor named 'missing'"]) { try weights.tensor("missing") }
    }

    // MARK: - Detection

    private func shapes(_ names: [String], context: Int = 768) -> ShapeOnlyWeights {
        var shapes: [String: [Int]] = [:]
        for name in names { shapes[name] = name.hasSuffix("attn2.to_k.weight") ? [320, context] : [1] }
        return ShapeOnlyWeights(shapes, description: "test.safetensors")
    }

    func testFamilyDetection() throws {
        let unet = [
            "model.diffusion_model.input_blocks.0.0.weight",
            "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight",
        ]
        typealias Family = SingleFileCheckpoint.Family
        XCTAssertEqual(
            try SingleFileCheckpoint.detectFamily(
                shapes(unet + ["cond_stage_model.transformer.text_model.final_layer_norm.weight"])), Family.sd1)
        XCTAssertEqual(
            try SingleFileCheckpoint.detectFamily(shapes(unet + ["cond_stage_model.model.ln_final.weight"])), Family.sd2)
        XCTAssertEqual(
            try SingleFileCheckpoint.detectFamily(
                shapes(
                    unet + [
                        "conditioner.embedders.0.transformer.text_model.final_layer_norm.weight",
                        "conditioner.embedders.1.model.ln_final.weight",
                    ])), Family.sdxl)
        // No text encoder: the UNet's context width decides.
        XCTAssertEqual(try SingleFileCheckpoint.detectFamily(shapes(unet, context: 768)), Family.sd1)
        XCTAssertEqual(try SingleFileCheckpoint.detectFamily(shapes(unet, context: 1024)), Family.sd2)
        XCTAssertEqual(try SingleFileCheckpoint.detectFamily(shapes(unet, context: 2048)), Family.sdxl)
        XCTAssertEqual(
            try SingleFileCheckpoint.detectFamily(shapes(unet + ["model.diffusion_model.label_emb.0.0.weight"], context: 1)),
            Family.sdxl)
        XCTAssertThrowsError(try SingleFileCheckpoint.detectFamily(shapes(unet, context: 4096))) {
            XCTAssertTrue(
                "\($0)".contains("cross-attention width 4096 is none of 768 (SD 1.x), 1024 (SD 2.x), 2048 (SDXL)"), "\($0)")
        }
        XCTAssertThrowsError(
            try SingleFileCheckpoint.detectFamily(shapes(unet + ["conditioner.embedders.0.model.ln_final.weight"]))
        ) {
            XCTAssertTrue("\($0)".contains("SDXL refiner"), "\($0)")
        }
    }

    func testRandomKeysAreRejectedNamingWhatWasExpected() throws {
        var generator = SystemRandomNumberGenerator()
        var tensors: [String: Tensor] = [:]
        for _ in 0..<20 {
            let name = (0..<3).map { _ in String((0..<6).map { _ in "abcdefghij".randomElement(using: &generator)! }) }
            tensors[name.joined(separator: ".")] = Tensor(shape: [2], repeating: 1)
        }
        let directory = try TemporaryDirectory()
        let url = directory.file("random.safetensors")
        try SafeTensorsWriter.write(tensors, to: url)
        XCTAssertThrowsError(try SingleFileCheckpoint(url: url)) { error in
            let message = "\(error)"
            guard case .unrecognized? = error as? CheckpointError else { return XCTFail("\(error)") }
            for fragment in [
                url.path, "is not a Stable Diffusion single-file checkpoint", "model.diffusion_model.",
                "input_blocks", "first_stage_model.", "cond_stage_model.transformer.", "the file has 20 tensors",
            ] {
                XCTAssertTrue(message.contains(fragment), "\"\(message)\" does not mention \"\(fragment)\"")
            }
        }
    }

    func testDiffusersLayoutAndOtherFilesAreRejected() throws {
        XCTAssertThrowsError(try SingleFileCheckpoint(weights: shapes(["down_blocks.0.resnets.0.conv1.weight"]))) {
            XCTAssertTrue("\($0)".contains("diffusers-layout UNet names"), "\($0)")
        }
        XCTAssertThrowsError(
            try SingleFileCheckpoint(weights: shapes(["model.diffusion_model.double_blocks.0.img_attn.qkv.weight"]))
        ) {
            XCTAssertTrue("\($0)".contains("Flux or SD3"), "\($0)")
        }
        XCTAssertThrowsError(try SingleFileCheckpoint(url: URL(fileURLWithPath: "/tmp/model.ckpt"))) {
            XCTAssertTrue("\($0)".contains("pickle"), "\($0)")
        }
        XCTAssertThrowsError(
            try SingleFileCheckpoint(url: URL(fileURLWithPath: "/nonexistent/model.safetensors"))
        ) { XCTAssertTrue($0 is WeightsError, "\($0)") }
    }

    func testStandardConfigsAreValidJSON() throws {
        for family in SingleFileCheckpoint.Family.allCases {
            for component in family.configComponents {
                let text = try XCTUnwrap(StandardConfigs.json(for: component, family: family), "\(family) \(component)")
                let object = try JSONSerialization.jsonObject(with: Data(text.utf8))
                XCTAssertTrue(object is [String: Any], "\(family) \(component)")
            }
        }
    }
}
