import Compute
import Models
import ParityTesting
import Weights
import XCTest

/// Each diffusers building block against its golden (tools/parity/make_block_goldens.py), fp32.
final class BlockParityTests: XCTestCase {
    /// Loads `blocks/<name>` and returns the golden, a loader over its parameters and its attrs.
    private func fixture(_ name: String) throws -> (Golden, ModuleLoader, Attributes) {
        let golden = try Golden("blocks/\(name)")
        return (golden, ModuleLoader(weights: golden.params), try Attributes(golden))
    }

    func testResnetWithTimeEmbedding() throws {
        for name in ["resnet_temb", "resnet_temb_shortcut"] {
            let (golden, loader, attrs) = try fixture(name)
            let block = try ResnetBlock2D(
                loader, inChannels: attrs.int("in_channels"), outChannels: attrs.int("out_channels"),
                timeEmbeddingChannels: attrs.int("temb_channels"), groups: attrs.int("groups"), epsilon: attrs.float("eps"))
            let y = block(try golden.image("hidden_states"), timeEmbedding: try golden.input("temb"))
            assertClose(y, try golden.expectedImage("hidden_states"), tolerance: 2e-5, name)
        }
    }

    func testResnetWithoutTimeEmbedding() throws {
        for name in ["resnet_vae", "resnet_vae_shortcut"] {
            let (golden, loader, attrs) = try fixture(name)
            let block = try ResnetBlock2D(
                loader, inChannels: attrs.int("in_channels"), outChannels: attrs.int("out_channels"),
                timeEmbeddingChannels: nil, groups: attrs.int("groups"), epsilon: attrs.float("eps"))
            assertClose(block(try golden.image("hidden_states"), timeEmbedding: nil), try golden.expectedImage("hidden_states"), tolerance: 2e-5, name)
        }
    }

    /// A block given its input (`consume`) reuses it and gives the same result, bitwise, as when the caller keeps it;
    /// a kept input is not written.
    func testResnetReusesAnInputItIsGiven() throws {
        for name in ["resnet_temb", "resnet_temb_shortcut", "resnet_vae", "resnet_vae_shortcut"] {
            let (golden, loader, attrs) = try fixture(name)
            let timeEmbeddingChannels = name.hasPrefix("resnet_temb") ? try attrs.int("temb_channels") : nil
            let block = try ResnetBlock2D(
                loader, inChannels: attrs.int("in_channels"), outChannels: attrs.int("out_channels"),
                timeEmbeddingChannels: timeEmbeddingChannels, groups: attrs.int("groups"), epsilon: attrs.float("eps"))
            let timeEmbedding = try timeEmbeddingChannels.map { _ in try golden.input("temb") }
            let input = try golden.image("hidden_states")
            let pristine = input.copy()
            let kept = block(input, timeEmbedding: timeEmbedding)
            XCTAssertTrue(input.isBitwiseEqual(to: pristine), "\(name): a kept input is not written")
            let given = input.copy()
            let address = given.withUnsafeBufferPointer { $0.baseAddress }
            let reused = block(consume given, timeEmbedding: timeEmbedding)
            XCTAssertTrue(reused.isBitwiseEqual(to: kept), name)
            if try attrs.int("in_channels") == attrs.int("out_channels") {
                XCTAssertEqual(reused.withUnsafeBufferPointer { $0.baseAddress }, address, "\(name): the residual is the given input")
            }
            assertClose(reused, try golden.expectedImage("hidden_states"), tolerance: 2e-5, name)
        }
    }

    func testVAEAttention() throws {
        let (golden, loader, attrs) = try fixture("vae_attention")
        let block = try Attention(
            loader, queryDim: attrs.int("query_dim"), heads: attrs.int("heads"), headDim: attrs.int("dim_head"), bias: true,
            groupNormGroups: attrs.int("norm_num_groups"), groupNormEpsilon: attrs.float("eps"), residualConnection: true)
        assertClose(block(try golden.image("hidden_states")), try golden.expectedImage("hidden_states"), tolerance: 2e-5, "vae_attention")
    }

