import Compute
import Foundation
import Models
import ParityTesting
import Weights
import XCTest

/// CLIP text encoders against transformers (tools/parity/make_text_goldens.py), fp32.
final class CLIPTextModelTests: XCTestCase {
    static let tolerance: Float = 1e-5

    /// The golden, its config (from the `config` metadata, the model's config.json) and its token ids.
    func fixture(_ name: String) throws -> (Golden, Data, [[Int]]) {
        let golden = try Golden("text/\(name)")
        let ids = try golden.input("ids")
        let (batch, tokens) = (ids.shape[0], ids.shape[1])
        let values = ids.scalars.map { Int($0) }
        let rows = (0..<batch).map { Array(values[($0 * tokens)..<(($0 + 1) * tokens)]) }
        return (golden, Data(try golden.string("config").utf8), rows)
    }

    func testCLIPTextModels() throws {
        for name in ["clip_text_quick_gelu", "clip_text_legacy_eos", "clip_text_gelu"] {
            let (golden, config, ids) = try fixture(name)
            let model = try CLIPTextModel(configData: config, weights: golden.params, source: "\(name) config")
            let output = try model(ids)
            assertClose(
                output.lastHiddenState, try golden.output("last_hidden_state"), tolerance: Self.tolerance,
                "\(name) last_hidden_state")
            assertClose(
                output.pooledOutput, try golden.output("pooler_output"), tolerance: Self.tolerance, "\(name) pooler_output")
            XCTAssertEqual(output.hiddenStates.count, model.configuration.numHiddenLayers + 1)
            for (i, state) in output.hiddenStates.enumerated() where golden.file.contains("output.hidden_states.\(i)") {
                assertClose(
                    state, try golden.output("hidden_states.\(i)"), tolerance: Self.tolerance, "\(name) hidden_states.\(i)")
            }
            for skip in 0..<model.configuration.numHiddenLayers where golden.file.contains("output.clip_skip.\(skip)") {
                let encoded = try model.encode(ids, layer: .stableDiffusion(clipSkip: skip))
                assertClose(
                    encoded.hiddenStates, try golden.output("clip_skip.\(skip)"), tolerance: Self.tolerance,
                    "\(name) clip_skip \(skip)")
                XCTAssertNil(encoded.textEmbeds)
            }
            let plain = try model.encode(ids)
            XCTAssertTrue(plain.hiddenStates.isBitwiseEqual(to: output.lastHiddenState), "clip skip nil is last_hidden_state")
        }
    }

    func testCLIPTextModelWithProjection() throws {
        let name = "clip_text_with_projection"
        let (golden, config, ids) = try fixture(name)
        let model = try CLIPTextModelWithProjection(configData: config, weights: golden.params, source: "\(name) config")
        let (output, textEmbeds) = try model(ids)
        assertClose(
            output.lastHiddenState, try golden.output("last_hidden_state"), tolerance: Self.tolerance, "\(name) last_hidden_state"
        )
        assertClose(output.pooledOutput, try golden.output("pooler_output"), tolerance: Self.tolerance, "\(name) pooler_output")
        assertClose(textEmbeds, try golden.output("text_embeds"), tolerance: Self.tolerance, "\(name) text_embeds")
        // SDXL: hidden_states[-2] without the final norm, and text_embeds as the pooled prompt embedding.
        let encoded = try model.encode(ids, layer: .stableDiffusionXL(clipSkip: nil))
        assertClose(
            encoded.hiddenStates, try golden.output("hidden_states.1"), tolerance: Self.tolerance, "\(name) SDXL penultimate")
        let embeds = try XCTUnwrap(encoded.textEmbeds)
        XCTAssertTrue(embeds.isBitwiseEqual(to: textEmbeds))
        XCTAssertEqual(embeds.shape, [2, 24])
        XCTAssertTrue(model.registry.linears.keys.contains("text_projection"))
    }

    /// The two pooling rules pick different positions on the golden inputs, so the pooled parity above
    /// would fail with the wrong rule; check the positions themselves too.
    func testPoolingPositionsFollowTransformersRule() throws {
        let (modernGolden, modernConfig, modernIds) = try fixture("clip_text_quick_gelu")
        let modern = try CLIPTextModel(configData: modernConfig, weights: modernGolden.params)
        XCTAssertEqual(modern.configuration.eosTokenID, 500)
        XCTAssertEqual(modernIds.map(modern.eosPosition(in:)), [9, 40], "first position holding eos_token_id")

        let (legacyGolden, legacyConfig, legacyIds) = try fixture("clip_text_legacy_eos")
        let legacy = try CLIPTextModel(configData: legacyConfig, weights: legacyGolden.params)
        XCTAssertEqual(legacy.configuration.eosTokenID, 2)
        XCTAssertEqual(legacyIds.map(legacy.eosPosition(in:)), [12, 30], "argmax of the ids, first of ties")
    }

