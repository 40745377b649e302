import Foundation

/// A diffusers pipeline folder: `model_index.json` plus one subfolder per component (`unet/`, `vae/`,
/// `text_encoder/`, `tokenizer/`, `scheduler/`, ...).
public struct DiffusersPipelineFolder: Sendable {
    /// A component's entry in `model_index.json`: `"unet": ["diffusers", "UNet2DConditionModel"]`.
    public struct ComponentSpec: Sendable, Equatable {
        public let library: String
        public let className: String

        public init(library: String, className: String) {
            self.library = library
            self.className = className
        }
    }

    public let url: URL
    /// The pipeline's `_class_name`, e.g. `StableDiffusionPipeline`.
    public let pipelineClass: String?
    /// Components listed with a library and class; entries listed as `[null, null]` (an omitted safety
    /// checker, say) are left out.
    public let components: [String: ComponentSpec]

    /// Component names, sorted.
    public var componentNames: [String] { components.keys.sorted() }

    /// Opens the folder (or the folder of a `model_index.json` passed directly) and reads its index.
    public init(_ url: URL) throws {
        let folder = url.lastPathComponent == "model_index.json" ? url.deletingLastPathComponent() : url
        guard directoryExists(folder) else {
            throw WeightsError.missingFile(path: folder.path, what: "diffusers pipeline folder")
        }
        let indexURL = folder.appendingPathComponent("model_index.json")
        guard FileManager.default.fileExists(atPath: indexURL.path) else {
            throw WeightsError.missingFile(
                path: indexURL.path, what: "model_index.json (is this a diffusers pipeline folder?)")
        }
        let index = try MappedFile(url: indexURL)
        let root: JSONValue
        do {
            root = try JSONValue.parse(index.bytes)
        } catch {
            throw WeightsError.invalidJSON(path: indexURL.path, detail: "not valid JSON: \(error)")
        }
        guard case .object(let members) = root else {
            throw WeightsError.invalidJSON(path: indexURL.path, detail: "model_index.json must be a JSON object")
        }

        var components: [String: ComponentSpec] = [:]
        var pipelineClass: String?
        for (key, value) in members {
            if key == "_class_name", case .string(let name) = value { pipelineClass = name }
            guard !key.hasPrefix("_"), case .array(let pair) = value else { continue }
            switch (pair.count == 2 ? pair[0] : nil, pair.count == 2 ? pair[1] : nil) {
            case (.string(let library), .string(let className)):
                components[key] = ComponentSpec(library: library, className: className)
            case (.null, .null):
                continue
            default:
                throw WeightsError.invalidJSON(
                    path: indexURL.path, detail: "component '\(key)' must be [library, class], found \(value.serialized)")
            }
        }
        self.url = folder
        self.pipelineClass = pipelineClass
        self.components = components
    }

    /// The component's subfolder; an error if `model_index.json` does not list it or its folder is absent.
    public func component(_ name: String) throws -> ComponentFolder {
        guard let spec = components[name] else {
            throw WeightsError.missingComponent(folder: url.path, component: name, available: componentNames)
        }
        return try ComponentFolder(url.appendingPathComponent(name), spec: spec)
    }
}

/// One model's folder: a config file and weights (a diffusers pipeline component, or a standalone
/// diffusers model folder such as a ControlNet download).
public struct ComponentFolder: Sendable {
    /// Weight files tried in order by `weights()`: full-precision names first, then the `fp16` variant,
    /// then sharded indexes.
    public static let weightFileCandidates = [
        "diffusion_pytorch_model.safetensors",
        "model.safetensors",
        "diffusion_pytorch_model.fp16.safetensors",
        "model.fp16.safetensors",
        "diffusion_pytorch_model.safetensors.index.json",
        "model.safetensors.index.json",
        "diffusion_pytorch_model.safetensors.index.fp16.json",
        "model.safetensors.index.fp16.json",
    ]

    /// Config file names tried in order by `configData` (models, schedulers, tokenizers, feature extractors).
    public static let configFileCandidates = [
        "config.json", "scheduler_config.json", "tokenizer_config.json", "preprocessor_config.json",
    ]

    public let url: URL
    public var name: String { url.lastPathComponent }
    /// The library and class from `model_index.json`; nil for a folder opened on its own.
    public let spec: DiffusersPipelineFolder.ComponentSpec?

    public init(_ url: URL, spec: DiffusersPipelineFolder.ComponentSpec? = nil) throws {
        guard directoryExists(url) else {
            throw WeightsError.missingFile(path: url.path, what: "component folder")
        }
        self.url = url
        self.spec = spec
    }

    /// The raw bytes of the component's config file; the model layer decodes its own typed config.
    public var configData: Data {
        get throws {
            for candidate in Self.configFileCandidates {
                let file = url.appendingPathComponent(candidate)
                guard FileManager.default.fileExists(atPath: file.path) else { continue }
                do {
                    return try Data(contentsOf: file)
                } catch {
                    throw WeightsError.cannotOpen(path: file.path, reason: error.localizedDescription)
                }
            }
            throw WeightsError.missingFile(path: url.appendingPathComponent("config.json").path, what: "config file")
        }
    }

    /// A file inside the component folder (e.g. `vocab.json`), checked to exist.
    public func file(_ name: String) throws -> URL {
        let file = url.appendingPathComponent(name)
        guard FileManager.default.fileExists(atPath: file.path) else {
            throw WeightsError.missingFile(path: file.path, what: "file in component '\(self.name)'")
        }
        return file
    }

    /// The component's weights: the first of `weightFileCandidates` present. A folder with only pickle
    /// weights (`.bin`, `.ckpt`, ...) is refused with `WeightsError.pickleRefused`.
    public func weights() throws -> any WeightSource {
        for candidate in Self.weightFileCandidates {
            let file = url.appendingPathComponent(candidate)
            guard FileManager.default.fileExists(atPath: file.path) else { continue }
            return try WeightsFile.open(file)
        }
        let contents = (try? FileManager.default.contentsOfDirectory(atPath: url.path)) ?? []
        if let pickle = contents.sorted().first(where: { WeightsFile.isPickle(URL(fileURLWithPath: $0)) }) {
            throw WeightsError.pickleRefused(path: url.appendingPathComponent(pickle).path)
        }
        throw WeightsError.noWeights(folder: url.path, tried: Self.weightFileCandidates)
    }
}

func directoryExists(_ url: URL) -> Bool {
    var directory: ObjCBool = false
    return FileManager.default.fileExists(atPath: url.path, isDirectory: &directory) && directory.boolValue
}
