@testable import Adapters
import Compute
import Foundation
import Models
import ParityTesting
import Weights
import XCTest

/// LoRA formats, key maps and both application modes against diffusers + PEFT
/// (tools/parity/make_lora_goldens.py), on the tiny SD 1.x UNet of components/unet_sd1.
final class LoRAParityTests: XCTestCase {
    private struct Fixture {
        let unet: UNet2DConditionModel
        let sample: Tensor
        let timesteps: [Float]
        let conditioning: UNetConditioning
        let reference: Golden

        func run() throws -> Tensor { try unet(sample, timesteps: timesteps, conditioning: conditioning) }
        var targets: LoRATargets { LoRATargets(registries: [.unet: unet.registry], unetLayersPerBlock: 1) }
        func expected(_ name: String) throws -> Tensor { try reference.expectedImage(name) }
    }

    private func fixture() throws -> Fixture {
        let golden = try Golden("components/unet_sd1")
        let unet = try UNet2DConditionModel(configData: Data(try golden.string("config").utf8), weights: golden.params)
        return Fixture(
            unet: unet, sample: try golden.image("sample"), timesteps: try golden.input("timestep").scalars,
            conditioning: UNetConditioning(context: try golden.input("encoder_hidden_states")), reference: try Golden("lora/reference"))
    }

    private func loraURL(_ name: String) -> URL { Golden.fixturesDirectory.appendingPathComponent("lora/\(name)") }

    func testEveryFormatMergedMatchesDiffusers() throws {
        let f = try fixture()
        assertClose(try f.run(), try f.expected("base"), tolerance: 5e-5, "no LoRA")
        for (file, format) in [("a_kohya.safetensors", LoRAFormat.kohya), ("a_diffusers.safetensors", .diffusers), ("a_peft/adapter_model.safetensors", .peft)] {
            let network = try LoRANetwork.load(contentsOf: loraURL(file))
            XCTAssertEqual(network.format, format, file)
            let resolved = try LoRAKeyMap.resolve(network, targets: f.targets)
            XCTAssertEqual(resolved.unmatched, [], file)
            XCTAssertEqual(resolved.entries.count, network.modules.count)
            let patcher = LoRAPatcher()
            patcher.merge([LoRAApplication(resolved, weight: 1)])
            assertClose(try f.run(), try f.expected("a"), tolerance: 1e-4, "merged \(file)")
            patcher.restore()
        }
    }

    func testRuntimeModeMatchesDiffusers() throws {
        let f = try fixture()
        let resolved = try LoRAKeyMap.resolve(try LoRANetwork.load(contentsOf: loraURL("a_kohya.safetensors")), targets: f.targets)
        let patcher = LoRAPatcher()
        patcher.attachRuntime([LoRAApplication(resolved)])
        assertClose(try f.run(), try f.expected("a"), tolerance: 1e-4, "runtime a")
        patcher.detachRuntime()
        assertClose(try f.run(), try f.expected("base"), tolerance: 5e-5, "runtime detached")
    }

    func testTwoLoRAsWithWeightsSumTheirDeltas() throws {
        let f = try fixture()
        let a = try LoRAKeyMap.resolve(try LoRANetwork.load(contentsOf: loraURL("a_kohya.safetensors")), targets: f.targets)
        let b = try LoRAKeyMap.resolve(try LoRANetwork.load(contentsOf: loraURL("b_kohya.safetensors")), targets: f.targets)
        let applications = [LoRAApplication(a, weight: 0.7), LoRAApplication(b, weight: -0.4)]
        let patcher = LoRAPatcher()
        patcher.merge(applications)
        assertClose(try f.run(), try f.expected("ab"), tolerance: 1e-4, "merged a*0.7 + b*-0.4")
        patcher.restore()
        patcher.attachRuntime(applications)
        assertClose(try f.run(), try f.expected("ab"), tolerance: 1e-4, "runtime a*0.7 + b*-0.4")
        patcher.reset()
    }

    func testMergeThenRestoreIsBitwiseIdentical() throws {
        let f = try fixture()
        let layers = f.unet.registry.linears.values.map(\.weight) + f.unet.registry.convs.values.map(\.weight)
        let originals = layers.map { $0.copy() }
        let network = try LoRANetwork.load(contentsOf: loraURL("a_kohya.safetensors"))
        let patcher = LoRAPatcher()
        for _ in 0..<3 {
            patcher.merge([LoRAApplication(try LoRAKeyMap.resolve(network, targets: f.targets), weight: 0.9)])
            XCTAssertGreaterThan(patcher.mergedLayerCount, 0)
            XCTAssertFalse(zip(layers, originals).allSatisfy { $0.isBitwiseEqual(to: $1) }, "merging changed nothing")
            patcher.restore()
            for (layer, original) in zip(layers, originals) { XCTAssertTrue(layer.isBitwiseEqual(to: original)) }
        }
    }

