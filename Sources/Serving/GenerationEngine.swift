import Foundation
import Logging
import Metrics
import Pipelines
import ServiceLifecycle

/// The one engine the CLI, the HTTP server and the benchmarks drive: accepts jobs into a bounded queue,
/// stores them durably, runs them one at a time on a dedicated compute thread, reports progress as events,
/// and cancels queued or running jobs.
public actor GenerationEngine: Service {
    public nonisolated let configuration: EngineConfiguration
    public nonisolated let repository: ModelRepository
    let store: any JobStore
    let logger: Logger
    /// The request-to-PNG path every front end shares.
    public nonisolated let imageEngine: ImageEngine
    let compute = ComputeThread(name: "generation")
    /// Submission checks decode images and read model configs: off the cooperative pool, which serves HTTP.
    let validation = ComputeThread(name: "validation")
    let events = JobEventHub()

    private var queue: JobQueue
    private var lastGroup: String?
    var running: (record: JobRecord, control: JobControl)?
    var wakeUp: CheckedContinuation<Void, Never>?
    private var started = false
    /// Recent job durations, for Retry-After and ETA estimates.
    var recentDurations: [Double] = []
    /// Submissions accepted but still being written to the store: they count against the capacity.
    private var pendingSubmissions = 0
    /// Jobs cancelled after the run loop took them from the queue but before they started running.
    private var cancelledBeforeStart: Set<String> = []
    /// Jobs submitted before the store's unfinished jobs were restored (those are this process's, not leftovers).
    private var submittedBeforeRestore: Set<String> = []
    private var restored = false
    /// The job the run loop has taken from the queue and is executing (set from the pop until `execute` returns).
    private var taken: String?
    /// Set when the store is shared by several replicas (PostgreSQL): jobs are claimed from the store under a lease
    /// instead of taken from `queue` (GenerationEngine+Replica.swift).
    var replica: ReplicaState?

    public init(configuration: EngineConfiguration, repository: ModelRepository, store: any JobStore, logger: Logger) {
        self.configuration = configuration
        self.repository = repository
        self.store = store
        self.logger = logger
        self.imageEngine = ImageEngine(repository: repository, configuration: configuration, logger: logger)
        self.queue = JobQueue(capacity: configuration.queueCapacity, maximumWait: configuration.maximumGroupingWait)
        self.replica = (store as? any SharedJobStore).map { ReplicaState(store: $0, configuration: configuration) }
    }

    // MARK: - Service

    /// Re-queues jobs a previous run left unfinished, then runs jobs until the service group shuts down.
    public func run() async throws {
        // Replicas on a shared store do not restore: expired leases hand a dead replica's jobs to the others.
        if replica == nil { try await restoreUnfinishedJobs() }
        let replicaTasks = await startReplicaTasks()
        defer { for task in replicaTasks { task.cancel() } }
        started = true
        let retentionTask = Task { [weak self] in await self?.enforceRetentionPeriodically() }
        defer { retentionTask.cancel() }
        // Graceful shutdown lets the running job finish. Cancellation stops at once: the running job stops at its
        // next step and stays recorded as running, so the next start runs it again (as after a crash).
        await withTaskCancellationHandler {
            await withGracefulShutdownHandler {
                await self.runLoop()
            } onGracefulShutdown: {
                Task { await self.shutDown() }
            }
        } onCancel: {
            Task { await self.shutDown(interruptingTheRunningJob: true) }
        }
    }

    /// True once the engine runs jobs (`/readyz`).
    public var isReady: Bool { started }

    var shuttingDown = false

    private func shutDown(interruptingTheRunningJob: Bool = false) {
        if interruptingTheRunningJob { running?.control.cancel() }
        shuttingDown = true
        wakeUp?.resume()
        wakeUp = nil
    }

    private func restoreUnfinishedJobs() async throws {
        let unfinished = try await store.unfinishedJobs()
        // Jobs submitted while the store was read are this process's own: queued already, or cancelled or run
        // since (re-queueing those would run a cancelled job or run one twice).
        let submittedMeanwhile = submittedBeforeRestore
        submittedBeforeRestore = []
        restored = true
        for var job in unfinished where !submittedMeanwhile.contains(job.id) && !queue.entries.contains(where: { $0.id == job.id }) {
            if job.status == .running && job.attempts >= configuration.maximumJobAttempts {
                // The process ended while running it, every time it was tried: most likely the job itself ends the
                // process. Running it again would end this one too.
                job.status = .failed
                job.finishedAt = Date()
                job.error =
                    "poison job: the server process ended while running this job \(job.attempts) times; it is not run again"
                try await store.update(job)
                Counter(label: "swiftdiffusion_jobs_total", dimensions: [("outcome", "poisoned")]).increment()
                logger.error("poison job failed without running", metadata: ["job": "\(job.id)", "attempts": "\(job.attempts)"])
                continue
            }
            if job.status == .running {
                // Interrupted by the restart: it runs again from the start.
                job.status = .queued
                job.progress = JobProgress()
                job.startedAt = nil
                try await store.update(job)
            }
            queue.append(id: job.id, group: job.spec.groupKey, at: job.createdAt)
        }
        if !unfinished.isEmpty { logger.info("resuming queued jobs", metadata: ["count": "\(unfinished.count)"]) }
        Gauge(label: "swiftdiffusion_queue_depth").record(queue.count)
    }

    private func runLoop() async {
        while !Task.isCancelled && !shuttingDown {
            if replica != nil {
                await claimAndRun()
                continue
            }
            guard let next = queue.popNext(lastGroup: lastGroup) else {
                await withCheckedContinuation { continuation in wakeUp = continuation }
                continue
            }
            Gauge(label: "swiftdiffusion_queue_depth").record(queue.count)
            taken = next.id
            await execute(next.id)
            taken = nil
            lastGroup = next.group
        }
    }

    func signalWork() {
        wakeUp?.resume()
        wakeUp = nil
    }

    // MARK: - Jobs

    /// Validates and queues a job. Throws `EngineError` (invalid, not found, queue full).
    public func submit(_ spec: JobSpec) async throws -> JobRecord {
        var spec = spec
        let imageEngine = self.imageEngine
        let checked = spec
        try await validation.run { _ = try imageEngine.prepare(checked) }
        guard replica != nil || queue.count + pendingSubmissions < queue.capacity else {
            Counter(label: "swiftdiffusion_jobs_rejected_total", dimensions: [("reason", "queue_full")]).increment()
            throw EngineError.queueFull(retryAfter: retryAfterEstimate())
        }
        if spec.seed == nil { spec.seed = UInt64.random(in: 0..<(1 << 32)) }
        if spec.model == nil { spec.model = repository.defaultModel }
        let job = JobRecord(id: UUID().uuidString.lowercased(), spec: spec)
        pendingSubmissions += 1
        // Before the store sees it: a restore reading the store meanwhile must not queue it a second time.
        if !restored { submittedBeforeRestore.insert(job.id) }
        do {
            if replica != nil { try await admitShared(job) } else { try await store.insert(job) }
        } catch {
            pendingSubmissions -= 1
            throw error
        }
        pendingSubmissions -= 1
        if replica == nil { queue.append(id: job.id, group: spec.groupKey) }
        Gauge(label: "swiftdiffusion_queue_depth").record(queueDepth)
        Counter(label: "swiftdiffusion_jobs_submitted_total").increment()
        await events.publish(JobEvent(type: "queued", job: job, queuePosition: queuePosition(job.id)))
        signalWork()
        return job
    }

    public func job(_ id: String) async throws -> JobRecord {
        guard let job = try await store.job(id: id) else { throw EngineError.notFound("no job '\(id)'") }
        if let running, running.record.id == id { return running.record }
        return job
    }

    public func outputs(_ id: String) async throws -> [Data] {
        let job = try await self.job(id)
        guard job.status == .succeeded else { throw EngineError.conflict("job '\(id)' has no results (status \(job.status.rawValue))") }
        return try await store.outputs(jobID: id)
    }

    /// 1-based position of a queued job, nil otherwise.
    public func queuePosition(_ id: String) -> Int? {
        queue.position(of: id, lastGroup: running?.record.spec.groupKey ?? lastGroup)
    }

    public var queueDepth: Int { replica?.queueDepth ?? queue.count }

    /// The running job's record (progress included), if any.
    public var currentJob: JobRecord? { running?.record }

    /// Cancels a queued job at once, or a running one at its next step boundary.
    @discardableResult
    public func cancel(_ id: String) async throws -> JobRecord {
        if let running, running.record.id == id {
            running.control.cancel()
            return running.record
        }
        if replica != nil { return try await cancelShared(id) }
        // Decide before any suspension, so the run loop cannot start the job while its record is read: a queued
        // job leaves the queue; a job the run loop has taken but not started is flagged, and `execute` checks the
        // flag before it starts (a started job is `running`, handled above).
        let wasQueued = queue.remove(id: id)
        let takenNotStarted = !wasQueued && taken == id
        if takenNotStarted { cancelledBeforeStart.insert(id) }
        var job = try await self.job(id)
        if !wasQueued && !takenNotStarted {
            // Neither queued, taken nor running: finished (its record was final before the read began), or not yet
            // in the queue (a submit still storing it; the run loop will find it cancelled and skip it).
            guard !job.status.isFinished else { throw EngineError.conflict("job '\(id)' already \(job.status.rawValue)") }
        }
        Gauge(label: "swiftdiffusion_queue_depth").record(queue.count)
        job.status = .cancelled
        job.finishedAt = Date()
        try await store.update(job)
        Counter(label: "swiftdiffusion_jobs_total", dimensions: [("outcome", "cancelled")]).increment()
        await events.publish(JobEvent(type: "cancelled", job: job))
        return job
    }

    /// Cancels the running job, if any (AUTOMATIC1111's `/interrupt`).
    public func interruptCurrent() {
        running?.control.cancel()
    }

    /// The job's events: its current state first, then everything until it finishes.
    public func events(_ id: String) async throws -> AsyncStream<JobEvent> {
        let job = try await self.job(id)
        let type: String
        switch job.status {
        case .queued: type = "queued"
        case .running: type = "started"
        case .succeeded: type = "completed"
        case .failed: type = "failed"
        case .cancelled: type = "cancelled"
        }
        let current = JobEvent(
            type: type, job: job, stage: job.status == .running ? job.progress.stage : nil, step: job.progress.step,
            total: job.progress.total, queuePosition: queuePosition(id), error: job.error)
        return await events.subscribe(id, current: current)
    }

    /// Runs a job now and waits for it (AUTOMATIC1111's synchronous txt2img): queue, then await completion.
    public func submitAndWait(_ spec: JobSpec) async throws -> JobRecord {
        let job = try await submit(spec)
        let stream = try await events(job.id)
        for await event in stream where event.isTerminal { break }
        return try await self.job(job.id)
    }

    public func counts() async throws -> [JobStatus: Int] { try await store.counts() }

    // MARK: - Execution

    private func execute(_ id: String) async {
        guard var job = try? await store.job(id: id), job.status == .queued else {
            cancelledBeforeStart.remove(id)
            return
        }
        // Cancelled while its record was read.
        if cancelledBeforeStart.remove(id) != nil { return }
        job.markStarted()
        await runStarted(job)
    }

    /// Runs a job marked started (by `execute`, or by a claim from a shared store) to its outcome.
    func runStarted(_ started: JobRecord) async {
        var job = started
        let id = job.id
        let (progressStream, progressContinuation) = AsyncStream.makeStream(of: JobProgress.self, bufferingPolicy: .bufferingNewest(64))
        let control = JobControl(progress: progressContinuation)
        running = (job, control)
        if replica == nil { try? await store.update(job) }
        await events.publish(JobEvent(type: "started", job: job))
        logger.info("job started", metadata: ["job": "\(id)", "model": "\(job.spec.model ?? "")", "loras": "\(job.spec.loras.count)"])

        // Prefetch the next job's LoRAs while this one runs.
        if let next = queue.peekNext(lastGroup: job.spec.groupKey), let nextJob = try? await store.job(id: next.id) {
            imageEngine.prefetch(nextJob.spec)
        }

        let progressTask = Task { [weak self] in
            var stepStart = Date()
            for await progress in progressStream {
                if progress.step <= 1 { stepStart = Date() }
                await self?.report(progress, id: id, stepStart: stepStart)
            }
        }
        let imageEngine = self.imageEngine
        let snapshot = job
        let outcome: Result<RenderedImages, Error>
        do {
            outcome = .success(try await compute.run { try imageEngine.execute(snapshot, control: control) })
        } catch {
            outcome = .failure(error)
        }
        progressContinuation.finish()
        await progressTask.value
        if Task.isCancelled {
            // The service was cancelled: no outcome; the job is queued again for the next start, and this try does
            // not count towards the poison-job limit (the job did not end the process).
            running = nil
            job.status = .queued
            job.attempts = max(0, job.attempts - 1)
            job.progress = JobProgress()
            job.startedAt = nil
            // In a task of its own: this one is cancelled, and the store would refuse to write from it.
            let store = self.store, record = job
            await Task.detached { try? await store.update(record) }.value
            logger.info("job interrupted by cancellation of the engine", metadata: ["job": "\(id)"])
            return
        }

        job = running?.record ?? job
        running = nil
        var images: [Data] = []
        job.finishedAt = Date()
        job.timings["total"] = job.finishedAt!.timeIntervalSince(job.startedAt ?? job.createdAt)
        switch outcome {
        case .success(let result):
            job.status = .succeeded
            job.imageCount = result.images.count
            job.infotext = result.infotext
            job.loraPatchStep = result.loraPatchStep
            job.cache = result.cache
            job.progress = JobProgress(stage: "done", step: job.spec.steps, total: job.spec.steps)
            for (stage, seconds) in result.timings { job.timings[stage] = seconds }
            images = result.images
            recentDurations = Array((recentDurations + [job.timings["total"] ?? 0]).suffix(20))
        case .failure(let error):
            if case GenerationError.cancelled = error {
                job.status = .cancelled
            } else {
                job.status = .failed
                job.error = "\(error)"
                logger.error("job failed", metadata: ["job": "\(id)", "error": "\(error)"])
            }
        }
        guard await persistOutcome(&job, images: images) else {
            logger.warning("job outcome not written: another replica holds its lease now", metadata: ["job": "\(id)"])
            return
        }
        Counter(label: "swiftdiffusion_jobs_total", dimensions: [("outcome", job.status.rawValue)]).increment()
        Timer(label: "swiftdiffusion_job_seconds", dimensions: [("outcome", job.status.rawValue)]).recordSeconds(job.timings["total"] ?? 0)
        let type = job.status == .succeeded ? "completed" : job.status == .cancelled ? "cancelled" : "failed"
        await events.publish(JobEvent(type: type, job: job, error: job.error))
        logger.info("job finished", metadata: ["job": "\(id)", "status": "\(job.status.rawValue)"])
    }

    /// Writes a finished job's record and images; false when a shared store refused it (the lease was lost).
    private func persistOutcome(_ job: inout JobRecord, images: [Data]) async -> Bool {
        if replica != nil { return await finishShared(&job, images: images) }
        do {
            if job.status == .succeeded { try await store.saveOutputs(jobID: job.id, images: images) }
            try await store.update(job)
        } catch {
            job.status = .failed
            job.error = "could not store the results: \(error)"
            try? await store.update(job)
        }
        return true
    }

    private func report(_ progress: JobProgress, id: String, stepStart: Date) async {
        guard var current = running, current.record.id == id else { return }
        let stageChanged = current.record.progress.stage != progress.stage
        current.record.progress = progress
        running = current
        if stageChanged && progress.stage != "denoise" || (stageChanged && progress.step == 0) {
            await events.publish(JobEvent(type: "stage", job: current.record, stage: progress.stage, step: progress.step, total: progress.total))
        }
        if progress.stage == "denoise" && progress.step > 0 {
            let elapsed = Date().timeIntervalSince(stepStart)
            let eta = progress.step > 0 ? elapsed / Double(progress.step) * Double(progress.total - progress.step) : nil
            await events.publish(
                JobEvent(type: "step", job: current.record, stage: progress.stage, step: progress.step, total: progress.total, etaSeconds: eta))
        }
    }

    /// Seconds a refused client should wait: the work ahead of it (every queued job, plus what is left of the
    /// running one) times the recent mean service time of a job; 5 s per job before any has finished.
    func retryAfterEstimate() -> Int {
        let typical = recentDurations.isEmpty ? 5 : recentDurations.reduce(0, +) / Double(recentDurations.count)
        var remaining = 0.0
        if let started = running?.record.startedAt { remaining = max(0, typical - Date().timeIntervalSince(started)) }
        // A shared queue is served by every live replica.
        var waiting = Double(queue.count + pendingSubmissions)
        if let replica { waiting = Double(replica.queueDepth) / Double(max(1, replica.liveReplicas)) }
        let seconds = typical * waiting + remaining
        return Int(min(max(1, seconds.rounded(.up)), 3600))
    }

    private func enforceRetentionPeriodically() async {
        while !Task.isCancelled {
            let removed = (try? await store.deleteFinished(before: Date().addingTimeInterval(-configuration.retention))) ?? 0
            if removed > 0 { logger.info("deleted expired jobs", metadata: ["count": "\(removed)"]) }
            try? await Task.sleep(for: .seconds(600))
        }
    }
}
