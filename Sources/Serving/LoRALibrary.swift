import Adapters
import Compute
import Foundation
import Logging

/// Parsed LoRA files and their key maps, cached, plus the background threads that load them.
///
/// Reading and converting a LoRA file costs tens to hundreds of milliseconds; resolving its keys against a
/// model a few more. Both are cached (files by path, size and modification time in a `BoundedCache`, least
/// recently used first out beyond `capacityBytes`; key maps per model, forgotten with their file), so a
/// popular LoRA costs nothing after its first use.
final class LoRALibrary: @unchecked Sendable {
    struct FileKey: Hashable, Sendable {
        let path: String
        let size: Int
        let modified: Date
    }

    private let lock = NSLock()
    private let files: BoundedCache<FileKey, LoRANetwork>
    private var resolved: [String: ResolvedLoRA] = [:]
    /// The threads that load a job's LoRAs beside denoising (`AdapterSchedule`), one LoRA each at a time, the first
    /// loader first; the last one also reads files ahead of need (`prefetch`), so a job's single LoRA does not queue
    /// behind the next job's. Two on a machine with two cores or more: while the UNet keeps every core busy, loads on
    /// two threads take a share of both cores for half as long, instead of one core for the whole time, and a step
    /// whose guidance branches run side by side waits for its slower core.
    let loaders: [ComputeThread] = (0..<min(2, ProcessInfo.processInfo.activeProcessorCount)).map { ComputeThread(name: "lora-loader-\($0)") }

    /// Where a LoRA with modules that match no layer of the model is reported (once per model and file).
    private let logger: Logger?

    init(capacityBytes: Int, logger: Logger? = nil) {
        self.logger = logger
        let forget = ForgetResolved()
        self.files = BoundedCache(
            capacityBytes: capacityBytes, metric: "swiftdiffusion_adapter_cache_total",
            dimensions: [("kind", "lora")], exportsLookups: false, onEvict: { key, _ in forget.library?.forgetFile(key.path) })
        forget.library = self
    }

    /// Cache statistics (hits, misses, evictions, bytes) for metrics and tests.
    var statistics: CacheStatistics { files.statistics }

    private static func key(_ path: String) throws -> FileKey {
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        return FileKey(
            path: path, size: attributes[.size] as? Int ?? 0, modified: attributes[.modificationDate] as? Date ?? .distantPast)
    }

    /// True when the file is parsed and cached (no I/O needed).
    func isCached(_ path: String) -> Bool {
        guard let key = try? Self.key(path) else { return false }
        return files.contains(key)
    }

    /// The parsed file, from the cache or read now.
    func network(at path: String) throws -> LoRANetwork {
        try files.value(for: try Self.key(path)) {
            let network = try LoRANetwork.load(contentsOf: URL(fileURLWithPath: path))
            return (network, network.bytes)
        }
    }

    /// One thread: what a loader runs (`onLoader`) runs on the loader alone, never on the shared pool the UNet may be
    /// using at the same time.
    private static let serialPool = ComputePool(threadCount: 1)

    /// Runs `body` on the calling loader thread alone (see `serialPool`).
    static func onLoader<R>(_ body: () throws -> R) rethrows -> R { try ComputePool.run(on: serialPool, body) }

    /// The file's key map against one model, cached per (model, file).
    func resolve(path: String, modelKey: String, targets: LoRATargets) throws -> ResolvedLoRA {
        let cacheKey = modelKey + "\u{0}" + path
        lock.lock()
        if let cached = resolved[cacheKey] {
            lock.unlock()
            return cached
        }
        lock.unlock()
        let network = try network(at: path)
        let result = try LoRAKeyMap.resolve(network, targets: targets)
        let name = URL(fileURLWithPath: path).lastPathComponent
        if !result.unmatched.isEmpty {
            logger?.warning(
                "LoRA modules match no layer of the model and are ignored",
                metadata: [
                    "lora": "\(name)", "model": "\(modelKey)", "count": "\(result.unmatched.count)",
                    "first": "\(result.unmatched.prefix(3).joined(separator: ", "))",
                ])
        }
        if !network.ignoredKeys.isEmpty {
            logger?.warning(
                "LoRA tensors of unsupported variants are ignored", metadata: ["lora": "\(name)", "count": "\(network.ignoredKeys.count)"])
        }
        lock.lock()
        resolved[cacheKey] = result
        lock.unlock()
        return result
    }

    private func forgetFile(_ path: String) {
        lock.lock()
        resolved = resolved.filter { !$0.key.hasSuffix("\u{0}" + path) }
        lock.unlock()
    }

    /// Forgets every parsed file and key map.
    func dropAll() {
        files.removeAll { _ in true }
        lock.withLock { resolved = [:] }
    }

    /// Forgets key maps of a model that was unloaded.
    func forgetModel(_ modelKey: String) {
        lock.lock()
        resolved = resolved.filter { !$0.key.hasPrefix(modelKey + "\u{0}") }
        lock.unlock()
    }

    /// Reads files on the last loader thread ahead of need (the next queued job's LoRAs).
    func prefetch(_ paths: [String]) {
        for path in paths where !isCached(path) {
            loaders[loaders.count - 1].submit { [self] in _ = try? Self.onLoader { try network(at: path) } }
        }
    }
}

/// Breaks the init-time cycle between the library and its cache's eviction callback.
private final class ForgetResolved: @unchecked Sendable {
    weak var library: LoRALibrary?
}
