@testable import Adapters
import Compute
import Models
import Foundation
import ParityTesting
import Weights
import XCTest

/// `LoRAPatcher.merge` with several LoRAs on one weight, both ways it can add them: one product of the stacked factors
/// (where the weight is the larger operand) or one product per LoRA (where the factors are). Both give
/// W + Σ s_i up_i down_i, and the restore is bitwise.
final class LoRAMergeTests: XCTestCase {
    private func lora(_ layer: Linear, rank: Int, seed: UInt64, alpha: Float, format: StoredTensor.Format) -> ResolvedLoRA {
        let down = seededTensor([rank, layer.inFeatures], seed: seed), up = seededTensor([layer.outFeatures, rank], seed: seed + 1)
        let entry = ResolvedLoRA.Entry(
            component: .unet, layer: .linear(layer), down: stored(down, format), up: stored(up, format), scale: alpha / Float(rank))
        return ResolvedLoRA(source: "rank \(rank)", entries: [entry], unmatched: [])
    }

    /// `tensor` as fp32 (sharing its memory) or rounded to fp16.
    private func stored(_ tensor: Tensor, _ format: StoredTensor.Format) -> StoredTensor {
        guard format == .float16 else { return StoredTensor(tensor) }
        let bits = tensor.scalars.map { Float16($0).bitPattern }
        return bits.withUnsafeBytes { StoredTensor(copying: $0, format: .float16, shape: tensor.shape) }
    }

    func testSeveralLoRAsOnOneWeightAddEachProductEitherWay() {
        // (outputs, ranks): Σr below the outputs stacks; Σr at or above them adds one product per LoRA (the fp16 downs
        // read as stored).
        for format in [StoredTensor.Format.float32, .float16] {
            for (outputs, ranks) in [(24, [2, 3]), (8, [6, 5]), (16, [16, 4, 4]), (48, [4, 8, 4])] {
                let layer = Linear(path: "layer", weight: seededTensor([outputs, 40], seed: 1), bias: nil)
                let loras = ranks.enumerated().map {
                    lora(layer, rank: $0.element, seed: 10 * UInt64($0.offset + 1), alpha: 0.5 * Float($0.offset + 1), format: format)
                }
                let weights: [Float] = [0.8, -0.6, 1.2].prefix(ranks.count).map { $0 }
                let updates = zip(loras, weights).map { lora, weight in
                    (up: lora.entries[0].up, down: lora.entries[0].down, scale: weight * lora.entries[0].scale)
                }
                let stacks = ranks.reduce(0, +) < outputs * (ranks.count - 1)
                XCTAssertEqual(LoRAPatcher.stacks(updates, rows: outputs), stacks, "\(format) \(outputs) \(ranks)")
                var expected = layer.weight.copy()
                for update in updates { expected = expected + matmul(update.up.float32(), update.down.float32()) * update.scale }
                let original = layer.weight.copy()
                let patcher = LoRAPatcher()
                patcher.merge(zip(loras, weights).map { LoRAApplication($0, weight: $1) })
                XCTAssertLessThan(layer.weight.maxAbsDifference(expected), 1e-5, "\(format), \(outputs) outputs, ranks \(ranks)")
                patcher.restore()
                XCTAssertTrue(layer.weight.isBitwiseEqual(to: original), "restored bitwise")
            }
        }
    }

    /// An fp16 LoRA (a linear and a 3x3 conv module) stays fp16 as it loads, holds its file's bytes instead of twice that,
    /// and merges bitwise as the same LoRA written as fp32 does: the merge widens each factor exactly.
    func testAnFP16LoRAStaysNarrowAndMergesAsItsValuesInFP32() throws {
        let golden = try Golden("components/unet_sd1")
        let unet = try UNet2DConditionModel(configData: Data(try golden.string("config").utf8), weights: golden.params)
        let targets = LoRATargets(registries: [.unet: unet.registry], unetLayersPerBlock: 1)
        let linear = try XCTUnwrap(unet.registry.linears["down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"])
        let conv = try XCTUnwrap(unet.registry.convs["down_blocks.0.resnets.0.conv1"])
        let rank = 4
        let tensors: [String: Tensor] = [
            "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight": seededTensor([rank, linear.inFeatures], seed: 1),
            "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_up.weight": seededTensor([linear.outFeatures, rank], seed: 2),
            "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.alpha": Tensor(scalar: 2),
            "lora_unet_down_blocks_0_resnets_0_conv1.lora_down.weight": seededTensor([rank, conv.inChannels, 3, 3], seed: 3),
            "lora_unet_down_blocks_0_resnets_0_conv1.lora_up.weight": seededTensor([conv.outChannels, rank, 1, 1], seed: 4),
        ]
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("lora-fp16-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let halfURL = folder.appendingPathComponent("half.safetensors"), wideURL = folder.appendingPathComponent("wide.safetensors")
        try SafeTensorsWriter.write(tensors, precision: .float16, to: halfURL)
        // The same values in fp32: the fp16 file's, widened.
        let halfFile = try SafeTensorsFile(contentsOf: halfURL)
        try SafeTensorsWriter.write(Dictionary(uniqueKeysWithValues: try halfFile.names.map { ($0, try halfFile.tensor($0)) }), to: wideURL)

        let half = try LoRANetwork.load(contentsOf: halfURL), wide = try LoRANetwork.load(contentsOf: wideURL)
        XCTAssertEqual(Set(half.modules.flatMap { [$0.down.format, $0.up.format] }), [.float16])
        XCTAssertEqual(Set(wide.modules.flatMap { [$0.down.format, $0.up.format] }), [.float32])
        let halfBytes = try XCTUnwrap(FileManager.default.attributesOfItem(atPath: halfURL.path)[.size] as? Int)
        XCTAssertEqual(half.bytes, halfBytes, "the factors are views of the file's read buffer")
        let factorBytes = { (network: LoRANetwork) in network.modules.reduce(0) { $0 + $1.down.byteCount + $1.up.byteCount } }
        XCTAssertEqual(2 * factorBytes(half), factorBytes(wide), "fp16 factors take half the memory")
        XCTAssertEqual(half.modules.map(\.scale), wide.modules.map(\.scale))
        for (narrow, widened) in zip(half.modules, wide.modules) {
            XCTAssertTrue(narrow.down.float32().isBitwiseEqual(to: widened.down.float32()), narrow.name)
            XCTAssertTrue(narrow.up.float32().isBitwiseEqual(to: widened.up.float32()), narrow.name)
        }

        let originals = [linear.weight.copy(), conv.weight.copy()]
        var merged: [[Tensor]] = []
        for network in [half, wide] {
            let patcher = LoRAPatcher()
            patcher.merge([LoRAApplication(try LoRAKeyMap.resolve(network, targets: targets), weight: 0.7)])
            merged.append([linear.weight.copy(), conv.weight.copy()])
            patcher.restore()
        }
        for (index, name) in ["linear", "conv"].enumerated() {
            XCTAssertFalse(merged[0][index].isBitwiseEqual(to: originals[index]), "\(name) is patched")
            XCTAssertTrue(merged[0][index].isBitwiseEqual(to: merged[1][index]), "\(name): fp16 and fp32 merge alike")
        }
        XCTAssertTrue(linear.weight.isBitwiseEqual(to: originals[0]) && conv.weight.isBitwiseEqual(to: originals[1]), "restored")
    }
}
