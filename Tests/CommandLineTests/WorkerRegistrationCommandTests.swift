import Foundation
import ParityTesting
import XCTest

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// `swiftdiffusion worker --role controlnet --store postgres://...` and `serve --store postgres://...` as users run
/// them (issue 14 item 3): the worker registers itself, the replica (no `--controlnet-worker`) finds it, reports it
/// on /metrics and runs a job's ControlNet on it; on SIGTERM the worker deletes its row and exits 0, the replica
/// drops it and the next job runs locally. Needs PostgreSQL (`TestPostgres`) and `psql`.
final class WorkerRegistrationCommandTests: XCTestCase {
    private var schema: String?
    private var processes: [CommandLineTests.Background] = []

    override func tearDown() async throws {
        for process in processes { CommandLineTests.stop(process) }
        processes = []
        if let schema, let base = TestPostgres.baseURL { _ = try? CommandLineTests.psql(base, "DROP SCHEMA IF EXISTS \(schema) CASCADE") }
    }

    private func metric(_ base: String, _ series: String) async throws -> Double? {
        let (data, _) = try await URLSession.shared.data(from: URL(string: base + "/metrics")!)
        return String(decoding: data, as: UTF8.self).split(separator: "\n").first { $0.hasPrefix(series + " ") }.flatMap {
            Double($0.split(separator: " ").last ?? "")
        }
    }

    private func until(_ what: String, seconds: Double = 60, _ condition: () async throws -> Bool) async throws {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if (try? await condition()) == true { return }
            try await Task.sleep(for: .milliseconds(200))
        }
        throw CommandLineTests.HelperError(description: "not within \(seconds) s: \(what)")
    }

    func testARegisteredWorkerIsFoundUsedAndDeregistersOnSIGTERM() async throws {
        let executable = try XCTUnwrap(CommandLineTests.executable, "swiftdiffusion is not built next to the tests")
        var environment = ProcessInfo.processInfo.environment
        environment["SWIFTDIFFUSION_THREADS"] = "1"
        environment["SWIFTDIFFUSION_STORE"] = nil

        // Flags that cannot work are CLI errors before anything connects.
        let advertiseAlone = try CommandLineTests.execute(
            executable, ["worker", "--role", "controlnet", "--listen", "127.0.0.1:0", "--advertise", "10.0.0.1:50051"], environment: environment)
        XCTAssertEqual(advertiseAlone.status, 2)
        XCTAssertTrue(advertiseAlone.stderr.contains("--advertise needs --store"), advertiseAlone.stderr)
        let anyAddress = try CommandLineTests.execute(
            executable, ["worker", "--role", "controlnet", "--listen", "0.0.0.0:0", "--store", "postgres://u@127.0.0.1:1/db"],
            environment: environment)
        XCTAssertEqual(anyAddress.status, 2)
        XCTAssertTrue(anyAddress.stderr.contains("give --advertise HOST:PORT"), anyAddress.stderr)
        let slowHeartbeat = try CommandLineTests.execute(
            executable,
            ["worker", "--role", "controlnet", "--listen", "127.0.0.1:0", "--store", "postgres://u@127.0.0.1:1/db", "--heartbeat-seconds", "20"],
            environment: environment)
        XCTAssertEqual(slowHeartbeat.status, 2)
        XCTAssertTrue(slowHeartbeat.stderr.contains("--heartbeat-seconds must be 0.1 to 5"), slowHeartbeat.stderr)

        guard let base = TestPostgres.baseURL else {
            if TestPostgres.required { XCTFail(TestPostgres.missingMessage) } else { throw XCTSkip(TestPostgres.missingMessage) }
            return
        }
        let schema = TestPostgres.freshSchema()
        self.schema = schema
        let store = TestPostgres.url(base, schema: schema)
        let work = FileManager.default.temporaryDirectory

        let worker = try CommandLineTests.startShell(
            "'\(executable.path)' worker --role controlnet --listen 127.0.0.1:0 --store '\(store)' --heartbeat-seconds 0.5", in: work,
            environment: environment)
        processes.append(worker)
        var address: String?
        try await until("the worker listens") {
            address = worker.stderrText().split(separator: "\n").first { $0.hasPrefix("listening on 127.0.0.1:") }.map {
                String($0.dropFirst("listening on ".count))
            }
            return address != nil || !worker.process.isRunning
        }
        let listening = try XCTUnwrap(address, worker.stderrText())
        let registered = try CommandLineTests.psql(base, "SELECT address || ' ' || role FROM \(schema).worker")
        XCTAssertEqual(registered, "\(listening) controlnet", worker.stderrText())

        let port = try READMECommandTests.freeLoopbackPort()
        var serveEnvironment = environment
        serveEnvironment["SWIFTDIFFUSION_STORE"] = store
        let server = try CommandLineTests.startShell(
            "'\(executable.path)' serve --host 127.0.0.1 --port \(port) --lease-seconds 2", in: work, environment: serveEnvironment)
        processes.append(server)
        let replica = "http://127.0.0.1:\(port)"
        try await until("the replica discovers the worker (\(server.stderrText()))", seconds: 120) {
            try await self.metric(replica, #"swiftdiffusion_controlnet_workers{state="healthy"}"#) == 1
        }

        let control = try Data(contentsOf: Golden.fixturesDirectory.appendingPathComponent("pipelines/control_ring.png")).base64EncodedString()
        func runJob(seed: Int) async throws -> String {
            let body: [String: Any] = [
                "prompt": "a red circle", "width": 64, "height": 64, "steps": 2, "seed": seed,
                "controls": [["model": "shapes-sd-controlnet-canny", "image": control, "preprocessor": "none"]],
            ]
            let id = try await CommandLineTests.submitJob(replica, body)
            var state = "?"
            try await until("job \(id) finishes", seconds: 120) {
                let (status, _) = try await URLSession.shared.data(from: URL(string: replica + "/v1/images/jobs/\(id)")!)
                state = (try JSONSerialization.jsonObject(with: status) as? [String: Any])?["status"] as? String ?? "?"
                return ["succeeded", "failed", "cancelled"].contains(state)
            }
            return state
        }

        let first = try await runJob(seed: 1)
        XCTAssertEqual(first, "succeeded", server.stderrText())
        XCTAssertFalse(server.stderrText().contains("local ControlNets"), "the first job ran on the worker: \(server.stderrText())")

        // A clean shutdown: exit 0, row deleted, the replica drops the worker; the next job runs locally.
        kill(worker.process.processIdentifier, SIGTERM)
        let exited = await CommandLineTests.waitForExit(worker.process, seconds: 30)
        XCTAssertTrue(exited, "the worker ends on SIGTERM")
        XCTAssertEqual(worker.process.terminationStatus, 0, worker.stderrText())
        XCTAssertEqual(try CommandLineTests.psql(base, "SELECT count(*) FROM \(schema).worker"), "0", "the row is deleted")
        try await until("the replica drops the worker") {
            try await self.metric(replica, #"swiftdiffusion_controlnet_workers{state="known"}"#) == 0
        }
        XCTAssertTrue(server.stderrText().contains("ControlNet worker dropped"), server.stderrText())
        let second = try await runJob(seed: 2)
        XCTAssertEqual(second, "succeeded", server.stderrText())
        XCTAssertEqual(try CommandLineTests.psql(base, "SELECT status || ':' || count(*) FROM \(schema).job GROUP BY status"), "succeeded:2")
    }
}
