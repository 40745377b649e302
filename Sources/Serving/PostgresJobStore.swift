import Foundation
import Logging
import PostgresNIO

/// Jobs, their events and their images in PostgreSQL (postgres-nio), shared by several `serve` replicas:
/// `serve --store postgres://USER:PASSWORD@HOST:PORT/DATABASE[?schema=NAME]`.
///
/// Replicas claim jobs with `SELECT ... FOR UPDATE SKIP LOCKED` and hold them under a lease they renew with
/// heartbeats; a replica that dies stops renewing, its leases expire and another replica claims its jobs again.
/// Only the lease owner writes a running job's outcome (`finish`), so a job is never completed twice. Events go
/// through `NOTIFY` on one channel, so an SSE client on any replica sees every replica's events.
public final class PostgresJobStore: SharedJobStore, Sendable {
    public let replicaID: String
    public let leaseSeconds: Double
    /// The `NOTIFY` channel (one per schema, so stores in different schemas do not hear each other).
    let channel: String
    let client: PostgresClient
    private let runTask: Task<Void, Never>
    let logger: Logger

    private static var encoder: JSONEncoder { JobStoreCoding.encoder }
    private static var decoder: JSONDecoder { JobStoreCoding.decoder }

    /// The parts of a `postgres://` URL the store uses.
    public struct Location: Sendable, Equatable {
        public var host = "127.0.0.1"
        public var port = 5432
        public var user = "postgres"
        public var password: String?
        public var database: String?
        /// A schema of its own (created if missing): several stores can share one database.
        public var schema: String?

        /// Parses `postgres://USER:PASSWORD@HOST:PORT/DATABASE?schema=NAME&sslmode=disable`.
        public init(url: String) throws {
            guard let components = URLComponents(string: url), ["postgres", "postgresql"].contains(components.scheme ?? "") else {
                throw JobStoreError.invalidURL("not a PostgreSQL URL (postgres://USER:PASSWORD@HOST:PORT/DATABASE): \(url)")
            }
            if let host = components.host, !host.isEmpty { self.host = host }
            if let port = components.port { self.port = port }
            if let user = components.percentEncodedUser, !user.isEmpty { self.user = user.removingPercentEncoding ?? user }
            password = components.percentEncodedPassword.map { $0.removingPercentEncoding ?? $0 }
            let path = components.path.hasPrefix("/") ? String(components.path.dropFirst()) : components.path
            database = path.isEmpty ? nil : path
            for item in components.queryItems ?? [] {
                switch item.name {
                case "schema":
                    guard let value = item.value, value.range(of: #"^[a-z_][a-z0-9_]{0,62}$"#, options: .regularExpression) != nil
                    else {
                        throw JobStoreError.invalidURL("schema must be a lower-case identifier ([a-z_][a-z0-9_]*)")
                    }
                    schema = value
                case "sslmode":
                    guard item.value == "disable" else {
                        throw JobStoreError.invalidURL(
                            "only sslmode=disable is supported (TLS to PostgreSQL is not built in; see docs/deployment.md)")
                    }
                default:
                    throw JobStoreError.invalidURL("unknown PostgreSQL URL parameter '\(item.name)' (known: schema, sslmode)")
                }
            }
        }
    }

    private init(location: Location, replicaID: String, leaseSeconds: Double, logger: Logger) {
        var configuration = PostgresClient.Configuration(
            host: location.host, port: location.port, username: location.user, password: location.password,
            database: location.database, tls: .disable)
        configuration.options.connectTimeout = .seconds(5)
        if let schema = location.schema { configuration.options.additionalStartupParameters = [("search_path", schema)] }
        let client = PostgresClient(configuration: configuration, backgroundLogger: logger)
        self.client = client
        self.runTask = Task { await client.run() }
        self.replicaID = replicaID
        self.leaseSeconds = leaseSeconds
        self.logger = logger
        self.channel = "swiftdiffusion_events_" + (location.schema ?? "public")
    }

    deinit { runTask.cancel() }

