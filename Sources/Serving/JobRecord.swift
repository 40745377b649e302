import Foundation

public enum JobStatus: String, Codable, Sendable, CaseIterable {
    case queued, running, succeeded, failed, cancelled

    public var isFinished: Bool { self == .succeeded || self == .failed || self == .cancelled }
}

/// Where a running job is.
public struct JobProgress: Codable, Sendable, Equatable {
    public var stage: String
    public var step: Int
    public var total: Int

    public init(stage: String = "queued", step: Int = 0, total: Int = 0) {
        self.stage = stage
        self.step = step
        self.total = total
    }
}

/// A job's state as stored and reported.
public struct JobRecord: Codable, Sendable, Equatable {
    public var id: String
    public var spec: JobSpec
    public var status: JobStatus
    public var progress: JobProgress
    public var createdAt: Date
    public var startedAt: Date?
    public var finishedAt: Date?
    /// Seconds per stage, plus "queue" (waiting) and "total".
    public var timings: [String: Double]
    public var error: String?
    /// Number of result images stored for the job.
    public var imageCount: Int
    /// AUTOMATIC1111-style parameters text of the result.
    public var infotext: String?
    /// The step before which deferred LoRAs were patched in (bounded asynchronous loading), if any.
    public var loraPatchStep: Int?
    /// How many times the job was started (a job interrupted by a restart runs again).
    public var attempts: Int

    public init(id: String, spec: JobSpec, createdAt: Date = Date()) {
        self.id = id
        self.spec = spec
        self.status = .queued
        self.progress = JobProgress()
        self.createdAt = createdAt
        self.timings = [:]
        self.imageCount = 0
        self.attempts = 0
    }
}