    /// Files with and without the `text_model.` prefix load, and layer paths always carry it.
    func testWeightNamesWithAndWithoutPrefix() throws {
        let (plainGolden, plainConfig, _) = try fixture("clip_text_quick_gelu")
        XCTAssertTrue(plainGolden.file.contains("param.embeddings.token_embedding.weight"))
        let plain = try CLIPTextModel(configData: plainConfig, weights: plainGolden.params)
        let (prefixedGolden, prefixedConfig, _) = try fixture("clip_text_legacy_eos")
        XCTAssertTrue(prefixedGolden.file.contains("param.text_model.embeddings.token_embedding.weight"))
        let prefixed = try CLIPTextModel(configData: prefixedConfig, weights: prefixedGolden.params)
        for model in [plain, prefixed] {
            XCTAssertTrue(model.registry.linears.keys.contains("text_model.encoder.layers.1.self_attn.q_proj"))
            XCTAssertEqual(model.registry.linears.count, 2 * 6)
            // The kohya spelling LoRAs are resolved by, with and without the prefix, for every layer.
            let index = model.registry.pathsByUnderscoredName
            XCTAssertEqual(index["text_model_encoder_layers_1_self_attn_q_proj"], "text_model.encoder.layers.1.self_attn.q_proj")
            XCTAssertEqual(index["encoder_layers_1_self_attn_q_proj"], "text_model.encoder.layers.1.self_attn.q_proj")
            XCTAssertEqual(Set(index.values), Set(model.registry.layerPaths))
        }
        XCTAssertThrowsError(try CLIPTextModel(configData: plainConfig, weights: InMemoryWeights([:]))) { error in
            XCTAssertTrue("\(error)".contains("token_embedding"), "\(error)")
        }
    }

    /// A diffusers `text_encoder/` folder: config.json + model.safetensors.
    func testLoadsFromComponentFolder() throws {
        let (golden, config, ids) = try fixture("clip_text_legacy_eos")
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("clip-text-encoder-\(getpid())")
        try? FileManager.default.removeItem(at: folder)
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        try config.write(to: folder.appendingPathComponent("config.json"))
        let params = golden.params
        let tensors = try Dictionary(uniqueKeysWithValues: params.names.map { ($0, try params.tensor($0)) })
        try SafeTensorsWriter.write(tensors, to: folder.appendingPathComponent("model.safetensors"))
        let model = try CLIPTextModel(component: ComponentFolder(folder))
        assertClose(
            try model(ids).lastHiddenState, try golden.output("last_hidden_state"), tolerance: Self.tolerance, "component folder")
    }

    func testConfigDefaultsAndErrors() throws {
        let sd2 = try decodeConfig(
            CLIPTextConfiguration.self,
            from: Data(
                #"{"hidden_act": "gelu", "hidden_size": 1024, "intermediate_size": 4096, "num_attention_heads": 16, "num_hidden_layers": 23, "projection_dim": 512, "eos_token_id": 2, "architectures": ["CLIPTextModel"]}"#
                    .utf8),
            source: "sd2")
        XCTAssertEqual(try sd2.activation, .gelu)
        XCTAssertEqual(sd2.maxPositionEmbeddings, 77)
        XCTAssertEqual(sd2.vocabSize, 49408)
        XCTAssertEqual(sd2.layerNormEps, 1e-5)
        XCTAssertEqual(sd2.architecture, "CLIPTextModel")

        let nested = try decodeConfig(
            CLIPTextConfiguration.self, from: Data(#"{"text_config": {"hidden_size": 64, "eos_token_id": [7]}}"#.utf8),
            source: "clip")
        XCTAssertEqual(nested.hiddenSize, 64)
        XCTAssertEqual(nested.eosTokenID, 7)

        let (golden, config, ids) = try fixture("clip_text_gelu")
        var object = try XCTUnwrap(JSONSerialization.jsonObject(with: config) as? [String: Any])
        object["hidden_act"] = "relu"
        let reluConfig = try JSONSerialization.data(withJSONObject: object)
        XCTAssertThrowsError(try CLIPTextModel(configData: reluConfig, weights: golden.params)) { error in
            XCTAssertEqual(
                error as? ModelError,
                .unsupported(
                    "CLIP text encoder hidden_act 'relu' (supported: quick_gelu, gelu, gelu_new, gelu_pytorch_tanh)"))
        }

        let model = try CLIPTextModel(configData: config, weights: golden.params)
        XCTAssertThrowsError(try model([ids[0], Array(ids[1].prefix(10))]), "ragged batch")
        XCTAssertThrowsError(try model([ids[0] + [1]]), "78 tokens")
        XCTAssertThrowsError(try model([[0, 256, 1]]), "id outside the vocabulary of 256")
        XCTAssertThrowsError(try model.encode(ids, layer: .stableDiffusion(clipSkip: 3)), "only 2 layers")
        XCTAssertNoThrow(try model([Array(ids[0].prefix(5))]), "shorter sequences use the first positions")
    }
}
