import Foundation
import ParityTesting
import XCTest

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// Two `swiftdiffusion serve` replicas on one PostgreSQL store (`--store postgres://...`): the replica running a
/// job is killed with SIGKILL mid-job; the other finishes that job after the lease expires, and every job ends
/// exactly once. Needs PostgreSQL (`TestPostgres`) and `psql` to read the job table.
final class ReplicaKillTests: XCTestCase {
    private var schema: String?
    private var servers: [CommandLineTests.Background] = []

    override func tearDown() async throws {
        for server in servers { CommandLineTests.stop(server) }
        servers = []
        if let schema, let base = TestPostgres.baseURL { _ = try? CommandLineTests.psql(base, "DROP SCHEMA IF EXISTS \(schema) CASCADE") }
    }

    private func startReplica(_ store: String, port: Int) throws -> CommandLineTests.Background {
        let executable = try XCTUnwrap(CommandLineTests.executable, "swiftdiffusion is not built next to the tests")
        let models = FixtureModels.linkedFolder(named: "swiftdiffusion-replica-models")
        var environment = ProcessInfo.processInfo.environment
        environment["SWIFTDIFFUSION_THREADS"] = "1"
        environment["SWIFTDIFFUSION_STORE"] = store
        let command =
            "'\(executable.path)' serve --host 127.0.0.1 --port \(port) --models '\(models.path)' --lease-seconds 2 --log-level warning"
        let server = try CommandLineTests.startShell(
            command, in: FileManager.default.temporaryDirectory, environment: environment)
        servers.append(server)
        return server
    }

    private func waitReady(_ base: String, _ server: CommandLineTests.Background) async throws {
        let deadline = Date().addingTimeInterval(90)
        while Date() < deadline, server.process.isRunning {
            if let (_, response) = try? await URLSession.shared.data(from: URL(string: base + "/readyz")!),
                (response as? HTTPURLResponse)?.statusCode == 200
            {
                return
            }
            try await Task.sleep(for: .milliseconds(200))
        }
        throw CommandLineTests.HelperError(description: "replica at \(base) not ready: \(server.stderrText())")
    }

    private func submit(_ base: String, _ body: [String: Any]) async throws -> String {
        var request = URLRequest(url: URL(string: base + "/v1/images/jobs")!)
        request.httpMethod = "POST"
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        request.httpBody = try JSONSerialization.data(withJSONObject: body)
        let (data, response) = try await URLSession.shared.data(for: request)
        XCTAssertEqual((response as? HTTPURLResponse)?.statusCode, 202, String(decoding: data, as: UTF8.self))
        let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        return try XCTUnwrap(object["id"] as? String)
    }

    private func status(_ base: String, _ id: String) async throws -> String {
        let (data, _) = try await URLSession.shared.data(from: URL(string: base + "/v1/images/jobs/\(id)")!)
        let object = try JSONSerialization.jsonObject(with: data) as? [String: Any]
        return object?["status"] as? String ?? "?"
    }

    func testAKilledReplicasJobIsFinishedByTheOtherReplica() async throws {
        guard let base = TestPostgres.baseURL else {
            if TestPostgres.required { XCTFail(TestPostgres.missingMessage) } else { throw XCTSkip(TestPostgres.missingMessage) }
            return
        }
        let schema = TestPostgres.freshSchema()
        self.schema = schema
        let store = TestPostgres.url(base, schema: schema)
        let portA = try READMECommandTests.freeLoopbackPort(), portB = try READMECommandTests.freeLoopbackPort()
        let a = "http://127.0.0.1:\(portA)", b = "http://127.0.0.1:\(portB)"
        let victim = try startReplica(store, port: portA)
        try await waitReady(a, victim)

        // A long job (two images of 150 steps) on the only replica, A: it claims it.
        let long = try await submit(
            a, ["prompt": "long", "model": "sd1", "width": 64, "height": 64, "steps": 150, "n": 2, "seed": 7])
        let deadline = Date().addingTimeInterval(60)
        while try await status(a, long) != "running", Date() < deadline { try await Task.sleep(for: .milliseconds(50)) }
        let owner = try CommandLineTests.psql(base, "SELECT lease_owner FROM \(schema).job WHERE id = '\(long)'")
        XCTAssertTrue(owner.contains("-\(victim.process.processIdentifier)-"), "replica A holds the lease: \(owner)")

        // B joins; short jobs through B; then A dies mid-job.
        let survivor = try startReplica(store, port: portB)
        try await waitReady(b, survivor)
        var short: [String] = []
        for seed in 0..<3 {
            short.append(
                try await submit(b, ["prompt": "short", "model": "sd1", "width": 32, "height": 32, "steps": 2, "seed": seed]))
        }
        let stillRunning = try await status(b, long)
        XCTAssertEqual(stillRunning, "running", "the long job must still be running when A is killed")
        kill(victim.process.processIdentifier, SIGKILL)
        let killedAt = Date()

        // B finishes everything; the long job after A's lease (2 s) expired.
        for id in short + [long] {
            var state = "?"
            let end = Date().addingTimeInterval(120)
            while Date() < end {
                state = try await status(b, id)
                if ["succeeded", "failed", "cancelled"].contains(state) { break }
                try await Task.sleep(for: .milliseconds(100))
            }
            XCTAssertEqual(state, "succeeded", "job \(id): \(survivor.stderrText())")
        }
        let takeover = Date().timeIntervalSince(killedAt)
        XCTAssertLessThan(takeover, 120)
        let (image, response) = try await URLSession.shared.data(from: URL(string: b + "/v1/images/jobs/\(long)/images/0")!)
        XCTAssertEqual((response as? HTTPURLResponse)?.statusCode, 200)
        XCTAssertEqual(Array(image.prefix(4)), [0x89, 0x50, 0x4E, 0x47])
        // Run twice (A's try, then B's), completed once with its two images; every job exactly one row, all succeeded.
        let attempts = try CommandLineTests.psql(
            base, "SELECT convert_from(record, 'UTF8')::json->>'attempts' FROM \(schema).job WHERE id = '\(long)'")
        XCTAssertEqual(attempts, "2")
        let finishedBy = try CommandLineTests.psql(base, "SELECT count(*) FROM \(schema).job_output WHERE job_id = '\(long)'")
        XCTAssertEqual(finishedBy, "2")
        let statuses = try CommandLineTests.psql(base, "SELECT status || ':' || count(*) FROM \(schema).job GROUP BY status")
        XCTAssertEqual(statuses, "succeeded:4")
    }
}
