import Foundation
import GRDB
import Serving

/// The server's own job records (its SQLite job store, opened read-only) as trace records.
public enum TraceExport {
    /// Reads at most `limit` jobs, oldest first. Opens the database read-only: a running server keeps writing.
    public static func export(storePath: String, service: String = "local", instance: String? = nil, limit: Int = 1_000_000) throws -> [TraceRecord] {
        guard FileManager.default.fileExists(atPath: storePath) else { throw TraceError.noSuchFile(storePath) }
        guard limit >= 1 else { throw TraceError.invalid("--limit must be at least 1") }
        var configuration = Configuration()
        configuration.readonly = true
        configuration.busyMode = .timeout(5)
        let rows: [Data]
        do {
            let database = try DatabaseQueue(path: storePath, configuration: configuration)
            rows = try database.read { db in
                guard try db.tableExists("job") else { throw TraceError.invalid("\(storePath) is not a SwiftDiffusion job store (no job table)") }
                return try Data.fetchAll(db, sql: "SELECT record FROM job ORDER BY created_at, id LIMIT ?", arguments: [limit])
            }
        } catch let error as TraceError {
            throw error
        } catch {
            throw TraceError.unreadable(storePath, "\(error)")
        }
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .millisecondsSince1970
        let host = instance ?? ProcessInfo.processInfo.hostName
        return try rows.enumerated().map { index, data in
            do {
                return record(try decoder.decode(JobRecord.self, from: data), service: service, instance: host)
            } catch {
                throw TraceError.malformed(path: storePath, line: index + 1, reason: "job record \(index + 1) cannot be decoded: \(error)")
            }
        }
    }

    /// One job as a trace record. The size the job ran at comes from the spec or, when the request left it to the
    /// model, from the infotext's `Size: WxH`. Cache hits come from the job's `cache` record (true when every LoRA,
    /// or every ControlNet, of the job was in memory; nil when it has none); for records written before that field
    /// existed, the LoRA hit is false when LoRAs were patched in late (bounded asynchronous loading only defers
    /// LoRAs that were not cached) and otherwise not known.
    public static func record(_ job: JobRecord, service: String, instance: String) -> TraceRecord {
        var width = job.spec.width ?? 0, height = job.spec.height ?? 0
        if width == 0 || height == 0, let info = job.infotext, let range = info.range(of: #"Size: (\d+)x(\d+)"#, options: .regularExpression) {
            let parts = info[range].dropFirst(6).split(separator: "x")
            if parts.count == 2, let w = Int(parts[0]), let h = Int(parts[1]) { width = w; height = h }
        }
        let loraHit: Bool? =
            job.spec.loras.isEmpty ? nil : job.cache.map { $0.loraMisses == 0 } ?? (job.loraPatchStep == nil ? nil : false)
        var timings = job.timings
        let queue = timings.removeValue(forKey: "queue"), total = timings.removeValue(forKey: "total")
        let outcome: String
        switch job.status {
        case .succeeded, .failed, .cancelled: outcome = job.status.rawValue
        case .queued, .running: outcome = "unfinished"
        }
        return TraceRecord(
            timestamp: job.createdAt.timeIntervalSince1970, service: job.spec.metadata["service"] ?? service,
            instance: job.spec.metadata["instance"] ?? instance, baseModel: job.spec.model ?? "default",
            controlnets: job.spec.controls.map(\.model), loras: job.spec.loras.map(\.name), width: width, height: height, steps: job.spec.steps,
            queueS: queue, totalS: total, timings: timings, loraCacheHit: loraHit,
            controlnetCacheHit: job.spec.controls.isEmpty ? nil : job.cache.map { $0.controlnetMisses == 0 }, outcome: outcome, requestId: job.id, loraPatchStep: job.loraPatchStep, error: job.error)
    }
}
