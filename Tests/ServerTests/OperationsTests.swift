import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import ParityTesting
import Server
import Serving
import XCTest

/// Health, readiness, Prometheus metrics, and admission control under a burst of load.
final class OperationsTests: XCTestCase {
    func testHealthAndReadiness() async throws {
        // Without its service running the engine is not ready; the process is still healthy.
        let engine = TestServer.engine()
        let idle = Application(
            router: ServerApplication.router(engine: engine, configuration: ServerConfiguration()), logger: API.quietLogger)
        try await idle.test(.router) { client in
            let health = try await client.execute(uri: "/healthz", method: .get)
            XCTAssertEqual(health.status, .ok)
            XCTAssertEqual(health.body.jsonObject["status"] as? String, "ok")
            let ready = try await client.execute(uri: "/readyz", method: .get)
            XCTAssertEqual(ready.status, .serviceUnavailable)
            XCTAssertEqual(ready.body.jsonObject["status"] as? String, "starting")
        }
        try await TestServer.withApplication { client in
            let ready = try await client.execute(uri: "/readyz", method: .get)
            XCTAssertEqual(ready.status, .ok)
            XCTAssertEqual(ready.body.jsonObject["status"] as? String, "ready")
        }
        // No checkpoint at all: never ready.
        let empty = FileManager.default.temporaryDirectory.appendingPathComponent("swiftdiffusion-empty-\(UUID().uuidString)")
        let noModels = GenerationEngine(
            configuration: EngineConfiguration(), repository: ModelRepository(roots: [empty], embeddedModels: nil),
            store: InMemoryJobStore(),
            logger: API.quietLogger)
        try await TestServer.withApplication(engine: noModels) { client in
            let ready = try await client.execute(uri: "/readyz", method: .get)
            XCTAssertEqual(ready.status, .serviceUnavailable)
        }
    }

