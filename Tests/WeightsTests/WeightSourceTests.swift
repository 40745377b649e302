import Compute
import Foundation
import Weights
import XCTest

final class WeightSourceTests: XCTestCase {
    func testInMemoryWeights() throws {
        let weights = InMemoryWeights(["b": Tensor(shape: [1], values: [2]), "a": Tensor(shape: [2], values: [0, 1])])
        XCTAssertEqual(weights.names, ["a", "b"])
        XCTAssertEqual(try weights.tensor("a").scalars, [0, 1])
        XCTAssertEqual(try weights.shape(of: "b"), [1])
        assertWeightsError(["<memory>", "no tensor named 'c'"]) { try weights.tensor("c") }
    }

    func testReturnedTensorsAreCopies() throws {
        let original = Tensor(shape: [1], values: [1])
        let weights = InMemoryWeights(["a": original])
        let loaded = try weights.tensor("a")
        loaded.withUnsafeMutableBufferPointer { $0[0] = 99 }
        XCTAssertEqual(original.scalars, [1])
    }

    func testShapeCheckedLoad() throws {
        let weights = InMemoryWeights(["conv.weight": Tensor(shape: [4, 3, 3, 3], repeating: 0)], description: "unet")
        XCTAssertEqual(try weights.tensor("conv.weight", shape: [4, 3, 3, 3]).shape, [4, 3, 3, 3])
        assertWeightsError(["unet", "'conv.weight'", "shape [4, 3, 3, 3], expected [8, 3, 3, 3]"]) {
            try weights.tensor("conv.weight", shape: [8, 3, 3, 3])
        }
    }

    func testPrefixScoping() throws {
        let weights = InMemoryWeights([
            "model.diffusion_model.out.weight": Tensor(shape: [1], values: [1]),
            "model.diffusion_model.out.bias": Tensor(shape: [1], values: [2]),
            "first_stage_model.decoder.weight": Tensor(shape: [1], values: [3]),
        ])
        let unet = weights.scoped(to: "model.diffusion_model.")
        XCTAssertEqual(unet.names, ["out.bias", "out.weight"])
        XCTAssertTrue(unet.contains("out.bias"))
        XCTAssertFalse(unet.contains("decoder.weight"))
        XCTAssertEqual(try unet.tensor("out.weight").scalars, [1])
        assertWeightsError(["no tensor named 'model.diffusion_model.decoder.weight'"]) { try unet.tensor("decoder.weight") }
    }
}
