import Foundation

/// What kind of file a registry entry is.
public enum ModelKind: String, Codable, Sendable {
    case checkpoint
    case lora
    case controlnet
}

/// One model, LoRA or ControlNet the server can use, found by scanning the model folders.
public struct ModelEntry: Codable, Sendable, Equatable {
    /// The name clients use (file or folder name without extension); unique per kind.
    public var id: String
    public var kind: ModelKind
    public var path: String
    /// "diffusers" (a folder) or "safetensors" (a single file).
    public var format: String
    public var sizeBytes: Int
    /// True for the embedded model family shipped with SwiftDiffusion.
    public var embedded: Bool
}

/// The models folder layout the server scans, and the lookup clients' names go through.
///
/// Clients name models; they never send paths. Every lookup is an exact match against what the scan
/// found inside the configured folders, so a name like `../../etc/passwd` simply is not found.
///
/// Layout of `--models DIR` (AUTOMATIC1111's folder names are accepted too):
/// - checkpoints: `DIR/checkpoints/` or `DIR/Stable-diffusion/` (diffusers folders or `.safetensors`)
/// - LoRAs: `DIR/loras/` or `DIR/Lora/` (`.safetensors`, subfolders allowed)
/// - ControlNets: `DIR/controlnets/` or `DIR/ControlNet/` (diffusers ControlNet folders)
public final class ModelRepository: @unchecked Sendable {
    public let roots: [URL]
    public let embeddedModels: URL?
    private let lock = NSLock()
    private var entries: [ModelKind: [String: ModelEntry]] = [:]
    /// Entries registered by path (the CLI's files), kept over rescans.
    private var registered: [ModelEntry] = []
    /// Profiles read so far, by checkpoint path (forgotten on rescan: a file may have changed).
    private var profiles: [String: ModelProfile] = [:]
    /// Id of the model used when a request names none.
    public private(set) var defaultModel: String?

    public init(roots: [URL], embeddedModels: URL?, defaultModel: String? = nil) {
        self.roots = roots
        self.embeddedModels = embeddedModels
        self.defaultModel = defaultModel
        rescan()
    }

    static let folderNames: [ModelKind: [String]] = [
        .checkpoint: ["checkpoints", "Stable-diffusion"], .lora: ["loras", "Lora", "lora"], .controlnet: ["controlnets", "ControlNet", "controlnet"],
    ]

    /// Scans every folder again (new files appear, deleted ones disappear).
    @discardableResult
    public func rescan() -> [ModelKind: Int] {
        var found: [ModelKind: [String: ModelEntry]] = [.checkpoint: [:], .lora: [:], .controlnet: [:]]
        func add(_ entry: ModelEntry) {
            if found[entry.kind]?[entry.id] == nil { found[entry.kind]?[entry.id] = entry }
        }
        // The embedded family first: it is the default and its names win over clashes.
        if let embedded = embeddedModels {
            for entry in Self.scanEmbedded(embedded) { add(entry) }
        }
        for root in roots {
            for (kind, names) in Self.folderNames {
                for name in names {
                    let folder = root.appendingPathComponent(name)
                    for entry in Self.scan(folder, kind: kind, embedded: false) { add(entry) }
                }
            }
        }
        lock.lock()
        for entry in registered where found[entry.kind]?[entry.id] == nil { found[entry.kind]?[entry.id] = entry }
        entries = found
        profiles = [:]
        if defaultModel == nil || found[.checkpoint]?[defaultModel ?? ""] == nil {
            defaultModel = found[.checkpoint]?.values.sorted { ($0.embedded ? 0 : 1, $0.id) < ($1.embedded ? 0 : 1, $1.id) }.first?.id
        }
        lock.unlock()
        return found.mapValues(\.count)
    }

    /// Registers a file or folder the caller named by path (the CLI's `--model`, `--lora`, `--control`), under its
    /// file name without extension; returns the id to name it by (with `-2`, `-3`, ... if another path has that name).
    @discardableResult
    public func register(_ kind: ModelKind, path: String) -> String {
        let url = URL(fileURLWithPath: path)
        let base = url.pathExtension == "safetensors" ? url.deletingPathExtension().lastPathComponent : url.lastPathComponent
        lock.lock()
        defer { lock.unlock() }
        var id = base
        var suffix = 1
        while let existing = entries[kind]?[id], existing.path != path {
            suffix += 1
            id = "\(base)-\(suffix)"
        }
        if entries[kind]?[id] == nil {
            let entry = ModelEntry(
                id: id, kind: kind, path: path, format: url.pathExtension == "safetensors" ? "safetensors" : "diffusers",
                sizeBytes: Self.size(of: url), embedded: false)
            registered.append(entry)
            entries[kind, default: [:]][id] = entry
            if kind == .checkpoint && defaultModel == nil { defaultModel = id }
        }
        return id
    }

    public func list(_ kind: ModelKind) -> [ModelEntry] {
        lock.lock()
        defer { lock.unlock() }
        return (entries[kind] ?? [:]).values.sorted { $0.id < $1.id }
    }