    func testVAEMidBlock() throws {
        let (golden, loader, attrs) = try fixture("vae_mid_block")
        let block = try UNetMidBlock2D(
            loader, channels: attrs.int("in_channels"), groups: attrs.int("resnet_groups"), epsilon: attrs.float("resnet_eps"),
            attentionHeadDim: attrs.int("attention_head_dim"))
        assertClose(block(try golden.image("hidden_states")), try golden.expectedImage("hidden_states"), tolerance: 3e-5, "vae_mid_block")
    }

    func testBasicTransformerBlock() throws {
        let (golden, loader, attrs) = try fixture("basic_transformer_block")
        let block = try BasicTransformerBlock(
            loader, dim: attrs.int("dim"), heads: attrs.int("num_attention_heads"), headDim: attrs.int("attention_head_dim"),
            contextDim: attrs.int("cross_attention_dim"))
        let y = block(try golden.input("hidden_states"), context: try golden.input("encoder_hidden_states"))
        assertClose(y, try golden.output("hidden_states"), tolerance: 3e-5, "basic_transformer_block")
    }

    func testTransformer2DModel() throws {
        for name in ["transformer2d_conv_proj", "transformer2d_linear_proj"] {
            let (golden, loader, attrs) = try fixture(name)
            let model = try Transformer2DModel(
                loader, channels: attrs.int("in_channels"), heads: attrs.int("num_attention_heads"),
                headDim: attrs.int("attention_head_dim"), layers: attrs.int("num_layers"),
                contextDim: attrs.int("cross_attention_dim"), groups: attrs.int("norm_num_groups"),
                useLinearProjection: attrs.bool("use_linear_projection"))
            let y = model(try golden.image("hidden_states"), context: try golden.input("encoder_hidden_states"))
            assertClose(y, try golden.expectedImage("hidden_states"), tolerance: 3e-5, name)
        }
    }

    func testTimestepEmbeddingMLP() throws {
        let (golden, loader, attrs) = try fixture("timestep_embedding_mlp")
        let mlp = try TimestepEmbedding(loader, inChannels: attrs.int("in_channels"), embedDim: attrs.int("time_embed_dim"))
        let sinusoid = Timesteps(channels: try attrs.int("in_channels"), flipSinToCos: true, downscaleFreqShift: 0)(
            try golden.input("timesteps").scalars)
        assertClose(sinusoid, try golden.input("sample"), tolerance: 1e-4, "timestep sinusoid")
        assertClose(mlp(try golden.input("sample")), try golden.output("temb"), tolerance: 2e-5, "timestep_embedding_mlp")
    }

    func testDownsampleAndUpsample() throws {
        for name in ["downsample_conv_p0", "downsample_conv_p1"] {
            let (golden, loader, attrs) = try fixture(name)
            let block = try Downsample2D(loader, channels: attrs.int("channels"), padding: attrs.int("padding"))
            assertClose(block(try golden.image("hidden_states")), try golden.expectedImage("hidden_states"), tolerance: 2e-5, name)
        }
        let (golden, loader, attrs) = try fixture("upsample_conv")
        let block = try Upsample2D(loader, channels: attrs.int("channels"))
        assertClose(block(try golden.image("hidden_states")), try golden.expectedImage("hidden_states"), tolerance: 2e-5, "upsample_conv")
    }

