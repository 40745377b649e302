import Foundation
import ParityTesting
import XCTest

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// `swiftdiffusion worker --role controlnet` and `serve --controlnet-worker` as users run them: two processes on
/// loopback, the embedded model and its ControlNet. A job with a ControlNet succeeds through the worker; after the
/// worker is killed (SIGKILL), the next job still succeeds, with its ControlNet run locally and a logged warning.
final class RemoteWorkerCommandTests: XCTestCase {
    func testServeWithAWorkerAndAfterTheWorkerIsKilled() async throws {
        guard let executable = CommandLineTests.executable else {
            XCTFail("swiftdiffusion is not built next to the tests (run `swift build` first)")
            return
        }
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("swiftdiffusion-worker-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: work) }
        var environment = ProcessInfo.processInfo.environment
        environment["SWIFTDIFFUSION_THREADS"] = "1"

        // Bad flags are CLI errors, before anything listens.
        let badRole = try CommandLineTests.execute(executable, ["worker", "--role", "unet", "--listen", "127.0.0.1:0"], environment: environment)
        XCTAssertEqual(badRole.status, 2)
        XCTAssertTrue(badRole.stderr.contains("unknown worker role"), badRole.stderr)
        let badAddress = try CommandLineTests.execute(executable, ["worker", "--role", "controlnet", "--listen", "nowhere"], environment: environment)
        XCTAssertEqual(badAddress.status, 2)
        XCTAssertTrue(badAddress.stderr.contains("--listen must be HOST:PORT"), badAddress.stderr)

        let worker = try CommandLineTests.startShell(
            "'\(executable.path)' worker --role controlnet --listen 127.0.0.1:0", in: work, environment: environment)
        defer { CommandLineTests.stop(worker) }
        var workerPort: Int?
        let deadline = Date().addingTimeInterval(60)
        while workerPort == nil, Date() < deadline, worker.process.isRunning {
            if let line = worker.stderrText().split(separator: "\n").first(where: { $0.hasPrefix("listening on 127.0.0.1:") }) {
                workerPort = Int(line.split(separator: ":").last ?? "")
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        guard let workerPort else {
            XCTFail("the worker did not print its port: \(worker.stderrText())")
            return
        }

        let port = try READMECommandTests.freeLoopbackPort()
        let server = try CommandLineTests.startShell(
            "'\(executable.path)' serve --host 127.0.0.1 --port \(port) --database memory --controlnet-worker 127.0.0.1:\(workerPort)"
                + " --controlnet-worker-timeout 30",
            in: work, environment: environment)
        defer { CommandLineTests.stop(server) }
        let base = "http://127.0.0.1:\(port)"
        var healthy = false
        while Date() < deadline.addingTimeInterval(60), server.process.isRunning {
            if let (_, response) = try? await URLSession.shared.data(from: URL(string: base + "/healthz")!),
                (response as? HTTPURLResponse)?.statusCode == 200
            {
                healthy = true
                break
            }
            try await Task.sleep(for: .milliseconds(200))
        }
        guard healthy else {
            XCTFail("serve did not start: \(server.stderrText())")
            return
        }

        let control = try Data(contentsOf: Golden.fixturesDirectory.appendingPathComponent("pipelines/control_ring.png")).base64EncodedString()
        func runJob(seed: Int) async throws -> String? {
            let body: [String: Any] = [
                "prompt": "a red circle", "width": 64, "height": 64, "steps": 2, "seed": seed,
                "controls": [["model": "shapes-sd-controlnet-canny", "image": control, "preprocessor": "none"]],
            ]
            let id = try await CommandLineTests.submitJob(base, body)
            let end = Date().addingTimeInterval(120)
            while Date() < end {
                let (status, _) = try await URLSession.shared.data(from: URL(string: base + "/v1/images/jobs/\(id)")!)
                let state = (try JSONSerialization.jsonObject(with: status) as? [String: Any])?["status"] as? String
                if let state, ["succeeded", "failed", "cancelled"].contains(state) { return state }
                try await Task.sleep(for: .milliseconds(200))
            }
            return nil
        }

        let first = try await runJob(seed: 1)
        XCTAssertEqual(first, "succeeded", server.stderrText())
        XCTAssertFalse(server.stderrText().contains("local ControlNets"), "the first job ran on the worker: \(server.stderrText())")

        kill(worker.process.processIdentifier, SIGKILL)
        worker.process.waitUntilExit()
        let second = try await runJob(seed: 2)
        XCTAssertEqual(second, "succeeded", "a lost worker fails no job: \(server.stderrText())")
        XCTAssertTrue(
            server.stderrText().contains("ControlNet worker failed; this request finishes with local ControlNets"),
            "the fallback is logged: \(server.stderrText())")
    }
}
