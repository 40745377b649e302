import Foundation
import PostgresNIO

/// A worker process (`swiftdiffusion worker --role controlnet --store postgres://...`) as it registered itself in the
/// shared store: where replicas dial it, what it computes and serves, and when it last said it is alive.
public struct RegisteredWorker: Sendable, Equatable {
    public var id: String
    /// HOST:PORT replicas dial (`worker --advertise`, else its `--listen` address).
    public var address: String
    /// What it computes: `controlnet`.
    public var role: String
    /// The model ids it serves (ControlNet ids for the controlnet role).
    public var models: [String]
    /// The store's clock at the last heartbeat (nil before the first).
    public var heartbeatAt: Date?

    public init(id: String, address: String, role: String, models: [String] = [], heartbeatAt: Date? = nil) {
        self.id = id
        self.address = address
        self.role = role
        self.models = models
        self.heartbeatAt = heartbeatAt
    }
}

/// Where workers register themselves and replicas find them (issue 14 item 3): the `worker` table of the shared
/// PostgreSQL store.
public protocol WorkerRegistry: Sendable {
    /// Inserts the worker's row or refreshes it (address, models) and its heartbeat.
    func heartbeat(_ worker: RegisteredWorker) async throws
    /// Deletes the worker's row (clean shutdown).
    func deregisterWorker(id: String) async throws
    /// Workers of `role` whose last heartbeat is at most `within` seconds old, by id.
    func workers(role: String, within: TimeInterval) async throws -> [RegisteredWorker]
}

extension PostgresJobStore: WorkerRegistry {
    public func heartbeat(_ worker: RegisteredWorker) async throws {
        try await client.query(
            """
            INSERT INTO worker (id, address, role, models) VALUES (\(worker.id), \(worker.address), \(worker.role), \(worker.models)::text[])
            ON CONFLICT (id) DO UPDATE SET address = excluded.address, role = excluded.role, models = excluded.models,
                heartbeat_at = clock_timestamp()
            """, logger: logger)
        // Workers silent for an hour are gone for good (killed without a clean shutdown).
        try await client.query("DELETE FROM worker WHERE heartbeat_at < clock_timestamp() - interval '1 hour'", logger: logger)
    }

    public func deregisterWorker(id: String) async throws {
        try await client.query("DELETE FROM worker WHERE id = \(id)", logger: logger)
    }

    public func workers(role: String, within: TimeInterval) async throws -> [RegisteredWorker] {
        let rows = try await client.query(
            """
            SELECT id, address, role, models, heartbeat_at FROM worker
            WHERE role = \(role) AND heartbeat_at > clock_timestamp() - make_interval(secs => \(within)) ORDER BY id
            """, logger: logger)
        var result: [RegisteredWorker] = []
        for try await (id, address, role, models, heartbeat) in rows.decode((String, String, String, [String], Date).self) {
            result.append(RegisteredWorker(id: id, address: address, role: role, models: models, heartbeatAt: heartbeat))
        }
        return result
    }
}