    /// The entry named `id`, or nil. Names are matched exactly; A1111-style names with a folder prefix or an
    /// extension ("sub/name.safetensors") are reduced to the bare name first; absolute paths and names with a
    /// `..` component are unknown.
    public func entry(_ kind: ModelKind, _ id: String) -> ModelEntry? {
        // A path is never a name: "/abs/x" or "../x" would otherwise reduce to the bare name "x".
        guard !id.hasPrefix("/"), !id.split(separator: "/").contains("..") else { return nil }
        lock.lock()
        defer { lock.unlock() }
        if let exact = entries[kind]?[id] { return exact }
        let bare = Self.bareName(id)
        return entries[kind]?[bare]
    }

    /// The profile (native size, recommended sampler/steps/CFG, text encoder depth) of checkpoint `id`; nil `id`
    /// means the default model. Read from the model's config files once, without loading weights.
    public func profile(_ id: String?) throws -> ModelProfile {
        guard let id = id ?? defaultModel else { throw EngineError.notFound("no model is available") }
        guard let entry = entry(.checkpoint, id) else { throw EngineError.notFound("unknown model '\(id)'; see /v1/models") }
        lock.lock()
        let cached = profiles[entry.path]
        lock.unlock()
        if let cached { return cached }
        let profile: ModelProfile
        do {
            profile = try ModelProfile.read(path: entry.path)
        } catch let error as EngineError {
            throw error
        } catch {
            throw EngineError.unavailable("model '\(id)' cannot be read: \(error)")
        }
        lock.lock()
        profiles[entry.path] = profile
        lock.unlock()
        return profile
    }

    static func bareName(_ name: String) -> String {
        var bare = name.split(separator: "/").last.map(String.init) ?? name
        for suffix in [".safetensors", ".ckpt", ".pt"] where bare.hasSuffix(suffix) { bare.removeLast(suffix.count) }
        // A1111 lists checkpoints as "name [hash]".
        if let bracket = bare.range(of: " [") { bare = String(bare[..<bracket.lowerBound]) }
        return bare
    }

    static func scanEmbedded(_ folder: URL) -> [ModelEntry] {
        var result: [ModelEntry] = []
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: folder.path) else { return [] }
        for name in names.sorted() {
            let url = folder.appendingPathComponent(name)
            if FileManager.default.fileExists(atPath: url.appendingPathComponent("model_index.json").path) {
                result.append(ModelEntry(id: name, kind: .checkpoint, path: url.path, format: "diffusers", sizeBytes: size(of: url), embedded: true))
            } else if FileManager.default.fileExists(atPath: url.appendingPathComponent("config.json").path) {
                result.append(ModelEntry(id: name, kind: .controlnet, path: url.path, format: "diffusers", sizeBytes: size(of: url), embedded: true))
            } else if isDirectory(url) {
                result += scan(url, kind: .lora, embedded: true)
            }
        }
        return result
    }

    /// Entries of `kind` directly inside `folder` (LoRAs also in subfolders).
    static func scan(_ folder: URL, kind: ModelKind, embedded: Bool) -> [ModelEntry] {
        guard isDirectory(folder), let names = try? FileManager.default.contentsOfDirectory(atPath: folder.path) else { return [] }
        var result: [ModelEntry] = []
        for name in names.sorted() where !name.hasPrefix(".") {
            let url = folder.appendingPathComponent(name)
            switch kind {
            case .checkpoint:
                if isDirectory(url), FileManager.default.fileExists(atPath: url.appendingPathComponent("model_index.json").path) {
                    result.append(ModelEntry(id: name, kind: kind, path: url.path, format: "diffusers", sizeBytes: size(of: url), embedded: embedded))
                } else if name.hasSuffix(".safetensors") {
                    result.append(
                        ModelEntry(
                            id: String(name.dropLast(".safetensors".count)), kind: kind, path: url.path, format: "safetensors",
                            sizeBytes: size(of: url), embedded: embedded))
                }
            case .lora:
                if name.hasSuffix(".safetensors") {
                    result.append(
                        ModelEntry(
                            id: String(name.dropLast(".safetensors".count)), kind: kind, path: url.path, format: "safetensors",
                            sizeBytes: size(of: url), embedded: embedded))
                } else if isDirectory(url) {
                    result += scan(url, kind: .lora, embedded: embedded)
                }
            case .controlnet:
                if isDirectory(url), FileManager.default.fileExists(atPath: url.appendingPathComponent("config.json").path) {
                    result.append(ModelEntry(id: name, kind: kind, path: url.path, format: "diffusers", sizeBytes: size(of: url), embedded: embedded))
                }
            }
        }
        return result
    }

    static func isDirectory(_ url: URL) -> Bool {
        var directory: ObjCBool = false
        return FileManager.default.fileExists(atPath: url.path, isDirectory: &directory) && directory.boolValue
    }

    static func size(of link: URL) -> Int {
        let url = link.resolvingSymlinksInPath()
        if !isDirectory(url) { return (try? FileManager.default.attributesOfItem(atPath: url.path)[.size] as? Int) ?? 0 }
        guard let enumerator = FileManager.default.enumerator(at: url, includingPropertiesForKeys: [.fileSizeKey]) else { return 0 }
        var total = 0
        for case let file as URL in enumerator { total += (try? file.resourceValues(forKeys: [.fileSizeKey]).fileSize) ?? 0 }
        return total
    }
}