    /// Connects and migrates the schema; throws if the server does not answer within `timeout` seconds.
    public static func connect(
        url: String, replicaID: String = PostgresJobStore.defaultReplicaID(), leaseSeconds: Double = 15,
        timeout: Double = 10, logger: Logger = Logger(label: "swiftdiffusion.postgres")
    ) async throws -> PostgresJobStore {
        let location = try Location(url: url)
        guard leaseSeconds > 0 else { throw JobStoreError.invalidURL("the lease must be longer than 0 s, got \(leaseSeconds)") }
        let store = PostgresJobStore(location: location, replicaID: replicaID, leaseSeconds: leaseSeconds, logger: logger)
        do {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await store.migrate(schema: location.schema) }
                group.addTask {
                    try await Task.sleep(for: .seconds(timeout))
                    throw JobStoreError.unreachable(
                        "PostgreSQL at \(location.host):\(location.port) did not answer within \(Int(timeout)) s")
                }
                try await group.next()
                group.cancelAll()
            }
        } catch {
            store.close()
            throw error
        }
        return store
    }

    /// `HOSTNAME-PID-RANDOM`: unique per process, readable in `replica` rows and logs.
    public static func defaultReplicaID() -> String {
        let host = ProcessInfo.processInfo.hostName.split(separator: ".").first.map(String.init) ?? "replica"
        return "\(host)-\(ProcessInfo.processInfo.processIdentifier)-\(UUID().uuidString.prefix(8).lowercased())"
    }

    /// Stops the connection pool.
    public func close() { runTask.cancel() }

    // MARK: - Schema

    /// Versioned migrations: each runs once, in order, recorded in `schema_migrations`; replicas starting at the same
    /// time serialize on an advisory lock.
    static let migrations: [(version: Int, statements: [String])] = [
        (
            1,
            [
                """
                CREATE TABLE job (
                    id text PRIMARY KEY,
                    status text NOT NULL,
                    created_at timestamptz NOT NULL,
                    enqueued_at timestamptz NOT NULL DEFAULT clock_timestamp(),
                    finished_at timestamptz,
                    model text NOT NULL DEFAULT '',
                    adapters text[] NOT NULL DEFAULT '{}',
                    attempts integer NOT NULL DEFAULT 0,
                    lease_owner text,
                    lease_expires_at timestamptz,
                    cancel_requested boolean NOT NULL DEFAULT false,
                    record bytea NOT NULL
                )
                """,
                "CREATE INDEX job_status_enqueued ON job (status, enqueued_at)",
                "CREATE INDEX job_finished ON job (finished_at) WHERE finished_at IS NOT NULL",
                """
                CREATE TABLE job_output (
                    job_id text NOT NULL REFERENCES job (id) ON DELETE CASCADE,
                    position integer NOT NULL,
                    data bytea NOT NULL,
                    PRIMARY KEY (job_id, position)
                )
                """,
            ]
        ),
        (
            2,
            [
                """
                CREATE TABLE replica (
                    id text PRIMARY KEY,
                    started_at timestamptz NOT NULL DEFAULT clock_timestamp(),
                    heartbeat_at timestamptz NOT NULL DEFAULT clock_timestamp(),
                    models text[] NOT NULL DEFAULT '{}',
                    adapters text[] NOT NULL DEFAULT '{}',
                    claims bigint NOT NULL DEFAULT 0,
                    affinity_hits bigint NOT NULL DEFAULT 0,
                    loads_avoided bigint NOT NULL DEFAULT 0,
                    loads bigint NOT NULL DEFAULT 0
                )
                """
            ]
        ),
        (
            3,
            [
                // ControlNet workers on other hosts (issue 14 item 3): each registers itself and heartbeats; replicas
                // use the fresh ones (PostgresJobStore+Workers.swift).
                """
                CREATE TABLE worker (
                    id text PRIMARY KEY,
                    address text NOT NULL,
                    role text NOT NULL,
                    models text[] NOT NULL DEFAULT '{}',
                    started_at timestamptz NOT NULL DEFAULT clock_timestamp(),
                    heartbeat_at timestamptz NOT NULL DEFAULT clock_timestamp()
                )
                """,
                "CREATE INDEX worker_role_heartbeat ON worker (role, heartbeat_at)",
            ]
        ),
    ]

    /// The highest migration applied.
    public func schemaVersion() async throws -> Int {
        let rows = try await client.query("SELECT coalesce(max(version), 0)::bigint FROM schema_migrations", logger: logger)
        for try await version in rows.decode(Int.self) { return version }
        return 0
    }

    private func migrate(schema: String?) async throws {
        try await client.withTransaction(logger: logger) { connection in
            try await connection.query("SELECT pg_advisory_xact_lock(7318400114)", logger: logger)
            if let schema {
                try await connection.query(PostgresQuery(unsafeSQL: "CREATE SCHEMA IF NOT EXISTS \(schema)"), logger: logger)
            }
            try await connection.query(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
                logger: logger)
            var applied = Set<Int>()
            for try await version in try await connection.query("SELECT version FROM schema_migrations", logger: logger).decode(
                Int.self)
            {
                applied.insert(version)
            }
            for migration in Self.migrations where !applied.contains(migration.version) {
                for statement in migration.statements {
                    try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger)
                }
                try await connection.query(
                    "INSERT INTO schema_migrations (version) VALUES (\(migration.version))", logger: logger)
            }
        }
    }

    // MARK: - JobStore

    private func encode(_ job: JobRecord) throws -> Data { try Self.encoder.encode(job) }
    private func decode(_ data: Data) throws -> JobRecord { try Self.decoder.decode(JobRecord.self, from: data) }

    public func insert(_ job: JobRecord) async throws {
        try await client.query(insertQuery(job), logger: logger)
    }

    private func insertQuery(_ job: JobRecord) throws -> PostgresQuery {
        let record = try encode(job)
        let adapters = ReplicaHoldings.adapters(of: job.spec)
        return try """
        INSERT INTO job (id, status, created_at, finished_at, model, adapters, attempts, record)
        VALUES (\(job.id), \(job.status.rawValue), \(job.createdAt), \(job.finishedAt), \(job.spec.model ?? ""), \(adapters),
                \(job.attempts), \(record))
        """
    }

    /// Writes a record. A running job is written only by its lease owner; a finished job is not written again.
    public func update(_ job: JobRecord) async throws {
        let record = try encode(job)
        let rows = try await client.query(
            """
            UPDATE job SET status = \(job.status.rawValue), finished_at = \(job.finishedAt), attempts = \(job.attempts), record = \(record),
                lease_owner = CASE WHEN \(job.status.rawValue) = 'running' THEN lease_owner END,
                lease_expires_at = CASE WHEN \(job.status.rawValue) = 'running' THEN lease_expires_at END
            WHERE id = \(job.id) AND status IN ('queued', 'running') AND (status = 'queued' OR lease_owner = \(replicaID))
            RETURNING id
            """, logger: logger)
        var written = false
        for try await _ in rows.decode(String.self) { written = true }
        if !written { throw JobStoreError.notLeaseOwner(job.id) }
    }

    public func job(id: String) async throws -> JobRecord? {
        let rows = try await client.query("SELECT record FROM job WHERE id = \(id)", logger: logger)
        for try await data in rows.decode(Data.self) { return try decode(data) }
        return nil
    }

    public func unfinishedJobs() async throws -> [JobRecord] {
        let rows = try await client.query(
            "SELECT record FROM job WHERE status IN ('queued', 'running') ORDER BY created_at, id", logger: logger)
        var jobs: [JobRecord] = []
        for try await data in rows.decode(Data.self) { jobs.append(try decode(data)) }
        return jobs
    }

    public func saveOutputs(jobID: String, images: [Data]) async throws {
        try await client.withTransaction(logger: logger) { connection in
            try await self.writeOutputs(jobID: jobID, images: images, connection)
        }
    }

    private func writeOutputs(jobID: String, images: [Data], _ connection: PostgresConnection) async throws {
        try await connection.query("DELETE FROM job_output WHERE job_id = \(jobID)", logger: logger)
        for (position, image) in images.enumerated() {
            try await connection.query(
                "INSERT INTO job_output (job_id, position, data) VALUES (\(jobID), \(position), \(image))", logger: logger)
        }
    }

    public func outputs(jobID: String) async throws -> [Data] {
        let rows = try await client.query("SELECT data FROM job_output WHERE job_id = \(jobID) ORDER BY position", logger: logger)
        var images: [Data] = []
        for try await data in rows.decode(Data.self) { images.append(data) }
        return images
    }

    public func deleteFinished(before date: Date) async throws -> Int {
        let rows = try await client.query(
            "DELETE FROM job WHERE finished_at IS NOT NULL AND finished_at < \(date) RETURNING id", logger: logger)
        var count = 0
        for try await _ in rows.decode(String.self) { count += 1 }
        return count
    }

    public func counts() async throws -> [JobStatus: Int] {
        let rows = try await client.query("SELECT status, count(*)::bigint FROM job GROUP BY status", logger: logger)
        var result: [JobStatus: Int] = [:]
        for try await (status, count) in rows.decode((String, Int).self) {
            if let status = JobStatus(rawValue: status) { result[status] = count }
        }
        return result
    }

    // MARK: - SharedJobStore

    public func insertIfRoom(_ job: JobRecord, capacity: Int) async throws -> Int? {
        let insert = try insertQuery(job)
        return try await client.withTransaction(logger: logger) { connection -> Int? in
            // Admissions serialize on this lock, so replicas admitting at the same time cannot overfill the queue.
            try await connection.query("SELECT pg_advisory_xact_lock(7318400115)", logger: logger)
            var queued = 0
            for try await count in try await connection.query(
                "SELECT count(*)::bigint FROM job WHERE status = 'queued'", logger: logger
            )
            .decode(Int.self) {
                queued = count
            }
            guard queued < capacity else { return nil }
            try await connection.query(insert, logger: logger)
            return queued
        }
    }

    public func claim(
        holdings: ReplicaHoldings, maximumWait: TimeInterval, maximumAttempts: Int, placement: PlacementSettings
    ) async throws -> ClaimResult {
        // The live replicas, for the rendezvous homes of `Placement` (this one counts before its first advertisement).
        let advertised = try await replicas(within: 3 * leaseSeconds)
        var live = advertised.map(\.id)
        if !live.contains(replicaID) { live.append(replicaID) }
        return try await client.withTransaction(logger: logger) { connection -> ClaimResult in
            var result = ClaimResult()
            // Each pass either claims a job or fails one poison job; a few passes bound the transaction.
            for _ in 0..<8 {
                // A job whose replica died (lease expired), then the oldest job that waited the maximum wait: any
                // replica takes those first.
                let rows = try await connection.query(
                    """
                    SELECT j.id, j.record, j.status, j.attempts, s.model_held, s.adapters_held, cardinality(j.adapters)
                    FROM job j CROSS JOIN LATERAL (
                        SELECT (j.model = ANY(\(holdings.models)::text[]))::int AS model_held,
                            cardinality(ARRAY(SELECT unnest(j.adapters) INTERSECT SELECT unnest(\(holdings.adapters)::text[]))) AS adapters_held
                    ) s
                    WHERE (j.status = 'queued' AND j.enqueued_at < clock_timestamp() - make_interval(secs => \(maximumWait)))
                        OR (j.status = 'running' AND j.lease_expires_at < clock_timestamp())
                    ORDER BY j.status = 'running' DESC, j.enqueued_at, j.id
                    LIMIT 1
                    FOR UPDATE OF j SKIP LOCKED
                    """, logger: logger)
                var found: Claimable?
                for try await row in rows.decode((String, Data, String, Int, Int, Int, Int).self) { found = row }
                if found == nil {
                    switch placement.policy {
                    case .affinity:
                        let placed = try await self.placedCandidate(
                            holdings: holdings, live: live, advertised: advertised, localityWait: placement.localityWait, connection)
                        found = placed.job
                        result.retryAfter = placed.retryAfter
                    case .random:
                        found = try await self.randomlyPlacedCandidate(holdings: holdings, live: live, connection)
                    }
                }
                guard let found else { return result }
                var job = try self.decode(found.record)
                if found.status == "running" && found.attempts >= maximumAttempts {
                    // Its replica died while running it, every time it was tried: most likely the job ends the process.
                    job.status = .failed
                    job.finishedAt = Date()
                    job.error =
                        "poison job: the server process ended while running this job \(found.attempts) times; it is not run again"
                    let record = try self.encode(job)
                    try await connection.query(
                        """
                        UPDATE job SET status = 'failed', finished_at = \(job.finishedAt), record = \(record), lease_owner = NULL,
                            lease_expires_at = NULL WHERE id = \(found.id)
                        """, logger: logger)
                    result.poisoned.append(job)
                    continue
                }
                job.markStarted()
                let record = try self.encode(job)
                try await connection.query(
                    """
                    UPDATE job SET status = 'running', attempts = \(job.attempts), record = \(record), lease_owner = \(self.replicaID),
                        lease_expires_at = clock_timestamp() + make_interval(secs => \(self.leaseSeconds)), cancel_requested = false
                    WHERE id = \(found.id)
                    """, logger: logger)
                result.job = job
                result.held = found.modelHeld + found.adaptersHeld
                result.missing = 1 + found.adapters - result.held
                return result
            }
            return result
        }
    }

    /// Queued jobs examined per claim by the placement rule (the oldest ones).
    static let placementWindow = 256

    /// A job a claim found and locked, with what this replica holds of it.
    private typealias Claimable = (
        id: String, record: Data, status: String, attempts: Int, modelHeld: Int, adaptersHeld: Int, adapters: Int
    )

    /// The queued job this replica should take by `Placement` among the oldest `placementWindow`, locked (`FOR UPDATE
    /// SKIP LOCKED`; a job another replica is claiming is passed over for the next best); nil when none is eligible.
    /// A job younger than `localityWait` is left alone when another live replica (`advertised`; busy when it owns a
    /// running job) fits it better (`Placement.leaves`); `retryAfter` is when the first such job may be taken here.
    private func placedCandidate(
        holdings: ReplicaHoldings, live: [String], advertised: [ReplicaAdvertisement], localityWait: TimeInterval,
        _ connection: PostgresConnection
    ) async throws -> (job: Claimable?, retryAfter: TimeInterval?) {
        var busy: Set<String> = []
        for try await owner in try await connection.query(
            "SELECT DISTINCT lease_owner FROM job WHERE status = 'running' AND lease_owner IS NOT NULL", logger: logger
        ).decode(String.self) {
            busy.insert(owner)
        }
        let others = advertised.filter { $0.id != replicaID }
        var retryAfter: TimeInterval?
        let rows = try await connection.query(
            """
            SELECT id, model, adapters, extract(epoch FROM clock_timestamp() - enqueued_at)::float8 FROM job
            WHERE status = 'queued' ORDER BY enqueued_at, id LIMIT \(Self.placementWindow)
            """, logger: logger)
        let me = live.firstIndex(of: replicaID) ?? 0
        var homeRanks: [String: [Int]] = [:]
        struct Candidate {
            var id: String
            var score: Placement.Score
            var age: Int
            var adapters: Int
        }
        func fit(_ held: ReplicaHoldings, index: Int, model: String, adapters jobAdapters: [String], ranks: [Int]) -> Placement.Fit {
            Placement.Fit(
                hasModel: !model.isEmpty, modelHeld: held.models.contains(model), holdsAModel: !held.models.isEmpty,
                adaptersHeld: jobAdapters.filter { held.adapters.contains($0) }.count, homeRank: ranks[index])
        }
        var scored: [Candidate] = []
        for try await (id, model, jobAdapters, age) in rows.decode((String, String, [String], Double).self) {
            let ranks = homeRanks[model] ?? Placement.ranks(of: model, replicas: live)
            homeRanks[model] = ranks
            // Starving jobs were offered first (`claim`): these have not waited the maximum wait.
            guard let score = Placement.score(fit(holdings, index: me, model: model, adapters: jobAdapters, ranks: ranks), starving: false)
            else { continue }
            if age < localityWait {
                var idleScores: [Placement.Score] = [], busyScores: [Placement.Score] = []
                for other in others {
                    guard let index = live.firstIndex(of: other.id),
                        let otherScore = Placement.score(
                            fit(other.holdings, index: index, model: model, adapters: jobAdapters, ranks: ranks), starving: false)
                    else { continue }
                    if busy.contains(other.id) { busyScores.append(otherScore) } else { idleScores.append(otherScore) }
                }
                if Placement.leaves(score, toIdle: idleScores, busy: busyScores) {
                    retryAfter = min(retryAfter ?? .infinity, localityWait - age)
                    continue
                }
            }
            scored.append(Candidate(id: id, score: score, age: scored.count, adapters: jobAdapters.count))
        }
        // Best score first, the oldest among equals.
        scored.sort { (a: Candidate, b: Candidate) -> Bool in a.score != b.score ? b.score < a.score : a.age < b.age }
        for candidate in scored {
            if let (record, attempts) = try await lockQueued(candidate.id, connection) {
                let job: Claimable = (
                    candidate.id, record, "queued", attempts, candidate.score.modelHeld ? 1 : 0, candidate.score.adaptersHeld,
                    candidate.adapters
                )
                return (job, retryAfter)
            }
        }
        return (nil, retryAfter)
    }

    /// `PlacementSettings.Policy.random`: the oldest queued job whose identifier's rendezvous home among the live replicas is
    /// this one, locked; what the replica holds of it is counted as for the placement rule.
    private func randomlyPlacedCandidate(
        holdings: ReplicaHoldings, live: [String], _ connection: PostgresConnection
    ) async throws -> Claimable? {
        let me = live.firstIndex(of: replicaID) ?? 0
        let rows = try await connection.query(
            "SELECT id, model, adapters FROM job WHERE status = 'queued' ORDER BY enqueued_at, id LIMIT \(Self.placementWindow)",
            logger: logger)
        var mine: [(id: String, modelHeld: Int, adaptersHeld: Int, adapters: Int)] = []
        for try await (id, model, adapters) in rows.decode((String, String, [String]).self)
        where Placement.ranks(of: id, replicas: live)[me] == 0 {
            mine.append((id, holdings.models.contains(model) ? 1 : 0, adapters.filter { holdings.adapters.contains($0) }.count, adapters.count))
        }
        for candidate in mine {
            if let (record, attempts) = try await lockQueued(candidate.id, connection) {
                return (candidate.id, record, "queued", attempts, candidate.modelHeld, candidate.adaptersHeld, candidate.adapters)
            }
        }
        return nil
    }

    /// Locks a job that is still queued (`FOR UPDATE SKIP LOCKED`) and returns its record and attempts; nil when another
    /// replica is claiming it or it is no longer queued.
    private func lockQueued(_ id: String, _ connection: PostgresConnection) async throws -> (Data, Int)? {
        let rows = try await connection.query(
            "SELECT record, attempts FROM job WHERE id = \(id) AND status = 'queued' FOR UPDATE SKIP LOCKED", logger: logger)
        for try await row in rows.decode((Data, Int).self) { return row }
        return nil
    }

    public func renewLeases(_ ids: [String]) async throws -> [String: Bool] {
        guard !ids.isEmpty else { return [:] }
        let rows = try await client.query(
            """
            UPDATE job SET lease_expires_at = clock_timestamp() + make_interval(secs => \(leaseSeconds))
            WHERE id = ANY(\(ids)::text[]) AND status = 'running' AND lease_owner = \(replicaID)
            RETURNING id, cancel_requested
            """, logger: logger)
        var held: [String: Bool] = [:]
        for try await (id, cancel) in rows.decode((String, Bool).self) { held[id] = cancel }
        return held
    }

    public func finish(_ job: JobRecord, images: [Data]) async throws -> Bool {
        let record = try encode(job)
        return try await client.withTransaction(logger: logger) { connection -> Bool in
            let rows = try await connection.query(
                """
                UPDATE job SET status = \(job.status.rawValue), finished_at = \(job.finishedAt), attempts = \(job.attempts), record = \(record),
                    lease_owner = NULL, lease_expires_at = NULL
                WHERE id = \(job.id) AND status = 'running' AND lease_owner = \(self.replicaID)
                RETURNING id
                """, logger: logger)
            var won = false
            for try await _ in rows.decode(String.self) { won = true }
            if won && !images.isEmpty { try await self.writeOutputs(jobID: job.id, images: images, connection) }
            return won
        }
    }

    public func release(_ job: JobRecord) async throws -> Bool {
        let record = try encode(job)
        let rows = try await client.query(
            """
            UPDATE job SET status = 'queued', attempts = \(job.attempts), record = \(record), lease_owner = NULL, lease_expires_at = NULL
            WHERE id = \(job.id) AND status = 'running' AND lease_owner = \(replicaID)
            RETURNING id
            """, logger: logger)
        var released = false
        for try await _ in rows.decode(String.self) { released = true }
        return released
    }

    public func cancel(id: String) async throws -> JobRecord? {
        try await client.withTransaction(logger: logger) { connection -> JobRecord? in
            let rows = try await connection.query("SELECT status, record FROM job WHERE id = \(id) FOR UPDATE", logger: logger)
            var found: (String, Data)?
            for try await row in rows.decode((String, Data).self) { found = row }
            guard let (status, data) = found else { return nil }
            var job = try self.decode(data)
            switch status {
            case "queued":
                job.status = .cancelled
                job.finishedAt = Date()
                let record = try self.encode(job)
                try await connection.query(
                    "UPDATE job SET status = 'cancelled', finished_at = \(job.finishedAt), record = \(record) WHERE id = \(id)",
                    logger: logger)
                return job
            case "running":
                try await connection.query("UPDATE job SET cancel_requested = true WHERE id = \(id)", logger: logger)
                return job
            default:
                return nil
            }
        }
    }

    public func queuedCount() async throws -> Int {
        let rows = try await client.query("SELECT count(*)::bigint FROM job WHERE status = 'queued'", logger: logger)
        for try await count in rows.decode(Int.self) { return count }
        return 0
    }

    public func notify(_ event: JobEvent) async throws {
        var event = event
        // NOTIFY payloads are limited to 8000 bytes.
        if let error = event.error, error.utf8.count > 2000 { event.error = String(error.prefix(2000)) + "..." }
        let payload = String(decoding: try Self.encoder.encode(event), as: UTF8.self)
        try await client.query("SELECT pg_notify(\(channel), \(payload))", logger: logger)
    }

    public func listen(ready: @escaping @Sendable () -> Void, _ handler: @escaping @Sendable (JobEvent) async -> Void) async {
        while !Task.isCancelled {
            do {
                try await client.withConnection { connection in
                    try await connection.listen(on: self.channel) { notifications in
                        ready()
                        for try await notification in notifications {
                            guard let event = try? Self.decoder.decode(JobEvent.self, from: Data(notification.payload.utf8))
                            else { continue }
                            await handler(event)
                        }
                    }
                }
            } catch {
                if Task.isCancelled { return }
                logger.warning("PostgreSQL event listener lost its connection; reconnecting", metadata: ["error": "\(error)"])
            }
            try? await Task.sleep(for: .milliseconds(500))
        }
    }

    public func advertise(_ holdings: ReplicaHoldings, stats: ReplicaStats) async throws -> Int {
        try await client.query(
            """
            INSERT INTO replica (id, models, adapters, claims, affinity_hits, loads_avoided, loads)
            VALUES (\(replicaID), \(holdings.models)::text[], \(holdings.adapters)::text[], \(stats.claims), \(stats.affinityHits),
                    \(stats.loadsAvoided), \(stats.loads))
            ON CONFLICT (id) DO UPDATE SET heartbeat_at = clock_timestamp(), models = excluded.models, adapters = excluded.adapters,
                claims = excluded.claims, affinity_hits = excluded.affinity_hits, loads_avoided = excluded.loads_avoided,
                loads = excluded.loads
            """, logger: logger)
        // Replicas silent for an hour are gone for good.
        try await client.query("DELETE FROM replica WHERE heartbeat_at < clock_timestamp() - interval '1 hour'", logger: logger)
        return try await replicas(within: 3 * leaseSeconds).count
    }

    public func replicas(within: TimeInterval) async throws -> [ReplicaAdvertisement] {
        let rows = try await client.query(
            """
            SELECT id, models, adapters, claims, affinity_hits, loads_avoided, loads, heartbeat_at FROM replica
            WHERE heartbeat_at > clock_timestamp() - make_interval(secs => \(within)) ORDER BY id
            """, logger: logger)
        var result: [ReplicaAdvertisement] = []
        for try await (id, models, adapters, claims, hits, avoided, loads, heartbeat) in rows.decode(
            (String, [String], [String], Int, Int, Int, Int, Date).self)
        {
            var stats = ReplicaStats()
            stats.claims = claims
            stats.affinityHits = hits
            stats.loadsAvoided = avoided
            stats.loads = loads
            result.append(
                ReplicaAdvertisement(
                    id: id, holdings: ReplicaHoldings(models: models, adapters: adapters), stats: stats, heartbeatAt: heartbeat))
        }
        return result
    }

    /// Test and operations helper: the lease owner and expiry of a job.
    public func lease(of id: String) async throws -> (owner: String?, expiresAt: Date?)? {
        let rows = try await client.query("SELECT lease_owner, lease_expires_at FROM job WHERE id = \(id)", logger: logger)
        for try await (owner, expires) in rows.decode((String?, Date?).self) { return (owner, expires) }
        return nil
    }
}

extension JobRecord {
    /// The job starts running now: status, start time, one more attempt, time spent queued, fresh progress.
    mutating func markStarted(at date: Date = Date()) {
        status = .running
        startedAt = date
        attempts += 1
        timings["queue"] = date.timeIntervalSince(createdAt)
        progress = JobProgress(stage: "starting", step: 0, total: spec.steps)
    }
}
