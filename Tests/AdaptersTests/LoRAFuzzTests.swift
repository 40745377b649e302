@testable import Adapters
import Compute
import Foundation
import Models
import ParityTesting
import Weights
import XCTest

/// Seeded random-mutation fuzzing of LoRA loading (issue 10, "Done when"): mutated files and mutated tensor sets
/// either load, resolve and patch the tiny UNet, or throw; nothing crashes, and patching always restores bitwise.
final class LoRAFuzzTests: XCTestCase {
    private var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("lora-fuzz-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: directory) }

    private struct Target {
        let unet: UNet2DConditionModel
        let targets: LoRATargets
    }

    private func target() throws -> Target {
        let golden = try Golden("components/unet_sd1")
        let unet = try UNet2DConditionModel(configData: Data(try golden.string("config").utf8), weights: golden.params)
        return Target(unet: unet, targets: LoRATargets(registries: [.unet: unet.registry], unetLayersPerBlock: 1))
    }

    /// Loads (file) or parses (tensors), resolves, merges and restores, attaches and detaches. Returns whether the
    /// LoRA was usable; any error other than a LoRA or weights error fails the test.
    private func exercise(_ load: () throws -> LoRANetwork, target: Target, label: String) -> Bool {
        do {
            let network = try load()
            XCTAssertFalse(network.modules.isEmpty, label)
            for module in network.modules {
                XCTAssertGreaterThanOrEqual(module.rank, 1, label)
                XCTAssertTrue(module.scale.isFinite, label)
            }
            let resolved = try LoRAKeyMap.resolve(network, targets: target.targets)
            let patcher = LoRAPatcher()
            let layers = resolved.entries.map(\.layer)
            let originals = layers.map { layer -> Tensor in
                switch layer {
                case .linear(let linear): linear.weight.copy()
                case .conv(let conv): conv.weight.copy()
                }
            }
            patcher.merge([LoRAApplication(resolved, weight: 0.7)])
            patcher.restore()
            for (layer, original) in zip(layers, originals) {
                switch layer {
                case .linear(let linear): XCTAssertTrue(linear.weight.isBitwiseEqual(to: original), label)
                case .conv(let conv): XCTAssertTrue(conv.weight.isBitwiseEqual(to: original), label)
                }
            }
            patcher.attachRuntime([LoRAApplication(resolved, unetWeight: 0.5, textEncoderWeight: 1)])
            patcher.detachRuntime()
            return true
        } catch is LoRAError {
            return false
        } catch is WeightsError {
            return false
        } catch {
            XCTFail("\(label): unexpected \(type(of: error)): \(error)")
            return false
        }
    }

    func testMutatedLoRAFilesLoadOrThrow() throws {
        let target = try target()
        let fixtures = Golden.fixturesDirectory.appendingPathComponent("lora")
        let seeds = try ["b_kohya.safetensors", "a_peft/adapter_model.safetensors"].map {
            [UInt8](try Data(contentsOf: fixtures.appendingPathComponent($0)))
        }
        let url = directory.appendingPathComponent("lora.safetensors")
        var random = FuzzRandom(seed: 0x10_4A_F022)
        var (usable, refused) = (0, 0)
        for (index, seed) in seeds.enumerated() {
            try Data(seed).write(to: url)
            XCTAssertTrue(exercise({ try LoRANetwork.load(contentsOf: url) }, target: target, label: "seed \(index)"))
        }
        for iteration in 0..<1000 {
            try Data(FuzzMutator.mutate(random.pick(seeds), others: seeds, using: &random)).write(to: url)
            if exercise({ try LoRANetwork.load(contentsOf: url) }, target: target, label: "file iteration \(iteration)") {
                usable += 1
            } else {
                refused += 1
            }
        }
        print("LoRA file fuzz: \(usable) usable, \(refused) refused")
        XCTAssertGreaterThan(usable, 20)
        XCTAssertGreaterThan(refused, 300)
    }

    /// Mutations of the tensors themselves: shapes changed (rank 0, mismatched ranks, 1-D, 3-D, conv kernels),
    /// values made NaN or infinite, alphas of any shape and value, keys dropped or renamed to another format.
    func testMutatedLoRATensorsLoadOrThrow() throws {
        let target = try target()
        let fixtures = Golden.fixturesDirectory.appendingPathComponent("lora")
        var seeds: [[String: Tensor]] = []
        for name in ["a_kohya.safetensors", "a_diffusers.safetensors", "b_kohya.safetensors"] {
            let file = try SafeTensorsFile(contentsOf: fixtures.appendingPathComponent(name))
            seeds.append(Dictionary(uniqueKeysWithValues: try file.names.map { ($0, try file.tensor($0)) }))
        }
        var random = FuzzRandom(seed: 0x7E_4507)
        var (usable, refused) = (0, 0)
        let specials: [Float] = [.nan, .infinity, -.infinity, 0, -0.0, .greatestFiniteMagnitude, .leastNonzeroMagnitude, 1e30]
        for iteration in 0..<1500 {
            var tensors = random.pick(seeds)
            for _ in 0..<(1 + random.below(3)) {
                let key = random.pick(tensors.keys.sorted())
                guard let tensor = tensors[key] else { continue }
                switch random.below(7) {
                case 0:  // a new shape with random (possibly zero) dimensions
                    let shape = (0..<random.pick([0, 1, 2, 3, 4])).map { _ in random.pick([0, 1, 2, 3, 4, 8, 32]) }
                    let count = shape.reduce(1, *)
                    tensors[key] = Tensor(shape: shape, values: (0..<count).map { _ in Float(random.below(100)) / 50 - 1 })
                case 1:  // the same values, reshaped (rank moved between axes)
                    if tensor.rank == 2 { tensors[key] = tensor.reshaped([tensor.shape[1], tensor.shape[0]]) }
                    else { tensors[key] = tensor.reshaped([tensor.count]) }
                case 2:  // a special value somewhere
                    var values = tensor.scalars
                    if !values.isEmpty { values[random.below(values.count)] = random.pick(specials) }
                    tensors[key] = Tensor(shape: tensor.shape, values: values)
                case 3:  // an alpha of any value and shape
                    let stem = key.components(separatedBy: ".lora").first ?? key
                    let count = random.pick([0, 1, 1, 1, 2])
                    tensors[stem + ".alpha"] = Tensor(shape: count == 1 ? [] : [count], values: (0..<count).map { _ in random.pick(specials + [1, 4, -2]) })
                case 4:  // dropped
                    tensors[key] = nil
                case 5:  // renamed to another layout's spelling
                    let renamed = key.replacingOccurrences(of: random.pick([".lora_down.", ".lora_up.", "lora_unet_", ".lora_A.", "unet."]), with: random.pick([".lora_A.", ".lora_B.", "base_model.model.", "lora_te_", ".lora.down."]))
                    tensors[key] = nil
                    tensors[renamed] = tensor
                default:  // a 4-D conv-style factor
                    if tensor.rank == 2 {
                        let kernel = random.pick([1, 3])
                        let shape = [tensor.shape[0], tensor.shape[1], kernel, kernel]
                        tensors[key] = Tensor(shape: shape, values: (0..<shape.reduce(1, *)).map { Float($0 % 5) * 0.01 })
                    }
                }
            }
            let weights = InMemoryWeights(tensors)
            if exercise({ try LoRANetwork.parse(weights, source: "fuzz \(iteration)") }, target: target, label: "tensor iteration \(iteration)") {
                usable += 1
            } else {
                refused += 1
            }
        }
        print("LoRA tensor fuzz: \(usable) usable, \(refused) refused")
        XCTAssertGreaterThan(usable, 100)
        XCTAssertGreaterThan(refused, 300)
    }
}
