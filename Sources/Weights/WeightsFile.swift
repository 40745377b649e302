import Foundation

/// The single entry point for "open the weights at this path": dispatches on what the path is.
public enum WeightsFile {
    /// Extensions of PyTorch pickle checkpoints, which are refused rather than loaded.
    public static let pickleExtensions: Set<String> = ["ckpt", "pt", "pth", "bin", "pkl", "pickle"]

    public static func isPickle(_ url: URL) -> Bool {
        pickleExtensions.contains(url.pathExtension.lowercased())
    }

    /// Opens `.safetensors` files, shard indexes (`*.index.json`) and diffusers model folders (a folder with
    /// a config and weights). Pickle files are refused with an explanation; anything else is an error.
    public static func open(_ url: URL) throws -> any WeightSource {
        let name = url.lastPathComponent.lowercased()
        if isPickle(url) {
            throw WeightsError.pickleRefused(path: url.path)
        }
        if directoryExists(url) {
            if FileManager.default.fileExists(atPath: url.appendingPathComponent("model_index.json").path) {
                throw WeightsError.unsupportedFormat(
                    path: url.path,
                    detail: "this is a diffusers pipeline folder holding several models; open one component "
                        + "(unet, vae, text_encoder, ...) with DiffusersPipelineFolder")
            }
            return try ComponentFolder(url).weights()
        }
        if name.hasSuffix(".safetensors") {
            return try SafeTensorsFile(contentsOf: url)
        }
        if name.hasSuffix(".index.json") || name.hasSuffix(".index.fp16.json") {
            return try ShardedSafeTensors(indexURL: url)
        }
        if !FileManager.default.fileExists(atPath: url.path) {
            throw WeightsError.cannotOpen(path: url.path, reason: "no such file or directory")
        }
        throw WeightsError.unsupportedFormat(
            path: url.path,
            detail: "expected a .safetensors file, a *.safetensors.index.json shard index or a diffusers model folder")
    }
}
