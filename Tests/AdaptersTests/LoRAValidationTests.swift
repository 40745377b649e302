@testable import Adapters
import Compute
import Foundation
import Models
import ParityTesting
import Weights
import XCTest

/// Bad LoRA files are refused when they load, with a message naming the file and the module (issue 10, item 4):
/// rank 0 (which divided by zero when patching), NaN or infinite alphas and weights (which drew flat images),
/// factor shapes that disagree with each other or with the layer.
final class LoRAValidationTests: XCTestCase {
    private var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("lora-validation-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: directory)
    }

    private static let kohyaModule = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"
    private static let moduleName = "down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"

    /// Writes `tensors` as `<name>.safetensors` (and an `adapter_config.json` beside it when given).
    private func write(_ name: String, _ tensors: [String: Tensor], peftConfig: String? = nil) throws -> URL {
        let folder = directory.appendingPathComponent(name)
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let url = folder.appendingPathComponent("lora.safetensors")
        try SafeTensorsWriter.write(tensors, to: url)
        if let peftConfig { try Data(peftConfig.utf8).write(to: folder.appendingPathComponent("adapter_config.json")) }
        return url
    }

    private func kohya(down: Tensor, up: Tensor, alpha: Tensor? = nil) -> [String: Tensor] {
        var tensors = [Self.kohyaModule + ".lora_down.weight": down, Self.kohyaModule + ".lora_up.weight": up]
        if let alpha { tensors[Self.kohyaModule + ".alpha"] = alpha }
        return tensors
    }

    private func values(_ shape: [Int], _ special: Float? = nil, at index: Int = 0) -> Tensor {
        let count = shape.reduce(1, *)
        var values = (0..<count).map { Float($0 % 7) * 0.01 - 0.03 }
        if let special { values[index] = special }
        return Tensor(shape: shape, values: values)
    }

    /// Loads `url` expecting a refusal; returns the message after checking that it names the file and the module.
    @discardableResult
    private func assertRefused(
        _ url: URL, module: String, mentions: [String], file: StaticString = #filePath, line: UInt = #line
    ) -> LoRAError? {
        do {
            let network = try LoRANetwork.load(contentsOf: url)
            XCTFail("\(url.path) loaded with \(network.modules.count) modules", file: file, line: line)
            return nil
        } catch let error as LoRAError {
            let message = "\(error)"
            for expected in [url.path, module] + mentions {
                XCTAssertTrue(message.contains(expected), "'\(message)' does not mention '\(expected)'", file: file, line: line)
            }
            return error
        } catch {
            XCTFail("unexpected error \(error)", file: file, line: line)
            return nil
        }
    }

    func testRankZeroIsRefused() throws {
        let url = try write("rank0", kohya(down: Tensor(shape: [0, 8], values: []), up: Tensor(shape: [8, 0], values: [])))
        let error = assertRefused(url, module: Self.moduleName, mentions: ["rank 0"])
        guard case .badShape = error else { return XCTFail("\(String(describing: error))") }
        // The same with a conv (LoCon) pair and in the diffusers layout.
        let conv = try write(
            "rank0-conv",
            [
                "lora_unet_conv_in.lora_down.weight": Tensor(shape: [0, 4, 3, 3], values: []),
                "lora_unet_conv_in.lora_up.weight": Tensor(shape: [8, 0, 1, 1], values: []),
            ])
        assertRefused(conv, module: "conv_in", mentions: ["rank 0"])
        let diffusers = try write(
            "rank0-diffusers",
            [
                "unet.mid_block.attentions.0.proj_in.lora_A.weight": Tensor(shape: [0, 8], values: []),
                "unet.mid_block.attentions.0.proj_in.lora_B.weight": Tensor(shape: [8, 0], values: []),
            ])
        assertRefused(diffusers, module: "mid_block.attentions.0.proj_in", mentions: ["rank 0"])
    }

