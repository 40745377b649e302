import Foundation
import Logging
import Serving

/// `serve --store postgres://...`: the job store several replicas share.
enum SharedStoreOption {
    static func open(url: String, leaseSeconds: Double, logger: Logger) async throws -> PostgresJobStore {
        guard url.hasPrefix("postgres://") || url.hasPrefix("postgresql://") else {
            throw CLIError("--store takes a postgres:// URL (a SQLite file is --database): \(redacted(url))")
        }
        guard leaseSeconds >= 1, leaseSeconds <= 3600 else {
            throw CLIError("invalid settings: store.lease_seconds must be between 1 and 3600")
        }
        do {
            let store = try await PostgresJobStore.connect(url: url, leaseSeconds: leaseSeconds, logger: logger)
            logger.info(
                "joined the shared job store", metadata: ["replica": "\(store.replicaID)", "lease_seconds": "\(leaseSeconds)"])
            return store
        } catch {
            throw CLIError("cannot open the job store \(redacted(url)): \(error)")
        }
    }

    /// The URL without its password, for logs and messages.
    static func redacted(_ url: String) -> String {
        guard var components = URLComponents(string: url), components.password != nil else { return url }
        components.password = "***"
        return components.string ?? url
    }
}