    func testMetricsAfterJobs() async throws {
        let control = try Data(contentsOf: Golden.fixturesDirectory.appendingPathComponent("pipelines/control_ring.png"))
            .base64EncodedString()
        try await TestServer.withApplication(engine: API.engine()) { client in
            let lora: [String: Any] = ["prompt": "m", "width": 32, "height": 32, "steps": 2, "loras": [["name": "sd1-lora"]]]
            let controlled: [String: Any] = [
                "prompt": "m", "width": 32, "height": 32, "steps": 2,
                "controls": [["model": "sd1-controlnet", "image": control]],
            ]
            for body in [lora, lora, controlled, controlled] {
                let job = try await API.waitFinished(client, try await API.submitID(client, body))
                XCTAssertEqual(job["status"] as? String, "succeeded")
            }
            let rejected = try await API.submit(
                client, ["prompt": "m", "width": 32, "height": 32, "steps": 2, "loras": [["name": "missing"]]])
            XCTAssertEqual(rejected.status, .notFound)
            let response = try await client.execute(uri: "/metrics", method: .get)
            XCTAssertEqual(response.status, .ok)
            XCTAssertTrue(response.headers[.contentType]?.hasPrefix("text/plain; version=0.0.4") == true)
            let text = String(buffer: response.body)
            func value(_ series: String) -> Double? {
                text.split(separator: "\n").first { $0.hasPrefix(series + " ") }.flatMap {
                    Double($0.split(separator: " ").last ?? "")
                }
            }
            // Metrics are process-wide: other tests add to them, so these are lower bounds.
            XCTAssertGreaterThanOrEqual(value(#"swiftdiffusion_jobs_total{outcome="succeeded"}"#) ?? 0, 4, text)
            XCTAssertGreaterThanOrEqual(value("swiftdiffusion_jobs_submitted_total") ?? 0, 4)
            XCTAssertEqual(value("swiftdiffusion_queue_depth"), 0, "recorded when scraped")
            XCTAssertGreaterThanOrEqual(value(#"swiftdiffusion_adapter_cache_total{kind="lora",result="miss"}"#) ?? 0, 1, text)
            XCTAssertGreaterThanOrEqual(value(#"swiftdiffusion_adapter_cache_total{kind="lora",result="hit"}"#) ?? 0, 1)
            XCTAssertGreaterThanOrEqual(value(#"swiftdiffusion_adapter_cache_total{kind="controlnet",result="miss"}"#) ?? 0, 1)
            XCTAssertGreaterThanOrEqual(value(#"swiftdiffusion_adapter_cache_total{kind="controlnet",result="hit"}"#) ?? 0, 1)
            XCTAssertGreaterThanOrEqual(value(#"swiftdiffusion_model_cache_total{result="hit"}"#) ?? 0, 3)
            for stage in ["encode_prompt", "denoise", "decode"] {
                XCTAssertGreaterThanOrEqual(value(#"swiftdiffusion_stage_seconds_count{stage="\#(stage)"}"#) ?? 0, 4, stage)
                XCTAssertGreaterThan(value(#"swiftdiffusion_stage_seconds_sum{stage="\#(stage)"}"#) ?? 0, 0, stage)
            }
            XCTAssertGreaterThanOrEqual(value(#"swiftdiffusion_job_seconds_count{outcome="succeeded"}"#) ?? 0, 4)
            XCTAssertTrue(text.contains("# TYPE swiftdiffusion_jobs_total counter"))
            XCTAssertTrue(text.contains("# TYPE swiftdiffusion_queue_depth gauge"))
        }
    }

    /// Admission control under twice the load the engine drains: capacity is measured closed-loop, then jobs
    /// arrive open-loop at twice that rate. Some are refused with 429 and Retry-After; every accepted job
    /// finishes exactly once with its image; nothing is lost.
    func testABurstAtTwiceTheCapacityIsRefusedCleanlyAndNothingIsLost() async throws {
        var configuration = API.configuration
        configuration.queueCapacity = 2
        let engine = TestServer.engine(configuration: configuration)
        try await TestServer.withApplication(engine: engine) { client in
            let body: [String: Any] = ["prompt": "load", "width": 32, "height": 32, "steps": 3]
            _ = try await API.waitFinished(client, try await API.submitID(client, body))  // loads the model
            // Closed loop: one job at a time.
            let closedStart = Date()
            for _ in 0..<4 { _ = try await API.waitFinished(client, try await API.submitID(client, body)) }
            let perJob = Date().timeIntervalSince(closedStart) / 4

            // Open loop at twice that rate.
            let arrivals = 30
            let interval = perJob / 2
            let start = Date()
            let outcomes = try await withThrowingTaskGroup(of: (HTTPResponse.Status, String?, String?, String).self) { group in
                for index in 0..<arrivals {
                    group.addTask {
                        let due = start.addingTimeInterval(Double(index) * interval)
                        if due > Date() { try await Task.sleep(for: .seconds(due.timeIntervalSinceNow)) }
                        let response = try await API.submit(
                            client, ["prompt": "load", "width": 32, "height": 32, "steps": 3, "seed": index])
                        return (
                            response.status, response.body.jsonObject["id"] as? String, response.headers[.retryAfter],
                            API.message(response)
                        )
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            let accepted = outcomes.filter { $0.0 == .accepted }.compactMap(\.1)
            let rejected = outcomes.filter { $0.0 == .tooManyRequests }
            XCTAssertEqual(accepted.count + rejected.count, arrivals, "only 202 or 429: \(outcomes.map(\.0))")
            XCTAssertGreaterThan(rejected.count, 0, "twice the capacity must overflow a queue of 2 (per job \(perJob) s)")
            XCTAssertGreaterThan(accepted.count, 2, "the queue drains while jobs arrive")
            for (_, _, retryAfter, message) in rejected {
                XCTAssertGreaterThanOrEqual(Int(retryAfter ?? "") ?? 0, 1, "Retry-After in whole seconds")
                XCTAssertTrue(message.contains("queue is full"), message)
            }
            XCTAssertEqual(Set(accepted).count, accepted.count, "ids are unique")
            for id in accepted {
                let job = try await API.waitFinished(client, id, seconds: 60)
                XCTAssertEqual(job["status"] as? String, "succeeded")
                XCTAssertEqual((job["results"] as? [Any])?.count, 1)
                let record = try await engine.job(id)
                XCTAssertEqual(record.attempts, 1, "run exactly once")
            }
            let counts = try await engine.counts()
            XCTAssertEqual(counts, [.succeeded: accepted.count + 5], "nothing lost, nothing extra")
            let depth = await engine.queueDepth
            XCTAssertEqual(depth, 0)
        }
    }
}