    func testNonFiniteAlphaIsRefused() throws {
        for (label, alpha) in [("nan", Float.nan), ("inf", Float.infinity), ("-inf", -Float.infinity)] {
            let url = try write("alpha-\(label)", kohya(down: values([2, 8]), up: values([8, 2]), alpha: Tensor(scalar: alpha)))
            let error = assertRefused(url, module: Self.moduleName, mentions: ["alpha is \(alpha)"])
            guard case .invalidValue = error else { return XCTFail("\(String(describing: error))") }
        }
        // An alpha that is not one number.
        let pair = try write("alpha-pair", kohya(down: values([2, 8]), up: values([8, 2]), alpha: Tensor(shape: [2], values: [1, 2])))
        assertRefused(pair, module: Self.moduleName, mentions: ["alpha", "[2]"])
        // PEFT's lora_alpha from adapter_config.json, too large for a Float.
        let peft = try write(
            "peft-alpha",
            [
                "base_model.model.mid_block.attentions.0.proj_in.lora_A.weight": values([2, 8]),
                "base_model.model.mid_block.attentions.0.proj_in.lora_B.weight": values([8, 2]),
            ], peftConfig: #"{"lora_alpha": 1e39, "r": 2}"#)
        assertRefused(peft, module: "mid_block.attentions.0.proj_in", mentions: ["alpha is inf"])
        // Zero and negative alphas are numbers (scale 0, or a reversed direction): accepted, as by A1111.
        for alpha: Float in [0, -4] {
            let url = try write("alpha-\(alpha)", kohya(down: values([2, 8]), up: values([8, 2]), alpha: Tensor(scalar: alpha)))
            let network = try LoRANetwork.load(contentsOf: url)
            XCTAssertEqual(network.modules.first?.scale, alpha / 2)
        }
    }

    func testNonFiniteWeightsAreRefused() throws {
        let nanDown = try write("nan-down", kohya(down: values([2, 8], .nan, at: 11), up: values([8, 2])))
        let error = assertRefused(nanDown, module: Self.moduleName, mentions: ["down", "nan", "element 11"])
        guard case .invalidValue = error else { return XCTFail("\(String(describing: error))") }
        let infUp = try write("inf-up", kohya(down: values([2, 8]), up: values([8, 2], -.infinity, at: 15)))
        assertRefused(infUp, module: Self.moduleName, mentions: ["up", "-inf", "element 15"])
        // A float16 file whose value overflowed to infinity when it was written.
        let folder = directory.appendingPathComponent("half")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let half = folder.appendingPathComponent("lora.safetensors")
        try SafeTensorsWriter.write(
            [
                "unet.mid_block.attentions.0.proj_in.lora_A.weight": values([2, 8], 1e6, at: 3),
                "unet.mid_block.attentions.0.proj_in.lora_B.weight": values([8, 2]),
            ], precision: .float16, to: half)
        assertRefused(half, module: "mid_block.attentions.0.proj_in", mentions: ["lora_A", "inf", "element 3"])
        // The largest finite values (an exponent one below all ones) are weights like any other.
        let largest = try write(
            "largest", kohya(down: values([2, 8], .greatestFiniteMagnitude, at: 5), up: values([8, 2], -.greatestFiniteMagnitude, at: 0)))
        XCTAssertEqual(try LoRANetwork.load(contentsOf: largest).modules.count, 1)
        // The last element of a long tensor is found too.
        let long = try write("nan-last", kohya(down: values([4, 1000], .nan, at: 3999), up: values([8, 4])))
        assertRefused(long, module: Self.moduleName, mentions: ["element 3999"])
    }

    func testInconsistentShapesAreRefused() throws {
        let ranks = try write("ranks", kohya(down: values([2, 8]), up: values([8, 3])))
        assertRefused(ranks, module: Self.moduleName, mentions: ["rank of down [2, 8] and up [8, 3] differ"])
        let kernel = try write(
            "up-kernel",
            [
                "lora_unet_conv_in.lora_down.weight": values([2, 4, 3, 3]),
                "lora_unet_conv_in.lora_up.weight": values([8, 2, 3, 3]),
            ])
        assertRefused(kernel, module: "conv_in", mentions: ["1x1 kernel"])
        let threeD = try write("three-d", kohya(down: values([2, 8, 1]), up: values([8, 2])))
        assertRefused(threeD, module: Self.moduleName, mentions: ["2-D or 4-D"])
        let empty = try write("empty-in", kohya(down: Tensor(shape: [2, 0], values: []), up: values([8, 2])))
        assertRefused(empty, module: Self.moduleName, mentions: ["empty dimension"])
    }

    /// A conv factor is reordered channels-last once, as the file loads: the module keeps the file's shape for checks and
    /// messages, and the resolved entry is a view of the module's factor, not a second copy.
    func testConvolutionFactorsAreReorderedOnceAsTheyLoad() throws {
        let golden = try Golden("components/unet_sd1")
        let unet = try UNet2DConditionModel(configData: Data(try golden.string("config").utf8), weights: golden.params)
        let targets = LoRATargets(registries: [.unet: unet.registry], unetLayersPerBlock: 1)
        let conv = try XCTUnwrap(unet.registry.convs["down_blocks.0.resnets.0.conv1"])
        let down = values([3, conv.inChannels, 3, 3]), up = values([conv.outChannels, 3, 1, 1])
        let url = try write("locon", ["lora_unet_down_blocks_0_resnets_0_conv1.lora_down.weight": down, "lora_unet_down_blocks_0_resnets_0_conv1.lora_up.weight": up])
        let network = try LoRANetwork.load(contentsOf: url)
        let module = try XCTUnwrap(network.modules.first)
        XCTAssertEqual(module.downShape, [3, conv.inChannels, 3, 3])
        XCTAssertTrue(module.isConvolution)
        XCTAssertTrue(module.down.float32().isBitwiseEqual(to: permute(down, [0, 2, 3, 1])), "channels-last [rank, kh, kw, in]")
        let entry = try XCTUnwrap(LoRAKeyMap.resolve(network, targets: targets).entries.first)
        XCTAssertEqual(entry.down.shape, [3, 3, 3, conv.inChannels])
        XCTAssertEqual(entry.down.baseAddress, module.down.baseAddress, "a view of the loaded factor")
    }

    /// Factors that are consistent with each other but not with the layer they name: refused when resolved
    /// against the model, naming the file, the module and the layer.
    func testShapesThatDoNotFitTheLayerNameTheFile() throws {
        let golden = try Golden("components/unet_sd1")
        let unet = try UNet2DConditionModel(configData: Data(try golden.string("config").utf8), weights: golden.params)
        let targets = LoRATargets(registries: [.unet: unet.registry], unetLayersPerBlock: 1)
        let layer = try XCTUnwrap(unet.registry.linears["down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"])
        let cases: [(String, [String: Tensor], String)] = [
            ("in", kohya(down: values([2, layer.inFeatures + 1]), up: values([layer.outFeatures, 2])), "inputs"),
            ("out", kohya(down: values([2, layer.inFeatures]), up: values([layer.outFeatures + 3, 2])), "outputs"),
            ("conv-on-linear", kohya(down: values([2, layer.inFeatures, 3, 3]), up: values([layer.outFeatures, 2, 1, 1])), "inputs"),
        ]
        for (name, tensors, mention) in cases {
            let url = try write("fit-\(name)", tensors)
            let network = try LoRANetwork.load(contentsOf: url)
            XCTAssertThrowsError(try LoRAKeyMap.resolve(network, targets: targets), name) { error in
                let message = "\(error)"
                for expected in [url.path, Self.moduleName, layer.path, mention] {
                    XCTAssertTrue(message.contains(expected), "'\(message)' does not mention '\(expected)'")
                }
            }
        }
        // A good file of the same layout loads, resolves and patches (the checks refuse only what is wrong).
        let good = try write("good", kohya(down: values([2, layer.inFeatures]), up: values([layer.outFeatures, 2]), alpha: Tensor(scalar: 1)))
        let resolved = try LoRAKeyMap.resolve(try LoRANetwork.load(contentsOf: good), targets: targets)
        XCTAssertEqual(resolved.entries.count, 1)
        XCTAssertEqual(resolved.entries.first?.scale, 0.5)
        let patcher = LoRAPatcher()
        let before = layer.weight.copy()
        patcher.merge([LoRAApplication(resolved, weight: 1)])
        XCTAssertFalse(layer.weight.isBitwiseEqual(to: before))
        patcher.restore()
        XCTAssertTrue(layer.weight.isBitwiseEqual(to: before))
    }
}
