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

/// Cache hits and misses of one job: the base model, its LoRAs (parsed and key-mapped) and its ControlNets.
public struct CacheUse: Codable, Sendable, Equatable {
    public var modelHit: Bool
    public var loraHits: Int
    public var loraMisses: Int
    public var controlnetHits: Int
    public var controlnetMisses: Int

    public init(modelHit: Bool = false, loraHits: Int = 0, loraMisses: Int = 0, controlnetHits: Int = 0, controlnetMisses: Int = 0) {
        self.modelHit = modelHit
        self.loraHits = loraHits
        self.loraMisses = loraMisses
        self.controlnetHits = controlnetHits
        self.controlnetMisses = controlnetMisses
    }

    enum CodingKeys: String, CodingKey {
        case modelHit = "model_hit", loraHits = "lora_hits", loraMisses = "lora_misses", controlnetHits = "controlnet_hits"
        case controlnetMisses = "controlnet_misses"
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
    /// Which of the job's model and adapters were already in memory when it ran (nil for records written before
    /// the field existed, and for jobs that did not run).
    public var cache: CacheUse?

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
