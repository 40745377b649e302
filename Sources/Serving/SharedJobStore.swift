import Foundation

/// A job store several replicas (`serve` processes) share: they claim queued jobs under a lease they renew
/// with heartbeats, and only the lease owner may write a running job's outcome.
///
/// The plain `JobStore` methods keep their meaning, with one restriction: `update` of a running job succeeds only
/// for the replica holding its lease, and a finished job is never updated again (`JobStoreError.notLeaseOwner`).
public protocol SharedJobStore: JobStore {
    /// This replica's identity in the store (the lease owner it writes).
    var replicaID: String { get }
    /// Seconds a claim lasts without a heartbeat.
    var leaseSeconds: Double { get }

    /// Inserts a queued job unless `capacity` jobs are queued already (across every replica); returns the number
    /// queued before the insert, or nil when the queue is full (nothing inserted).
    func insertIfRoom(_ job: JobRecord, capacity: Int) async throws -> Int?
    /// Takes the next job: one whose lease expired (its replica died) first, then one queued longer than
    /// `maximumWait`, then the queued job `Placement` picks for this replica from `holdings` and the live replicas
    /// (its base model held or this replica its rendezvous home; model, then adapters held; oldest first). The
    /// returned record is `running`, its attempts counted, leased to this replica. A job whose lease expired after
    /// `maximumAttempts` starts is failed as a poison job instead (reported in `poisoned`). `placement` chooses the
    /// rule (`PlacementSettings.Policy`) and the locality wait of delay scheduling; a job left for another replica that way
    /// sets the result's `retryAfter`.
    func claim(
        holdings: ReplicaHoldings, maximumWait: TimeInterval, maximumAttempts: Int, placement: PlacementSettings
    ) async throws -> ClaimResult
    /// Extends the leases of this replica's running jobs; returns the ones still held, with whether a client asked
    /// (on any replica) to cancel them. A job missing from the answer was taken over: stop it, report nothing.
    func renewLeases(_ ids: [String]) async throws -> [String: Bool]
    /// Writes a running job's terminal record and its images at once, if this replica still holds the lease;
    /// false when it does not (another replica owns the job now, or it finished): then nothing is written.
    func finish(_ job: JobRecord, images: [Data]) async throws -> Bool
    /// Puts a running job of this replica back in the queue (graceful stop); false if the lease was lost.
    func release(_ job: JobRecord) async throws -> Bool
    /// Cancels a queued job at once (returns its cancelled record), or asks the replica running it to stop
    /// (returns the running record); nil if the job is finished or unknown.
    func cancel(id: String) async throws -> JobRecord?
    /// Queued jobs across every replica.
    func queuedCount() async throws -> Int
    /// Sends an event to the subscribers on every replica (this one included, through `listen`).
    func notify(_ event: JobEvent) async throws
    /// Delivers every replica's events to `handler` until the task is cancelled (reconnecting as needed); calls
    /// `ready` each time it (re)starts listening.
    func listen(ready: @escaping @Sendable () -> Void, _ handler: @escaping @Sendable (JobEvent) async -> Void) async
    /// Advertises what this replica holds and its placement counters; returns the number of live replicas.
    func advertise(_ holdings: ReplicaHoldings, stats: ReplicaStats) async throws -> Int
    /// Every replica that advertised within `within` seconds.
    func replicas(within: TimeInterval) async throws -> [ReplicaAdvertisement]
}

extension SharedJobStore {
    /// `claim` with the default placement (affinity, the default locality wait).
    public func claim(holdings: ReplicaHoldings, maximumWait: TimeInterval, maximumAttempts: Int) async throws -> ClaimResult {
        try await claim(holdings: holdings, maximumWait: maximumWait, maximumAttempts: maximumAttempts, placement: PlacementSettings())
    }
}

public enum JobStoreError: Error, CustomStringConvertible, Equatable {
    /// A running job's record was written by a replica that does not hold its lease, or a finished job was written.
    case notLeaseOwner(String)
    case invalidURL(String)
    /// The server did not answer in time.
    case unreachable(String)

    public var description: String {
        switch self {
        case .notLeaseOwner(let id): "job '\(id)' is finished or leased to another replica; not written"
        case .invalidURL(let message), .unreachable(let message): message
        }
    }
}

/// What a claim found.
public struct ClaimResult: Sendable {
    /// The job this replica runs now (status running, leased to it), if any.
    public var job: JobRecord?
    /// How many of the job's components (base model, LoRAs, ControlNets) the replica held, and how many it lacked.
    public var held = 0
    public var missing = 0
    /// Jobs failed as poison jobs while looking (their lease expired after the last allowed attempt).
    public var poisoned: [JobRecord] = []
    /// Seconds until a job this claim left for a better-fitting replica (delay scheduling) may be taken here; nil when
    /// none was left.
    public var retryAfter: TimeInterval?

    public init(job: JobRecord? = nil, held: Int = 0, missing: Int = 0, poisoned: [JobRecord] = []) {
        self.job = job
        self.held = held
        self.missing = missing
        self.poisoned = poisoned
    }
}

/// The base models and adapters a replica has in memory (most recently used last), bounded like its caches.
public struct ReplicaHoldings: Codable, Sendable, Equatable {
    public var models: [String] = []
    /// `lora:NAME` and `controlnet:NAME`.
    public var adapters: [String] = []
    public var modelLimit = 1
    public var adapterLimit = 16

    public init(models: [String] = [], adapters: [String] = [], modelLimit: Int = 1, adapterLimit: Int = 16) {
        self.models = models
        self.adapters = adapters
        self.modelLimit = modelLimit
        self.adapterLimit = adapterLimit
    }

    /// The adapter names of a job, as advertised.
    public static func adapters(of spec: JobSpec) -> [String] {
        Array(Set(spec.loras.map { "lora:\($0.name)" } + spec.controls.map { "controlnet:\($0.model)" })).sorted()
    }

    /// Records that the replica ran `spec` (its model and adapters are now the most recently used).
    public mutating func use(_ spec: JobSpec) {
        func touch(_ list: inout [String], _ name: String, limit: Int) {
            list.removeAll { $0 == name }
            list.append(name)
            if list.count > limit { list.removeFirst(list.count - limit) }
        }
        if let model = spec.model { touch(&models, model, limit: max(1, modelLimit)) }
        for adapter in Self.adapters(of: spec) { touch(&adapters, adapter, limit: max(1, adapterLimit)) }
    }
}

/// Placement counters of one replica.
public struct ReplicaStats: Codable, Sendable, Equatable {
    /// Jobs claimed.
    public var claims = 0
    /// Claims whose model and adapters were all held already (nothing to load).
    public var affinityHits = 0
    /// Components (model, LoRAs, ControlNets) of claimed jobs that were held already: loads avoided.
    public var loadsAvoided = 0
    /// Components that had to be loaded.
    public var loads = 0

    public init() {}

    enum CodingKeys: String, CodingKey {
        case claims, affinityHits = "affinity_hits", loadsAvoided = "loads_avoided", loads
    }
}

/// One replica as the store knows it.
public struct ReplicaAdvertisement: Codable, Sendable, Equatable {
    public var id: String
    public var holdings: ReplicaHoldings
    public var stats: ReplicaStats
    public var heartbeatAt: Date
}
