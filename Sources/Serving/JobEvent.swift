import Foundation

/// Something that happened to a job, as pushed to its Server-Sent Events stream.
public struct JobEvent: Codable, Sendable, Equatable {
    /// `queued`, `started`, `stage`, `step`, `completed`, `failed` or `cancelled`.
    public var type: String
    public var jobID: String
    public var status: JobStatus
    public var stage: String?
    public var step: Int?
    public var total: Int?
    public var etaSeconds: Double?
    public var queuePosition: Int?
    public var error: String?

    enum CodingKeys: String, CodingKey {
        case type, status, stage, step, total, error
        case jobID = "job_id"
        case etaSeconds = "eta_seconds"
        case queuePosition = "queue_position"
    }

    public init(
        type: String, job: JobRecord, stage: String? = nil, step: Int? = nil, total: Int? = nil, etaSeconds: Double? = nil,
        queuePosition: Int? = nil, error: String? = nil
    ) {
        self.type = type
        self.jobID = job.id
        self.status = job.status
        self.stage = stage
        self.step = step
        self.total = total
        self.etaSeconds = etaSeconds
        self.queuePosition = queuePosition
        self.error = error
    }

    /// True for the last event a job sends.
    public var isTerminal: Bool { type == "completed" || type == "failed" || type == "cancelled" }
}

/// Fans job events out to every subscriber of that job.
///
/// The terminal events of recently finished jobs are remembered: a client that subscribes while its job
/// finishes (the job was read as running, then finished before the subscription was registered) still
/// gets the terminal event instead of waiting forever.
actor JobEventHub {
    private var subscribers: [String: [UUID: AsyncStream<JobEvent>.Continuation]] = [:]
    private var finished: [String: JobEvent] = [:]
    private var finishedOrder: [String] = []
    private let rememberedJobs = 4096

    /// A stream of the job's events, starting with `current` (the job's state now). It ends after a terminal event.
    func subscribe(_ jobID: String, current: JobEvent) -> AsyncStream<JobEvent> {
        let (stream, continuation) = AsyncStream.makeStream(of: JobEvent.self, bufferingPolicy: .bufferingNewest(256))
        continuation.yield(current)
        if current.isTerminal {
            continuation.finish()
            return stream
        }
        if let terminal = finished[jobID] {
            continuation.yield(terminal)
            continuation.finish()
            return stream
        }
        let token = UUID()
        subscribers[jobID, default: [:]][token] = continuation
        continuation.onTermination = { [weak self] _ in
            Task { await self?.remove(jobID, token) }
        }
        return stream
    }

    /// Replicas on a shared store: events leave through the store and come back, to every replica, through `deliver`.
    private var relay: (@Sendable (JobEvent) async throws -> Void)?

    func setRelay(_ relay: (@Sendable (JobEvent) async throws -> Void)?) { self.relay = relay }

    func publish(_ event: JobEvent) async {
        if let relay {
            do {
                try await relay(event)
                return
            } catch {
                // The store is unreachable: this replica's own subscribers still hear it.
            }
        }
        deliver(event)
    }

    func deliver(_ event: JobEvent) {
        if event.isTerminal {
            finished[event.jobID] = event
            finishedOrder.append(event.jobID)
            if finishedOrder.count > rememberedJobs { finished[finishedOrder.removeFirst()] = nil }
        }
        guard let listeners = subscribers[event.jobID] else { return }
        for continuation in listeners.values {
            continuation.yield(event)
            if event.isTerminal { continuation.finish() }
        }
        if event.isTerminal { subscribers[event.jobID] = nil }
    }

    private func remove(_ jobID: String, _ token: UUID) {
        subscribers[jobID]?[token] = nil
        if subscribers[jobID]?.isEmpty == true { subscribers[jobID] = nil }
    }

    var subscriberCount: Int { subscribers.values.reduce(0) { $0 + $1.count } }
}
