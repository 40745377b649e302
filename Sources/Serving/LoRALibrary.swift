import Adapters
import Foundation
import Logging

/// Parsed LoRA files and their key maps, cached, plus a background thread that loads them.
///
/// Reading and converting a LoRA file costs tens to hundreds of milliseconds; resolving its keys against a
/// model a few more. Both are cached (files by path, size and modification time, least recently used first
/// out beyond `capacityBytes`; key maps per model), so a popular LoRA costs nothing after its first use.
final class LoRALibrary: @unchecked Sendable {
    private struct FileKey: Hashable {
        let path: String
        let size: Int
        let modified: Date
    }

    private let lock = NSLock()
    private var files: [FileKey: (network: LoRANetwork, bytes: Int, lastUse: UInt64)] = [:]
    private var resolved: [String: ResolvedLoRA] = [:]
    private var clock: UInt64 = 0
    private let capacityBytes: Int
    private let loader = ComputeThread(name: "lora-loader")

    /// Cache statistics for metrics and tests.
    private(set) var hits = 0
    private(set) var misses = 0

    /// Where a LoRA with modules that match no layer of the model is reported (once per model and file).
    private let logger: Logger?

    init(capacityBytes: Int, logger: Logger? = nil) {
        self.logger = logger
        self.capacityBytes = capacityBytes
    }

    private static func key(_ path: String) throws -> FileKey {
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        return FileKey(
            path: path, size: attributes[.size] as? Int ?? 0, modified: attributes[.modificationDate] as? Date ?? .distantPast)
    }

    /// True when the file is parsed and cached (no I/O needed).
    func isCached(_ path: String) -> Bool {
        guard let key = try? Self.key(path) else { return false }
        lock.lock()
        defer { lock.unlock() }
        return files[key] != nil
    }

    /// The parsed file, from the cache or read now.
    func network(at path: String) throws -> LoRANetwork {
        let key = try Self.key(path)
        lock.lock()
        clock += 1
        if var entry = files[key] {
            entry.lastUse = clock
            files[key] = entry
            hits += 1
            lock.unlock()
            return entry.network
        }
        misses += 1
        lock.unlock()
        let network = try LoRANetwork.load(contentsOf: URL(fileURLWithPath: path))
        let bytes = network.modules.reduce(0) { $0 + 4 * ($1.down.count + $1.up.count) }
        lock.lock()
        clock += 1
        files[key] = (network, bytes, clock)
        evict()
        lock.unlock()
        return network
    }

    /// The file's key map against one model, cached per (model, file).
    func resolve(path: String, modelKey: String, targets: LoRATargets) throws -> ResolvedLoRA {
        let cacheKey = modelKey + "\u{0}" + path
        lock.lock()
        if let cached = resolved[cacheKey] {
            lock.unlock()
            return cached
        }
        lock.unlock()
        let result = try LoRAKeyMap.resolve(try network(at: path), targets: targets)
        if !result.unmatched.isEmpty {
            logger?.warning(
                "LoRA modules match no layer of the model and are ignored",
                metadata: [
                    "lora": "\(URL(fileURLWithPath: path).lastPathComponent)", "model": "\(modelKey)", "count": "\(result.unmatched.count)",
                    "first": "\(result.unmatched.prefix(3).joined(separator: ", "))",
                ])
        }
        lock.lock()
        resolved[cacheKey] = result
        lock.unlock()
        return result
    }

    /// Forgets key maps of a model that was unloaded.
    func forgetModel(_ modelKey: String) {
        lock.lock()
        resolved = resolved.filter { !$0.key.hasPrefix(modelKey + "\u{0}") }
        lock.unlock()
    }

    private func evict() {
        var total = files.values.reduce(0) { $0 + $1.bytes }
        while total > capacityBytes, files.count > 1, let oldest = files.min(by: { $0.value.lastUse < $1.value.lastUse }) {
            files[oldest.key] = nil
            resolved = resolved.filter { !$0.key.hasSuffix("\u{0}" + oldest.key.path) }
            total -= oldest.value.bytes
        }
    }

    /// Reads files on the loader thread ahead of need (the next queued job's LoRAs).
    func prefetch(_ paths: [String]) {
        for path in paths where !isCached(path) {
            loader.submit { [self] in _ = try? network(at: path) }
        }
    }

    /// Starts loading and resolving `specs` on the loader thread; the handle is polled by the denoising loop.
    func load(_ specs: [(path: String, unetWeight: Float, textEncoderWeight: Float)], modelKey: String, targets: LoRATargets) -> PendingLoRAs {
        let pending = PendingLoRAs()
        loader.submit { [self] in
            do {
                let applications = try specs.map { spec in
                    LoRAApplication(
                        try resolve(path: spec.path, modelKey: modelKey, targets: targets), unetWeight: spec.unetWeight,
                        textEncoderWeight: spec.textEncoderWeight)
                }
                pending.finish(.success(applications))
            } catch {
                pending.finish(.failure(error))
            }
        }
        return pending
    }
}

/// LoRAs loading in the background: a one-shot result the denoising loop polls or waits for.
final class PendingLoRAs: @unchecked Sendable {
    private let condition = NSCondition()
    private var result: Result<[LoRAApplication], Error>?

    func finish(_ value: Result<[LoRAApplication], Error>) {
        condition.lock()
        result = value
        condition.broadcast()
        condition.unlock()
    }

    func poll() throws -> [LoRAApplication]? {
        condition.lock()
        defer { condition.unlock() }
        return try result?.get()
    }

    func wait() throws -> [LoRAApplication] {
        condition.lock()
        while result == nil { condition.wait() }
        defer { condition.unlock() }
        return try result!.get()
    }

    var isReady: Bool {
        condition.lock()
        defer { condition.unlock() }
        return result != nil
    }
}
