import Foundation

/// Durable job records and their result images.
public protocol JobStore: Sendable {
    func insert(_ job: JobRecord) async throws
    func update(_ job: JobRecord) async throws
    func job(id: String) async throws -> JobRecord?
    /// Queued and running jobs, oldest first: what a restarted server picks up again.
    func unfinishedJobs() async throws -> [JobRecord]
    func saveOutputs(jobID: String, images: [Data]) async throws
    func outputs(jobID: String) async throws -> [Data]
    /// Deletes finished jobs (and their images) that finished before `date`; returns how many.
    func deleteFinished(before date: Date) async throws -> Int
    /// Number of jobs per status.
    func counts() async throws -> [JobStatus: Int]
}

/// A store that keeps everything in memory (tests, `--store memory`): nothing survives a restart.
public actor InMemoryJobStore: JobStore {
    private var jobs: [String: JobRecord] = [:]
    private var images: [String: [Data]] = [:]

    public init() {}

    public func insert(_ job: JobRecord) throws { jobs[job.id] = job }
    public func update(_ job: JobRecord) throws { jobs[job.id] = job }
    public func job(id: String) -> JobRecord? { jobs[id] }

    public func unfinishedJobs() -> [JobRecord] {
        jobs.values.filter { !$0.status.isFinished }.sorted { ($0.createdAt, $0.id) < ($1.createdAt, $1.id) }
    }

    public func saveOutputs(jobID: String, images: [Data]) { self.images[jobID] = images }
    public func outputs(jobID: String) -> [Data] { images[jobID] ?? [] }

    public func deleteFinished(before date: Date) -> Int {
        let old = jobs.values.filter { $0.status.isFinished && ($0.finishedAt ?? .distantFuture) < date }.map(\.id)
        for id in old {
            jobs[id] = nil
            images[id] = nil
        }
        return old.count
    }

    public func counts() -> [JobStatus: Int] {
        Dictionary(grouping: jobs.values, by: \.status).mapValues(\.count)
    }
}

/// How every job store writes job records and events: JSON with dates in milliseconds since 1970, one encoding for
/// the SQLite and the PostgreSQL store.
enum JobStoreCoding {
    static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .millisecondsSince1970
        return encoder
    }()
    static let decoder: JSONDecoder = {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .millisecondsSince1970
        return decoder
    }()
}
