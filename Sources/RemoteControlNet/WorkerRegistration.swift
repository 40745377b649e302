import Foundation
import Logging
import Serving

/// A worker's registration in the shared store (`swiftdiffusion worker --store postgres://...`, issue 14 item 3):
/// its row (id, address replicas dial, role, the ControlNets it serves) is written at start, refreshed every
/// `interval` (the heartbeat replicas judge it by) and deleted on a clean shutdown. A worker killed without one stops
/// heartbeating; replicas drop it once its heartbeat is older than their staleness window (or sooner, when its
/// health checks fail).
public struct WorkerRegistration: Sendable {
    public let registry: any WorkerRegistry
    public let worker: RegisteredWorker
    public let interval: Duration
    let logger: Logger

    public init(registry: any WorkerRegistry, worker: RegisteredWorker, interval: Duration = .seconds(5), logger: Logger) {
        self.registry = registry
        self.worker = worker
        self.interval = interval
        self.logger = logger
    }

    /// Registers (throwing when the store refuses the first write), so a worker that cannot register does not start.
    public func register() async throws {
        try await registry.heartbeat(worker)
        logger.info(
            "registered in the shared store",
            metadata: ["id": "\(worker.id)", "address": "\(worker.address)", "role": "\(worker.role)", "models": "\(worker.models)"])
    }

    /// Heartbeats until cancelled (a failed heartbeat is logged once and retried), then deletes the row where
    /// `deregister` (false leaves it to go stale, as a killed worker's does).
    public func heartbeats(deregister: Bool = true) async {
        var failing = false
        while !Task.isCancelled {
            do {
                try await Task.sleep(for: interval)
            } catch {
                break
            }
            do {
                try await registry.heartbeat(worker)
                if failing { logger.info("heartbeats to the shared store work again") }
                failing = false
            } catch {
                if !failing { logger.warning("heartbeat to the shared store failed; retrying", metadata: ["error": "\(error)"]) }
                failing = true
            }
        }
        guard deregister else { return }
        // In a task of its own: this one is cancelled, and the query must still run.
        let (registry, id, logger) = (registry, worker.id, logger)
        await Task {
            do {
                try await registry.deregisterWorker(id: id)
                logger.info("deregistered from the shared store", metadata: ["id": "\(id)"])
            } catch {
                logger.warning("could not deregister from the shared store; replicas drop this worker once its heartbeat is stale", metadata: ["error": "\(error)"])
            }
        }.value
    }
}
