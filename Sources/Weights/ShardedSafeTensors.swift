import Compute
import Foundation

/// Weights split over several safetensors files, as listed by a Hugging Face shard index
/// (`*.safetensors.index.json`: `{"metadata": {...}, "weight_map": {tensor name: shard file name}}`).
///
/// Every shard is opened (and so validated) up front, and every name in the map must exist in its
/// shard, so a broken download fails when opened, not halfway through loading a model.
public final class ShardedSafeTensors: WeightSource, @unchecked Sendable {
    public let indexURL: URL
    /// Tensor names in the weight map, sorted.
    public let names: [String]
    /// The shards, by file name.
    public let shards: [String: SafeTensorsFile]
    private let shardOfTensor: [String: String]

    public var sourceDescription: String { indexURL.path }

    public init(indexURL: URL) throws {
        self.indexURL = indexURL
        let path = indexURL.path
        let index = try MappedFile(url: indexURL)
        let root: JSONValue
        do {
            root = try JSONValue.parse(index.bytes)
        } catch {
            throw WeightsError.invalidJSON(path: path, detail: "not valid JSON: \(error)")
        }
        guard case .object = root else {
            throw WeightsError.invalidJSON(path: path, detail: "a shard index must be a JSON object")
        }
        guard let weightMap = root["weight_map"], case .object(let entries) = weightMap else {
            throw WeightsError.invalidJSON(path: path, detail: "missing the 'weight_map' object")
        }

        var shardOfTensor: [String: String] = [:]
        for (tensor, value) in entries {
            guard case .string(let shard) = value else {
                throw WeightsError.invalidJSON(
                    path: path, detail: "weight_map entry for '\(tensor)' is \(value.kindName), expected a file name")
            }
            guard !shard.isEmpty, !shard.contains("/"), !shard.contains("\\"), shard != ".", shard != ".." else {
                throw WeightsError.invalidJSON(
                    path: path, detail: "weight_map entry for '\(tensor)' is '\(shard)', expected a plain file name")
            }
            shardOfTensor[tensor] = shard
        }

        let folder = indexURL.deletingLastPathComponent()
        var shards: [String: SafeTensorsFile] = [:]
        for shard in Set(shardOfTensor.values).sorted() {
            let shardURL = folder.appendingPathComponent(shard)
            guard FileManager.default.fileExists(atPath: shardURL.path) else {
                throw WeightsError.missingShard(index: path, shard: shard)
            }
            shards[shard] = try SafeTensorsFile(contentsOf: shardURL)
        }
        for (tensor, shard) in shardOfTensor where shards[shard]?.contains(tensor) != true {
            throw WeightsError.invalidJSON(
                path: path, detail: "weight_map puts '\(tensor)' in '\(shard)', which has no tensor of that name")
        }

        self.shards = shards
        self.shardOfTensor = shardOfTensor
        self.names = shardOfTensor.keys.sorted()
    }

    public func contains(_ name: String) -> Bool { shardOfTensor[name] != nil }

    /// The shard holding `name`.
    public func file(containing name: String) throws -> SafeTensorsFile {
        guard let shard = shardOfTensor[name], let file = shards[shard] else {
            throw WeightsError.tensorNotFound(source: indexURL.path, tensor: name)
        }
        return file
    }

    public func info(_ name: String) throws -> TensorInfo { try file(containing: name).info(name) }
    public func shape(of name: String) throws -> [Int] { try file(containing: name).shape(of: name) }
    public func tensor(_ name: String) throws -> Tensor { try file(containing: name).tensor(name) }
}