    /// Merging patches small weights side by side on the pool's threads: the weights are bitwise those of a one-thread
    /// merge (each weight's deltas are added in the same order), for two LoRAs that touch the same layers.
    func testMergeOnTwoThreadsEqualsOneThread() throws {
        let f = try fixture()
        let layers = f.unet.registry.linears.values.map(\.weight) + f.unet.registry.convs.values.map(\.weight)
        let a = try LoRAKeyMap.resolve(try LoRANetwork.load(contentsOf: loraURL("a_kohya.safetensors")), targets: f.targets)
        let b = try LoRAKeyMap.resolve(try LoRANetwork.load(contentsOf: loraURL("b_kohya.safetensors")), targets: f.targets)
        let applications = [LoRAApplication(a, weight: 0.7), LoRAApplication(b, weight: -0.4)]
        func mergedWeights(threads: Int) -> [Tensor] {
            let pool = ComputePool(threadCount: threads)
            defer { pool.shutDown() }
            let patcher = LoRAPatcher()
            return ComputePool.run(on: pool) {
                patcher.merge(applications)
                defer { patcher.restore() }
                return layers.map { $0.copy() }
            }
        }
        let one = mergedWeights(threads: 1), two = mergedWeights(threads: 2)
        XCTAssertTrue(zip(one, two).allSatisfy { $0.isBitwiseEqual(to: $1) })
        XCTAssertFalse(zip(one, layers).allSatisfy { $0.isBitwiseEqual(to: $1) }, "merging changed nothing")
    }

    func testUnmatchedKeysAreReportedAndShapeMismatchesAreErrors() throws {
        let f = try fixture()
        let down = Tensor(shape: [2, 8], repeating: 0.1), up = Tensor(shape: [8, 2], repeating: 0.1)
        let stray = InMemoryWeights([
            "lora_unet_down_blocks_7_attentions_0_proj_in.lora_down.weight": down,
            "lora_unet_down_blocks_7_attentions_0_proj_in.lora_up.weight": up,
        ])
        let resolved = try LoRAKeyMap.resolve(try LoRANetwork.parse(stray, source: "stray"), targets: f.targets)
        XCTAssertEqual(resolved.unmatched, ["unet: down_blocks_7_attentions_0_proj_in"])
        let wrong = InMemoryWeights([
            "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight": Tensor(shape: [2, 5], repeating: 0),
            "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_up.weight": Tensor(shape: [8, 2], repeating: 0),
        ])
        XCTAssertThrowsError(try LoRAKeyMap.resolve(try LoRANetwork.parse(wrong, source: "wrong"), targets: f.targets)) { error in
            XCTAssertTrue("\(error)".contains("down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"), "\(error)")
        }
        XCTAssertThrowsError(try LoRANetwork.parse(InMemoryWeights(["model.weight": down]), source: "not-a-lora"))
    }

    func testSGMNamesMapToDiffusers() {
        // kohya SDXL LoRAs use the original block layout; layers_per_block 2 as in SDXL.
        let cases = [
            ("input_blocks_4_1_transformer_blocks_0_attn1_to_k", "down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_k"),
            ("input_blocks_5_0_in_layers_2", "down_blocks_1_resnets_1_conv1"),
            ("input_blocks_3_0_op", "down_blocks_0_downsamplers_0_conv"),
            ("middle_block_1_proj_in", "mid_block_attentions_0_proj_in"),
            ("middle_block_2_emb_layers_1", "mid_block_resnets_1_time_emb_proj"),
            ("output_blocks_2_1_conv", "up_blocks_0_upsamplers_0_conv"),
            ("output_blocks_5_1_transformer_blocks_1_ff_net_2", "up_blocks_1_attentions_2_transformer_blocks_1_ff_net_2"),
            ("output_blocks_4_0_skip_connection", "up_blocks_1_resnets_1_conv_shortcut"),
            ("input_blocks_0_0", "conv_in"),
            ("label_emb_0_0", "add_embedding_linear_1"),
        ]
        for (sgm, diffusers) in cases {
            XCTAssertEqual(SGMNames.toDiffusers(sgm, layersPerBlock: 2), diffusers, sgm)
        }
    }
}
