@testable import Adapters
import Compute
import Models
import ParityTesting
import XCTest

/// `LoRAPatcher.merge` with several LoRAs on one weight, both ways it can add them: one product of the stacked factors
/// (where the weight is the larger operand) or one product per LoRA (where the factors are). Both give
/// W + Σ s_i up_i down_i, and the restore is bitwise.
final class LoRAMergeTests: XCTestCase {
    private func lora(_ layer: Linear, rank: Int, seed: UInt64, alpha: Float) -> ResolvedLoRA {
        let down = seededTensor([rank, layer.inFeatures], seed: seed), up = seededTensor([layer.outFeatures, rank], seed: seed + 1)
        let entry = ResolvedLoRA.Entry(component: .unet, layer: .linear(layer), down: down, up: up, scale: alpha / Float(rank))
        return ResolvedLoRA(source: "rank \(rank)", entries: [entry], unmatched: [])
    }

    func testSeveralLoRAsOnOneWeightAddEachProductEitherWay() {
        // (outputs, ranks): Σr below the outputs stacks; Σr at or above them adds one product per LoRA.
        for (outputs, ranks) in [(24, [2, 3]), (8, [6, 5]), (16, [16, 4, 4]), (48, [4, 8, 4])] {
            let layer = Linear(path: "layer", weight: seededTensor([outputs, 40], seed: 1), bias: nil)
            let loras = ranks.enumerated().map { lora(layer, rank: $0.element, seed: 10 * UInt64($0.offset + 1), alpha: 0.5 * Float($0.offset + 1)) }
            let weights: [Float] = [0.8, -0.6, 1.2].prefix(ranks.count).map { $0 }
            let updates = zip(loras, weights).map { lora, weight in
                (up: lora.entries[0].up, down: lora.entries[0].down, scale: weight * lora.entries[0].scale)
            }
            XCTAssertEqual(LoRAPatcher.stacks(updates, rows: outputs), ranks.reduce(0, +) < outputs * (ranks.count - 1), "\(outputs) \(ranks)")
            var expected = layer.weight.copy()
            for update in updates { expected = expected + matmul(update.up, update.down) * update.scale }
            let original = layer.weight.copy()
            let patcher = LoRAPatcher()
            patcher.merge(zip(loras, weights).map { LoRAApplication($0, weight: $1) })
            XCTAssertLessThan(layer.weight.maxAbsDifference(expected), 1e-5, "\(outputs) outputs, ranks \(ranks)")
            patcher.restore()
            XCTAssertTrue(layer.weight.isBitwiseEqual(to: original), "restored bitwise")
        }
    }
}