    func testDownBlocks() throws {
        for name in ["down_block_2d", "cross_attn_down_block_2d", "down_encoder_block_2d"] {
            let (golden, loader, attrs) = try fixture(name)
            let crossAttention = attrs.has("cross_attention_dim")
                ? CrossAttentionSettings(
                    heads: try attrs.int("num_attention_heads"), transformerLayers: try attrs.int("transformer_layers_per_block"),
                    contextDim: try attrs.int("cross_attention_dim"), useLinearProjection: try attrs.bool("use_linear_projection"))
                : nil
            let temb = attrs.has("temb_channels") ? try attrs.int("temb_channels") : nil
            let block = try UNetDownBlock(
                loader, inChannels: attrs.int("in_channels"), outChannels: attrs.int("out_channels"), layers: attrs.int("num_layers"),
                timeEmbeddingChannels: temb, groups: attrs.int("resnet_groups"), epsilon: attrs.float("resnet_eps"),
                addDownsample: attrs.bool("add_downsample"), downsamplePadding: attrs.int("downsample_padding"),
                crossAttention: crossAttention)
            let (y, states) = block(
                try golden.image("hidden_states"), timeEmbedding: temb == nil ? nil : try golden.input("temb"),
                context: crossAttention == nil ? nil : try golden.input("encoder_hidden_states"))
            assertClose(y, try golden.expectedImage("hidden_states"), tolerance: 5e-5, name)
            if golden.file.contains("output.states.0") {
                XCTAssertEqual(states.count, block.layerCount + 1)
                for (i, state) in states.enumerated() {
                    assertClose(state, nchwToNHWC(try golden.output("states.\(i)")), tolerance: 5e-5, "\(name) states.\(i)")
                }
            }
        }
    }

    func testUpBlocks() throws {
        for name in ["up_block_2d", "cross_attn_up_block_2d"] {
            let (golden, loader, attrs) = try fixture(name)
            let crossAttention = attrs.has("cross_attention_dim")
                ? CrossAttentionSettings(
                    heads: try attrs.int("num_attention_heads"), transformerLayers: try attrs.int("transformer_layers_per_block"),
                    contextDim: try attrs.int("cross_attention_dim"), useLinearProjection: try attrs.bool("use_linear_projection"))
                : nil
            let block = try UNetUpBlock(
                loader, inChannels: attrs.int("in_channels"), previousOutputChannels: attrs.int("prev_output_channel"),
                outChannels: attrs.int("out_channels"), layers: attrs.int("num_layers"), timeEmbeddingChannels: attrs.int("temb_channels"),
                groups: attrs.int("resnet_groups"), epsilon: attrs.float("resnet_eps"), addUpsample: attrs.bool("add_upsample"),
                crossAttention: crossAttention)
            let skips = try (0..<block.layerCount).map { try golden.image("res.\($0)") }
            let y = block(
                try golden.image("hidden_states"), skips: skips, timeEmbedding: try golden.input("temb"),
                context: crossAttention == nil ? nil : try golden.input("encoder_hidden_states"))
            assertClose(y, try golden.expectedImage("hidden_states"), tolerance: 5e-5, name)
        }
    }

    func testMidBlockCrossAttention() throws {
        let (golden, loader, attrs) = try fixture("mid_block_cross_attn")
        let block = try UNetMidBlock2DCrossAttn(
            loader, channels: attrs.int("in_channels"), timeEmbeddingChannels: attrs.int("temb_channels"),
            groups: attrs.int("resnet_groups"), epsilon: attrs.float("resnet_eps"), layers: attrs.int("num_layers"),
            crossAttention: CrossAttentionSettings(
                heads: attrs.int("num_attention_heads"), transformerLayers: attrs.int("transformer_layers_per_block"),
                contextDim: attrs.int("cross_attention_dim"), useLinearProjection: attrs.bool("use_linear_projection")))
        let y = block(try golden.image("hidden_states"), timeEmbedding: try golden.input("temb"), context: try golden.input("encoder_hidden_states"))
        assertClose(y, try golden.expectedImage("hidden_states"), tolerance: 5e-5, "mid_block_cross_attn")
    }

    func testUpDecoderBlock() throws {
        let (golden, loader, attrs) = try fixture("up_decoder_block_2d")
        let block = try UpDecoderBlock2D(
            loader, inChannels: attrs.int("in_channels"), outChannels: attrs.int("out_channels"), layers: attrs.int("num_layers"),
            groups: attrs.int("resnet_groups"), epsilon: attrs.float("resnet_eps"), addUpsample: attrs.bool("add_upsample"))
        assertClose(block(try golden.image("hidden_states")), try golden.expectedImage("hidden_states"), tolerance: 3e-5, "up_decoder_block_2d")
    }
}
