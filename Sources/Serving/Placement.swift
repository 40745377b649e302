import Foundation

/// Adapter-affinity placement: which queued job a free replica takes. One rule, used by the PostgreSQL store's claim
/// (`PostgresJobStore.claim`) and by the capacity planner's simulation (`trace simulate --placement affinity`), so the
/// planner measures what the replicas do (docs/scale-out.md, "Placement").
///
/// A job that has waited less than the maximum wait is *eligible* on a replica that holds its base model, holds no
/// base model at all, or is its base model's rendezvous home (highest random weight) among the live replicas; a job
/// that names no model is eligible everywhere. Replicas thus keep their base model (where the cache fits one base
/// model, a model switch evicts the adapters with it) and a model nobody holds has one replica that takes it at once;
/// a job that waited the maximum wait goes to whichever replica is free (the starvation bound). Among eligible jobs a
/// replica prefers the one whose model it holds, then the one with most of its adapters held, then the model's better
/// rendezvous rank, then the oldest. A job younger than the locality wait is left to another replica that fits it
/// better (`leaves`).
///
/// `PlacementSettings.Policy.random` is the baseline the rule is measured against: each job belongs to one replica drawn by its
/// identifier's rendezvous hash (a load balancer spreading requests at random over replicas with queues of their own),
/// and only the starvation bound lets another replica take it.
public enum Placement {
    /// What one replica holds of one queued job, and where the job's model has its home.
    public struct Fit: Sendable, Equatable {
        /// The job names a base model.
        public var hasModel: Bool
        public var modelHeld: Bool
        /// The replica holds some base model (not necessarily this job's).
        public var holdsAModel: Bool
        /// The job's adapters (LoRAs, ControlNets) the replica holds.
        public var adaptersHeld: Int
        /// The replica's rendezvous rank for the job's base model among the live replicas (0: its home).
        public var homeRank: Int

        public init(hasModel: Bool, modelHeld: Bool, holdsAModel: Bool, adaptersHeld: Int, homeRank: Int) {
            self.hasModel = hasModel
            self.modelHeld = modelHeld
            self.holdsAModel = holdsAModel
            self.adaptersHeld = adaptersHeld
            self.homeRank = homeRank
        }

        /// Whether the replica may take the job before it starves (see `Placement`).
        public var eligible: Bool { !hasModel || modelHeld || !holdsAModel || homeRank == 0 }
    }

    /// How well a replica fits a job; larger is better: model held, then adapters held, then a better home rank.
    public struct Score: Comparable, Sendable, Equatable {
        public var modelHeld: Bool
        public var adaptersHeld: Int
        public var homeRank: Int

        public init(modelHeld: Bool, adaptersHeld: Int, homeRank: Int) {
            self.modelHeld = modelHeld
            self.adaptersHeld = adaptersHeld
            self.homeRank = homeRank
        }

        /// Whether `other` holds more of the job: its model where this does not, or as much model and more adapters.
        public func holdsLess(than other: Score) -> Bool {
            (modelHeld ? 1 : 0, adaptersHeld) < (other.modelHeld ? 1 : 0, other.adaptersHeld)
        }

        public static func < (a: Score, b: Score) -> Bool {
            (a.modelHeld ? 1 : 0, a.adaptersHeld, -a.homeRank) < (b.modelHeld ? 1 : 0, b.adaptersHeld, -b.homeRank)
        }
    }

    /// The replica's score for a job, or nil when it may not take the job: not eligible and not `starving` (the job
    /// has waited the maximum wait).
    public static func score(_ fit: Fit, starving: Bool) -> Score? {
        guard starving || fit.eligible else { return nil }
        return Score(modelHeld: fit.modelHeld, adaptersHeld: fit.adaptersHeld, homeRank: fit.homeRank)
    }

    /// Delay scheduling (Zaharia et al., EuroSys 2010): whether a replica whose score for a young job is `mine` leaves
    /// it, for at most the locality wait, to another live replica: an idle one that fits it strictly better (it takes
    /// the job at once), or a busy one that holds strictly more of it (its model, then more of its adapters), which
    /// takes the job when its own ends — for short jobs sooner than loading the adapters here. A busy replica that
    /// is only the model's better rendezvous rank is not waited for: it would have to load the same things. The
    /// simulation applies the same rule.
    public static func leaves(_ mine: Score, toIdle idle: [Score], busy: [Score] = []) -> Bool {
        idle.contains { mine < $0 } || busy.contains { mine.holdsLess(than: $0) }
    }

    /// Seconds a young job may be left to a replica that fits it better (`leaves`), by default.
    public static let defaultLocalityWait = 1.0

    /// Rendezvous ranks of `key` over `replicas` (identifiers): for each replica, how many of the others weigh more
    /// (0: the key's home). Every replica computes the same ranks from the same list of live replicas.
    public static func ranks(of key: String, replicas: [String]) -> [Int] {
        let keyHash = hash(key)
        let weights = replicas.map { mix(keyHash ^ hash($0)) }
        let order = weights.indices.sorted {
            weights[$0] != weights[$1] ? weights[$0] > weights[$1] : replicas[$0] < replicas[$1]
        }
        var ranks = [Int](repeating: 0, count: replicas.count)
        for (rank, index) in order.enumerated() { ranks[index] = rank }
        return ranks
    }

    /// FNV-1a (64 bits) of the UTF-8 bytes, mixed: stable across processes, machines and Swift versions (unlike
    /// `Hasher`).
    static func hash(_ text: String) -> UInt64 {
        var value: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in text.utf8 { value = (value ^ UInt64(byte)) &* 0x0000_0100_0000_01b3 }
        return mix(value)
    }

    /// SplitMix64's finalizer.
    static func mix(_ x: UInt64) -> UInt64 {
        var z = x &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// A replica's placement settings for its claims on a shared store.
public struct PlacementSettings: Sendable, Equatable {
    /// How replicas pick their jobs (`serve --placement`).
    public enum Policy: String, Sendable, CaseIterable {
        /// `Placement`'s rule: what each replica holds, rendezvous homes of base models, delay scheduling.
        case affinity
        /// Each job to the replica its identifier hashes to (rendezvous), whatever it holds: the baseline.
        case random
    }

    public var policy: Policy
    /// Seconds a young job may be left to a replica that fits it better (0: never).
    public var localityWait: TimeInterval

    public init(policy: Policy = .affinity, localityWait: TimeInterval = Placement.defaultLocalityWait) {
        self.policy = policy
        self.localityWait = localityWait
    }
}
