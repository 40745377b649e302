import Foundation

/// The tiny fixture models (Tests/Fixtures/models) in the folder layout `serve --models` and `ModelRepository`
/// scan, made of symbolic links under the temporary directory: checkpoints sd1, sd2, sdxl; LoRAs sd1-lora,
/// sd1-lora-b; ControlNets sd1-controlnet, sd1-controlnet-b.
public enum FixtureModels {
    public static func linkedFolder(named name: String) -> URL {
        let fixtures = Golden.fixturesDirectory.appendingPathComponent("models")
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("\(name)-\(getpid())")
        let manager = FileManager.default
        for (folder, items) in [
            ("checkpoints", ["sd1", "sd2", "sdxl"]), ("loras", ["sd1-lora.safetensors", "sd1-lora-b.safetensors"]),
            ("controlnets", ["sd1-controlnet", "sd1-controlnet-b"]),
        ] {
            let directory = root.appendingPathComponent(folder)
            try? manager.createDirectory(at: directory, withIntermediateDirectories: true)
            for item in items {
                let link = directory.appendingPathComponent(item)
                if !manager.fileExists(atPath: link.path) {
                    try? manager.createSymbolicLink(at: link, withDestinationURL: fixtures.appendingPathComponent(item))
                }
            }
        }
        return root
    }
}

extension FixtureModels {
    /// The configuration of an SDXL ControlNet for the tiny SDXL fixture (`sdxl`): its UNet's configuration with the
    /// ControlNet fields. The fixtures hold no SDXL ControlNet weights; tests pair it with `RandomWeights`.
    public static func sdxlControlNetConfig() throws -> Data {
        let unetConfig = Golden.fixturesDirectory.appendingPathComponent("models/sdxl/unet/config.json")
        guard var config = try JSONSerialization.jsonObject(with: try Data(contentsOf: unetConfig)) as? [String: Any] else {
            throw CocoaError(.fileReadCorruptFile, userInfo: [NSFilePathErrorKey: unetConfig.path])
        }
        config["_class_name"] = "ControlNetModel"
        config["conditioning_channels"] = 3
        config["conditioning_embedding_out_channels"] = [4, 8]
        return try JSONSerialization.data(withJSONObject: config)
    }
}
