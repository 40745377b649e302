import Foundation
import Logging
import Metrics

/// What an engine keeps when it is one of several replicas on a shared store.
struct ReplicaState {
    let store: any SharedJobStore
    /// What this replica holds in memory, advertised to the others and used to prefer jobs (placement).
    var holdings: ReplicaHoldings
    var stats = ReplicaStats()
    /// Queued jobs across every replica, as last read from the store.
    var queueDepth = 0
    /// Replicas that advertised within three lease times, this one included.
    var liveReplicas = 1

    init(store: any SharedJobStore, configuration: EngineConfiguration) {
        self.store = store
        self.holdings = ReplicaHoldings(
            modelLimit: configuration.loadedModelLimit, adapterLimit: configuration.placementAdapterLimit)
    }

    /// Seconds between heartbeats (lease renewal, advertisement) and between claims of an idle replica.
    var heartbeatInterval: Double { max(0.05, min(2, store.leaseSeconds / 3)) }
}

extension EngineConfiguration {
    /// Adapters (LoRAs, ControlNets) a replica advertises as held at least: the most recently used ones, about what its
    /// caches keep of 144 MiB LoRAs; more when its caches hold more (`ImageEngine.cachedAdapterCount`).
    public var placementAdapterLimit: Int { max(1, loraCacheBytes / (144 << 20)) }
}

