import Foundation
import Serving

/// AUTOMATIC1111's global options as this server keeps them: the checkpoint A1111 requests use when they name none
/// (`POST /sdapi/v1/options` with `sd_model_checkpoint`), the CLIP skip (`CLIP_stop_at_last_layers`), and whatever
/// other keys clients set (returned by `GET /options`, otherwise unused). Also the short model hashes A1111 shows
/// in titles ("name [hash]"), and which running job `/interrupt` stopped.
///
/// Only the A1111 surface reads these; the native API keeps the server's default model.
final class A1111Settings: @unchecked Sendable {
    private let lock = NSLock()
    private var checkpoint: String?
    private var clipStopAtLastLayers = 1
    private var stored: [String: Any] = [:]
    private var hashes: [String: (stamp: String, hash: String)] = [:]
    private var stoppedJob: (id: String, how: Stop)?

    /// How `/interrupt` or `/skip` stopped a job.
    enum Stop {
        case interrupted
        case skipped
    }

    private func locked<T>(_ body: () throws -> T) rethrows -> T {
        lock.lock()
        defer { lock.unlock() }
        return try body()
    }

    /// The checkpoint id A1111 requests without an override use: the one set through `/options`, while it still
    /// exists, else the server's default.
    func checkpointID(_ repository: ModelRepository) -> String? {
        let chosen = locked { checkpoint }
        if let chosen, repository.entry(.checkpoint, chosen) != nil { return chosen }
        return repository.defaultModel
    }

    func setCheckpoint(_ id: String) { locked { checkpoint = id } }

    var clipSkip: Int { locked { clipStopAtLastLayers } }

    func setClipSkip(_ value: Int) { locked { clipStopAtLastLayers = value } }

    /// Keys set through `POST /options` that have no effect here.
    var storedOptions: [String: Any] { locked { stored } }

    func store(_ key: String, _ value: Any) { locked { stored[key] = value } }

    func markStopped(_ jobID: String, skipped: Bool) { locked { stoppedJob = (jobID, skipped ? .skipped : .interrupted) } }

    /// How the job was stopped, if it was.
    func stopped(_ jobID: String) -> Stop? { locked { stoppedJob?.id == jobID ? stoppedJob?.how : nil } }

    // MARK: - Hashes

    /// "name [hash]", as A1111 titles checkpoints.
    func title(_ entry: ModelEntry) -> String { "\(entry.id) [\(shortHash(entry))]" }

    /// A 10-hex-digit content hash, computed once per file version: FNV-1a over the file size and a sample of the
    /// weights (all of a small file; else the first 64 KiB and the 64 KiB at 1 MiB, where A1111's legacy hash
    /// reads). Not A1111's full-file SHA-256, which takes seconds on multi-GB checkpoints.
    func shortHash(_ entry: ModelEntry) -> String {
        let file = Self.weightsFile(entry)
        let attributes = try? FileManager.default.attributesOfItem(atPath: file.path)
        let size = (attributes?[.size] as? Int) ?? 0
        let modified = (attributes?[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0
        let stamp = "\(file.path)|\(size)|\(modified)"
        if let cached = locked({ hashes[entry.path] }), cached.stamp == stamp { return cached.hash }
        let hash = Self.sampleHash(file, size: size)
        locked { hashes[entry.path] = (stamp, hash) }
        return hash
    }

    /// The file whose bytes identify a model: the file itself, or a diffusers folder's UNet (ControlNet) weights.
    static func weightsFile(_ entry: ModelEntry) -> URL {
        let url = URL(fileURLWithPath: entry.path).resolvingSymlinksInPath()
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory), isDirectory.boolValue else {
            return url
        }
        for folder in [url.appendingPathComponent("unet"), url] {
            let names = (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []
            if let weights = names.filter({ $0.hasSuffix(".safetensors") }).sorted().first {
                return folder.appendingPathComponent(weights)
            }
        }
        for name in ["model_index.json", "config.json"]
        where FileManager.default.fileExists(atPath: url.appendingPathComponent(name).path) {
            return url.appendingPathComponent(name)
        }
        return url
    }

    static func sampleHash(_ file: URL, size: Int) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        func mix(_ bytes: Data) {
            for byte in bytes {
                hash ^= UInt64(byte)
                hash = hash &* 0x0000_0100_0000_01b3
            }
        }
        mix(Data(String(size).utf8))
        if let handle = try? FileHandle(forReadingFrom: file) {
            defer { try? handle.close() }
            if size <= 2 << 20 {
                mix((try? handle.readToEnd()) ?? Data())
            } else {
                mix((try? handle.read(upToCount: 0x10000)) ?? Data())
                try? handle.seek(toOffset: 0x100000)
                mix((try? handle.read(upToCount: 0x10000)) ?? Data())
            }
        }
        return String(String(format: "%016llx", hash).prefix(10))
    }
}
