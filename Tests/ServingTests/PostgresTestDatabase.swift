import Foundation
import Logging
import ParityTesting
import PostgresNIO
import XCTest

@testable import Serving

/// The PostgreSQL these tests use (`TestPostgres`: skipped locally without it, failed in CI). Each test gets a
/// schema of its own, dropped afterwards.
enum PostgresTestDatabase {
    static var baseURL: String? { TestPostgres.baseURL }

    /// A fresh schema's URL; skips (locally) or fails (in CI) without a reachable database.
    static func freshURL(file: StaticString = #filePath, line: UInt = #line) async throws -> (url: String, schema: String) {
        guard let base = baseURL else {
            if TestPostgres.required {
                XCTFail(TestPostgres.missingMessage, file: file, line: line)
                throw TimeoutError(description: TestPostgres.missingMessage)
            }
            throw XCTSkip(TestPostgres.missingMessage + ": PostgreSQL tests skipped")
        }
        let schema = TestPostgres.freshSchema()
        let url = TestPostgres.url(base, schema: schema)
        do {
            // Reachability, with the error the test reports.
            let probe = try await PostgresJobStore.connect(url: url, replicaID: "probe", timeout: 10, logger: quietLogger)
            probe.close()
        } catch {
            XCTFail("PostgreSQL at \(base) is unreachable: \(error)", file: file, line: line)
            throw error
        }
        return (url, schema)
    }

    static var quietLogger: Logger {
        var logger = Logger(label: "postgres-test")
        logger.logLevel = .critical
        return logger
    }

    static func store(_ url: String, replica: String, lease: Double = 5) async throws -> PostgresJobStore {
        try await PostgresJobStore.connect(url: url, replicaID: replica, leaseSeconds: lease, logger: quietLogger)
    }

    /// Drops a test's schema.
    static func drop(_ schema: String) async {
        guard let base = baseURL, let location = try? PostgresJobStore.Location(url: base) else { return }
        let configuration = PostgresClient.Configuration(
            host: location.host, port: location.port, username: location.user, password: location.password,
            database: location.database,
            tls: .disable)
        let client = PostgresClient(configuration: configuration, backgroundLogger: quietLogger)
        let task = Task { await client.run() }
        _ = try? await client.query(PostgresQuery(unsafeSQL: "DROP SCHEMA IF EXISTS \(schema) CASCADE"), logger: quietLogger)
        task.cancel()
    }
}
