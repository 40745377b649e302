import Compute
import Foundation
import Weights
import XCTest

final class ShardedSafeTensorsTests: XCTestCase {
    private var directory: TemporaryDirectory!

    override func setUpWithError() throws { directory = try TemporaryDirectory() }
    override func tearDown() { directory = nil }

    private let index = """
        {"metadata": {"total_size": 28},
         "weight_map": {"down.weight": "model-00001-of-00002.safetensors",
                        "down.bias": "model-00001-of-00002.safetensors",
                        "up.weight": "model-00002-of-00002.safetensors"}}
        """

    private func writeShards() throws {
        try SafeTensorsWriter.write(
            ["down.weight": Tensor(shape: [2, 2], values: [1, 2, 3, 4]), "down.bias": Tensor(shape: [2], values: [5, 6])],
            to: directory.file("model-00001-of-00002.safetensors"))
        try SafeTensorsWriter.write(
            ["up.weight": Tensor(shape: [1, 2], values: [7, 8])], to: directory.file("model-00002-of-00002.safetensors"))
    }

    func testTwoShards() throws {
        try writeShards()
        let url = try directory.write(index, to: "model.safetensors.index.json")
        let weights = try ShardedSafeTensors(indexURL: url)
        XCTAssertEqual(weights.names, ["down.bias", "down.weight", "up.weight"])
        XCTAssertEqual(weights.shards.keys.sorted(), ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"])
        XCTAssertEqual(try weights.tensor("down.weight").scalars, [1, 2, 3, 4])
        XCTAssertEqual(try weights.tensor("up.weight").scalars, [7, 8])
        XCTAssertEqual(try weights.shape(of: "up.weight"), [1, 2])
        XCTAssertEqual(try weights.info("down.bias").dtype, .float32)
        XCTAssertTrue(weights.contains("down.bias"))
        XCTAssertFalse(weights.contains("missing"))
        assertWeightsError(["model.safetensors.index.json", "no tensor named 'missing'"]) { try weights.tensor("missing") }

        // The single entry point recognises the index too.
        XCTAssertEqual(try WeightsFile.open(url).names, weights.names)
    }

    func testMissingShard() throws {
        try writeShards()
        try FileManager.default.removeItem(at: directory.file("model-00002-of-00002.safetensors"))
        let url = try directory.write(index, to: "model.safetensors.index.json")
        assertWeightsError(["model.safetensors.index.json", "shard 'model-00002-of-00002.safetensors'", "not on disk"]) {
            try ShardedSafeTensors(indexURL: url)
        }
    }

    func testIndexNamingATensorItsShardLacks() throws {
        try writeShards()
        let url = try directory.write(
            #"{"weight_map": {"ghost": "model-00002-of-00002.safetensors"}}"#, to: "model.safetensors.index.json")
        assertWeightsError(["puts 'ghost' in 'model-00002-of-00002.safetensors'", "no tensor of that name"]) {
            try ShardedSafeTensors(indexURL: url)
        }
    }

    func testMalformedIndexes() throws {
        let notJSON = try directory.write("{weight_map", to: "a.safetensors.index.json")
        assertWeightsError(["a.safetensors.index.json", "not valid JSON"]) { try ShardedSafeTensors(indexURL: notJSON) }
        let noMap = try directory.write(#"{"metadata": {}}"#, to: "b.safetensors.index.json")
        assertWeightsError(["b.safetensors.index.json", "missing the 'weight_map' object"]) {
            try ShardedSafeTensors(indexURL: noMap)
        }
        let escaping = try directory.write(#"{"weight_map": {"a": "../elsewhere.safetensors"}}"#, to: "c.safetensors.index.json")
        assertWeightsError(["expected a plain file name"]) { try ShardedSafeTensors(indexURL: escaping) }
        assertWeightsError(["cannot open", "absent.safetensors.index.json"]) {
            try ShardedSafeTensors(indexURL: self.directory.file("absent.safetensors.index.json"))
        }
    }
}