extension GenerationEngine {
    /// With a shared store: listens to every replica's events, and heartbeats (renews this replica's lease, advertises
    /// its holdings and counters, reads the shared queue depth).
    func startReplicaTasks() async -> [Task<Void, Never>] {
        guard let replica else { return [] }
        let store = replica.store
        await events.setRelay { event in try await store.notify(event) }
        let (listening, ready) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        let listener = Task { [weak self] in
            let engine = self
            await store.listen(ready: { ready.yield() }) { event in await engine?.receive(event) }
        }
        // Ready only once other replicas' events reach this one (or after 10 s without: a warning).
        let heard = await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                for await _ in listening { return true }
                return false
            }
            group.addTask {
                try? await Task.sleep(for: .seconds(10))
                return false
            }
            let first = await group.next() ?? false
            group.cancelAll()
            return first
        }
        if !heard { logger.warning("not listening to the job store's events yet; other replicas' progress may be missed") }
        // Advertise before the first claim, so the replica count is right from the start.
        _ = await heartbeat()
        let heartbeats = Task { [weak self] in
            while !Task.isCancelled {
                guard let interval = await self?.heartbeat() else { return }
                try? await Task.sleep(for: .seconds(interval))
            }
        }
        return [listener, heartbeats]
    }

    private func receive(_ event: JobEvent) async {
        await events.deliver(event)
        if event.type == "queued" { signalWork() }
    }

    /// One heartbeat; returns the seconds until the next.
    private func heartbeat() async -> Double? {
        guard var replica else { return nil }
        let interval = replica.heartbeatInterval
        do {
            if let running {
                let held = try await replica.store.renewLeases([running.record.id])
                // The job may have finished while the lease was renewed.
                if let current = self.running, current.record.id == running.record.id {
                    if held[running.record.id] == nil {
                        logger.warning(
                            "lost the lease of the running job; stopping it", metadata: ["job": "\(running.record.id)"])
                        current.control.cancel()
                    } else if held[running.record.id] == true {
                        current.control.cancel()
                    }
                }
            }
            let live = try await replica.store.advertise(replica.holdings, stats: replica.stats)
            let depth = try await replica.store.queuedCount()
            // Other tasks changed the state meanwhile (claims); keep their changes.
            replica = self.replica ?? replica
            replica.liveReplicas = max(1, live)
            replica.queueDepth = depth
            self.replica = replica
            Gauge(label: "swiftdiffusion_queue_depth").record(depth)
            Gauge(label: "swiftdiffusion_replicas").record(live)
        } catch {
            logger.warning("heartbeat to the job store failed", metadata: ["error": "\(error)"])
        }
        return interval
    }

    /// Claims the next job (`Placement` by holdings and rendezvous homes, no job waiting past `maximumGroupingWait`)
    /// and runs it, or waits for a `queued` event or the next poll.
    func claimAndRun() async {
        guard let state = replica else { return }
        let result: ClaimResult
        do {
            result = try await state.store.claim(
                holdings: state.holdings, maximumWait: configuration.maximumGroupingWait,
                maximumAttempts: configuration.maximumJobAttempts, placement: configuration.placement)
        } catch {
            logger.warning("claiming a job failed", metadata: ["error": "\(error)"])
            await idle(state.heartbeatInterval)
            return
        }
        for job in result.poisoned {
            Counter(label: "swiftdiffusion_jobs_total", dimensions: [("outcome", "poisoned")]).increment()
            logger.error("poison job failed without running", metadata: ["job": "\(job.id)", "attempts": "\(job.attempts)"])
            await events.publish(JobEvent(type: "failed", job: job, error: job.error))
        }
        guard let job = result.job else {
            // A job left for a better-fitting replica becomes ours when its locality wait ends, if nobody took it.
            await idle(min(state.heartbeatInterval, result.retryAfter.map { $0 + 0.01 } ?? .infinity))
            return
        }
        replica?.stats.claims += 1
        replica?.stats.loadsAvoided += result.held
        replica?.stats.loads += result.missing
        if result.missing == 0 { replica?.stats.affinityHits += 1 }
        // Advertise as many recently used adapters as the caches hold (the configured budget's estimate at least).
        replica?.holdings.adapterLimit = max(
            configuration.placementAdapterLimit, imageEngine.cachedAdapterCount + ReplicaHoldings.adapters(of: job.spec).count)
        replica?.holdings.use(job.spec)
        // Advertise the new holdings now rather than at the next heartbeat: replicas leave young jobs to the one that
        // fits them best (delay scheduling, `PlacementSettings.localityWait`), by these advertisements.
        if let state = replica { _ = try? await state.store.advertise(state.holdings, stats: state.stats) }
        Counter(label: "swiftdiffusion_placement_claims_total").increment()
        Counter(label: "swiftdiffusion_placement_loads_avoided_total").increment(by: Int64(result.held))
        Counter(label: "swiftdiffusion_placement_loads_total").increment(by: Int64(result.missing))
        if result.missing == 0 { Counter(label: "swiftdiffusion_placement_affinity_hits_total").increment() }
        await runStarted(job)
    }

    private func idle(_ seconds: Double) async {
        guard !shuttingDown else { return }
        let poll = Task { [weak self] in
            try? await Task.sleep(for: .seconds(seconds))
            await self?.signalWork()
        }
        await withCheckedContinuation { continuation in wakeUp = continuation }
        poll.cancel()
    }

    /// Bounded admission against the shared queue (429 + Retry-After when every replica's queue together is full).
    func admitShared(_ job: JobRecord) async throws {
        guard let replica else { return }
        guard let queued = try await replica.store.insertIfRoom(job, capacity: configuration.queueCapacity) else {
            self.replica?.queueDepth = configuration.queueCapacity
            Counter(label: "swiftdiffusion_jobs_rejected_total", dimensions: [("reason", "queue_full")]).increment()
            throw EngineError.queueFull(retryAfter: retryAfterEstimate())
        }
        self.replica?.queueDepth = queued + 1
    }

    /// Cancels a queued job at once; a job running on another replica stops at that replica's next heartbeat.
    func cancelShared(_ id: String) async throws -> JobRecord {
        guard let replica else { throw EngineError.unavailable("not a replica") }
        let job = try await self.job(id)
        guard !job.status.isFinished, let record = try await replica.store.cancel(id: id) else {
            let now = try await self.job(id)
            throw EngineError.conflict("job '\(id)' already \(now.status.rawValue)")
        }
        if record.status == .cancelled {
            Counter(label: "swiftdiffusion_jobs_total", dimensions: [("outcome", "cancelled")]).increment()
            await events.publish(JobEvent(type: "cancelled", job: record))
        }
        return record
    }

    /// The terminal write of a job run from a shared store: only while this replica holds the lease.
    func finishShared(_ job: inout JobRecord, images: [Data]) async -> Bool {
        guard let replica else { return false }
        do {
            return try await replica.store.finish(job, images: job.status == .succeeded ? images : [])
        } catch {
            // The images could not be stored: fail the job (still guarded by the lease).
            logger.error("could not store a job's results", metadata: ["job": "\(job.id)", "error": "\(error)"])
            job.status = .failed
            job.error = "could not store the results: \(error)"
            return (try? await replica.store.finish(job, images: [])) ?? false
        }
    }

    /// Every live replica's advertisement (placement holdings and counters).
    public func replicas() async throws -> [ReplicaAdvertisement] {
        guard let replica else { return [] }
        return try await replica.store.replicas(within: 3 * replica.store.leaseSeconds)
    }

    /// This replica's placement counters (nil without a shared store).
    public var placementStats: ReplicaStats? { replica?.stats }
}
