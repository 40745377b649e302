import Foundation
import Models
import Weights

extension ModelRepository {
    /// Loads ControlNet `id` (a diffusers folder) with the bytes the caches count for it: the engine's ControlNet
    /// cache and a remote ControlNet worker's (`swiftdiffusion worker --role controlnet`) load the same way.
    public func loadControlNet(_ id: String) throws -> (ControlNetModel, bytes: Int) {
        guard let entry = entry(.controlnet, id) else { throw EngineError.notFound("unknown ControlNet '\(id)'") }
        let folder = try ComponentFolder(URL(fileURLWithPath: entry.path))
        let model = try ControlNetModel(configData: try folder.configData, weights: try folder.weights(), source: entry.path)
        return (model, max(entry.sizeBytes, model.registry.parameterBytes))
    }
}
