import Foundation
import GRDB

/// Job records and result images in an SQLite database (GRDB), the default store: queued jobs survive a
/// restart and resume; finished ones are kept until the retention limit.
public final class SQLiteJobStore: JobStore {
    private let database: DatabaseQueue
    private static var encoder: JSONEncoder { JobStoreCoding.encoder }
    private static var decoder: JSONDecoder { JobStoreCoding.decoder }

    /// Opens (or creates) the database at `path` and migrates it.
    public init(path: String) throws {
        let directory = URL(fileURLWithPath: path).deletingLastPathComponent()
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        var configuration = Configuration()
        configuration.busyMode = .timeout(5)
        // Write-ahead logging with normal syncing: each job makes a few small writes, and in the default
        // rollback-journal mode they cost more than a small job's compute.
        configuration.prepareDatabase { db in
            try db.execute(sql: "PRAGMA journal_mode = WAL")
            try db.execute(sql: "PRAGMA synchronous = NORMAL")
        }
        database = try DatabaseQueue(path: path, configuration: configuration)
        try Self.migrator.migrate(database)
    }

    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.create(table: "job") { table in
                table.column("id", .text).primaryKey()
                table.column("status", .text).notNull().indexed()
                table.column("created_at", .double).notNull()
                table.column("finished_at", .double)
                table.column("record", .blob).notNull()
            }
            try db.create(table: "job_output") { table in
                table.column("job_id", .text).notNull().references("job", onDelete: .cascade)
                table.column("position", .integer).notNull()
                table.column("data", .blob).notNull()
                table.primaryKey(["job_id", "position"])
            }
        }
        return migrator
    }

    public func insert(_ job: JobRecord) async throws {
        let data = try Self.encoder.encode(job)
        try await database.write { db in
            try db.execute(
                sql: "INSERT INTO job (id, status, created_at, finished_at, record) VALUES (?, ?, ?, ?, ?)",
                arguments: [job.id, job.status.rawValue, job.createdAt.timeIntervalSince1970, job.finishedAt?.timeIntervalSince1970, data])
        }
    }

    public func update(_ job: JobRecord) async throws {
        let data = try Self.encoder.encode(job)
        try await database.write { db in
            try db.execute(
                sql: "UPDATE job SET status = ?, finished_at = ?, record = ? WHERE id = ?",
                arguments: [job.status.rawValue, job.finishedAt?.timeIntervalSince1970, data, job.id])
        }
    }

    public func job(id: String) async throws -> JobRecord? {
        let data = try await database.read { db in
            try Data.fetchOne(db, sql: "SELECT record FROM job WHERE id = ?", arguments: [id])
        }
        return try data.map { try Self.decoder.decode(JobRecord.self, from: $0) }
    }

    public func unfinishedJobs() async throws -> [JobRecord] {
        let rows = try await database.read { db in
            try Data.fetchAll(
                db, sql: "SELECT record FROM job WHERE status IN ('queued', 'running') ORDER BY created_at, id")
        }
        return try rows.map { try Self.decoder.decode(JobRecord.self, from: $0) }
    }

    public func saveOutputs(jobID: String, images: [Data]) async throws {
        try await database.write { db in
            try db.execute(sql: "DELETE FROM job_output WHERE job_id = ?", arguments: [jobID])
            for (position, image) in images.enumerated() {
                try db.execute(
                    sql: "INSERT INTO job_output (job_id, position, data) VALUES (?, ?, ?)", arguments: [jobID, position, image])
            }
        }
    }

    public func outputs(jobID: String) async throws -> [Data] {
        try await database.read { db in
            try Data.fetchAll(db, sql: "SELECT data FROM job_output WHERE job_id = ? ORDER BY position", arguments: [jobID])
        }
    }

    public func deleteFinished(before date: Date) async throws -> Int {
        try await database.write { db in
            try db.execute(sql: "PRAGMA foreign_keys = ON")
            try db.execute(
                sql: "DELETE FROM job_output WHERE job_id IN (SELECT id FROM job WHERE finished_at IS NOT NULL AND finished_at < ?)",
                arguments: [date.timeIntervalSince1970])
            try db.execute(
                sql: "DELETE FROM job WHERE finished_at IS NOT NULL AND finished_at < ?", arguments: [date.timeIntervalSince1970])
            return db.changesCount
        }
    }

    public func counts() async throws -> [JobStatus: Int] {
        let rows = try await database.read { db in
            try Row.fetchAll(db, sql: "SELECT status, COUNT(*) AS n FROM job GROUP BY status")
        }
        var result: [JobStatus: Int] = [:]
        for row in rows {
            if let status = JobStatus(rawValue: row["status"]) { result[status] = row["n"] }
        }
        return result
    }
}
