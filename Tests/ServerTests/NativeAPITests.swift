import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import ParityTesting
import Server
import XCTest

@testable import Serving

/// Every route of the native `/v1` API over the in-process server and the fixture models.
final class NativeAPITests: XCTestCase {
    func testSubmitAnswers202WithLocationLinksQueuePositionAndTheRequest() async throws {
        let engine = API.engine()
        try await TestServer.withApplication(engine: engine) { client in
            let blocker = try await API.submitBlocker(client, engine)
            let first = try await API.submit(
                client, ["prompt": "a red circle", "width": 32, "height": 32, "steps": 3, "seed": 4, "n": 2])
            XCTAssertEqual(first.status, .accepted)
            let body = first.body.jsonObject
            let id = try XCTUnwrap(body["id"] as? String)
            XCTAssertEqual(first.headers[.location], "/v1/images/jobs/\(id)")
            XCTAssertEqual(first.headers[.contentType], "application/json")
            XCTAssertEqual(body["status"] as? String, "queued")
            XCTAssertEqual(body["queue_position"] as? Int, 1)
            let links = try XCTUnwrap(body["links"] as? [String: String])
            XCTAssertEqual(
                links,
                [
                    "self": "/v1/images/jobs/\(id)", "events": "/v1/images/jobs/\(id)/events",
                    "cancel": "/v1/images/jobs/\(id)/cancel",
                ])
            let echo = try XCTUnwrap(body["request"] as? [String: Any])
            XCTAssertEqual(echo["model"] as? String, "sd1", "the default model is filled in")
            XCTAssertEqual(echo["width"] as? Int, 32)
            XCTAssertEqual(echo["steps"] as? Int, 3)
            XCTAssertEqual(echo["seed"] as? Int, 4)
            XCTAssertEqual(echo["n"] as? Int, 2)
            XCTAssertEqual(echo["sampler"] as? String, "pndm", "the model's recommendation (sd1's scheduler config is PNDM)")
            XCTAssertEqual((body["results"] as? [Any])?.count, 0)
            let second = try await API.submit(client, ["prompt": "a blue square", "width": 32, "height": 32, "steps": 3])
            XCTAssertEqual(second.body.jsonObject["queue_position"] as? Int, 2)
            XCTAssertNotNil((second.body.jsonObject["request"] as? [String: Any])?["seed"] as? Int, "a drawn seed is reported")
            let status = try await API.status(client, id)
            XCTAssertEqual(status["queue_position"] as? Int, 1)
            try await API.cancel(client, blocker)
            let finished = try await API.waitFinished(client, id)
            XCTAssertEqual(finished["status"] as? String, "succeeded")
            XCTAssertNil(finished["queue_position"] as? Int)
        }
    }

    func testStatusImagesAndTheirErrors() async throws {
        let engine = API.engine()
        try await TestServer.withApplication(engine: engine) { client in
            // Before it succeeds: 409.
            let blocker = try await API.submitBlocker(client, engine)
            let id = try await API.submitID(
                client, ["prompt": "two circles", "width": 32, "height": 48, "steps": 3, "seed": 11, "n": 2])
            let early = try await client.execute(uri: "/v1/images/jobs/\(id)/images/0", method: .get)
            XCTAssertEqual(early.status, .conflict)
            XCTAssertTrue(API.message(early).contains("queued"), API.message(early))
            try await API.cancel(client, blocker)

            let job = try await API.waitFinished(client, id)
            XCTAssertEqual(job["status"] as? String, "succeeded")
            XCTAssertEqual(job["error"] as? String, nil)
            let results = try XCTUnwrap(job["results"] as? [[String: Any]])
            XCTAssertEqual(results.map { $0["index"] as? Int }, [0, 1])
            XCTAssertEqual(
                results.map { $0["url"] as? String }, ["/v1/images/jobs/\(id)/images/0", "/v1/images/jobs/\(id)/images/1"])
            let timings = try XCTUnwrap(job["timings"] as? [String: Double])
            for stage in ["queue", "total", "encode_prompt", "denoise", "decode"] { XCTAssertNotNil(timings[stage], stage) }
            XCTAssertGreaterThan(timings["queue"] ?? 0, 0, "it waited behind the blocker")
            let progress = job["progress"] as? [String: Any]
            XCTAssertEqual(progress?["stage"] as? String, "done")
            XCTAssertEqual(progress?["step"] as? Int, 3)
            XCTAssertEqual(progress?["total"] as? Int, 3)
            let infotext = try XCTUnwrap(job["infotext"] as? String)
            XCTAssertTrue(
                infotext.contains("Steps: 3") && infotext.contains("Seed: 11") && infotext.contains("Size: 32x48"), infotext)
            for created in ["created_at", "started_at", "finished_at"] { XCTAssertNotNil(job[created] as? String, created) }

            var images: [Data] = []
            for index in 0..<2 {
                let image = try await client.execute(uri: "/v1/images/jobs/\(id)/images/\(index)", method: .get)
                XCTAssertEqual(image.status, .ok)
                XCTAssertEqual(image.headers[.contentType], "image/png")
                let data = Data(buffer: image.body)
                XCTAssertEqual(PNG.size(data)?.width, 32)
                XCTAssertEqual(PNG.size(data)?.height, 48)
                XCTAssertTrue(PNG.text(data, key: "parameters")?.contains("Seed: 11") == true, "A1111 parameters text chunk")
                images.append(data)
            }
            XCTAssertNotEqual(images[0], images[1], "two different images")
            for (uri, status) in [
                ("/v1/images/jobs/\(id)/images/2", HTTPResponse.Status.notFound), ("/v1/images/jobs/\(id)/images/-1", .notFound),
                ("/v1/images/jobs/\(id)/images/first", .badRequest), ("/v1/images/jobs/nope/images/0", .notFound),
                ("/v1/images/jobs/nope", .notFound), ("/v1/images/jobs/nope/events", .notFound),
            ] {
                let response = try await client.execute(uri: uri, method: .get)
                XCTAssertEqual(response.status, status, uri)
                XCTAssertFalse(API.message(response).isEmpty, "\(uri): a JSON error message")
            }
        }
    }

    func testEventsStreamFromQueuedToCompletedAndLateSubscribers() async throws {
        let engine = API.engine()
        try await TestServer.withApplication(engine: engine) { client in
            let blocker = try await API.submitBlocker(client, engine)
            let id = try await API.submitID(
                client, ["prompt": "events", "width": 32, "height": 32, "steps": 5, "seed": 1, "sampler": "euler_a"])
            // Subscribed while queued; the stream ends with the terminal event.
            let events = Task { try await API.events(client, id) }
            try await API.waitForSubscriber(engine)
            try await API.cancel(client, blocker)
            let received = try await events.value
            let types = received.map(\.event)
            XCTAssertEqual(types.first, "queued")
            XCTAssertEqual(received.first?.data["queue_position"] as? Int, 1)
            XCTAssertEqual(types.dropFirst().first, "started")
            XCTAssertEqual(types.last, "completed")
            XCTAssertEqual(types.filter { $0 == "completed" }.count, 1)
            let stages = received.filter { $0.event == "stage" }.compactMap { $0.data["stage"] as? String }
            XCTAssertEqual(stages, ["load_model", "encode_prompt", "denoise", "decode"])
            let steps = received.filter { $0.event == "step" }
            XCTAssertEqual(steps.map { $0.data["step"] as? Int }, [1, 2, 3, 4, 5])
            XCTAssertTrue(steps.allSatisfy { $0.data["total"] as? Int == 5 && ($0.data["eta_seconds"] as? Double ?? -1) >= 0 })
            XCTAssertEqual(steps.last?.data["eta_seconds"] as? Double, 0)
            XCTAssertLessThan(try XCTUnwrap(types.firstIndex(of: "stage")), try XCTUnwrap(types.firstIndex(of: "step")))
            XCTAssertLessThan(
                try XCTUnwrap(types.lastIndex(of: "step")), try XCTUnwrap(types.lastIndex(of: "stage")), "decode after the steps")
            XCTAssertTrue(received.allSatisfy { $0.data["job_id"] as? String == id })
            XCTAssertEqual(received.last?.data["status"] as? String, "succeeded")

            // After completion: only the terminal event, at once.
            let late = try await API.events(client, id)
            XCTAssertEqual(late.map(\.event), ["completed"])
            XCTAssertEqual(late.first?.data["status"] as? String, "succeeded")
        }
    }

    func testCancellingQueuedJobs() async throws {
        let engine = API.engine()
        try await TestServer.withApplication(engine: engine) { client in
            let blocker = try await API.submitBlocker(client, engine)
            var ids: [String] = []
            for seed in 0..<3 {
                ids.append(
                    try await API.submitID(
                        client, ["prompt": "queued \(seed)", "width": 32, "height": 32, "steps": 3, "seed": seed]))
            }
            let positions = try await ids.asyncMap { try await API.status(client, $0)["queue_position"] as? Int }
            XCTAssertEqual(positions, [1, 2, 3])

            let cancelled = try await client.execute(uri: "/v1/images/jobs/\(ids[0])/cancel", method: .post)
            XCTAssertEqual(cancelled.status, .ok)
            XCTAssertEqual(cancelled.body.jsonObject["status"] as? String, "cancelled")
            let deleted = try await client.execute(uri: "/v1/images/jobs/\(ids[2])", method: .delete)
            XCTAssertEqual(deleted.status, .ok)
            XCTAssertEqual(deleted.body.jsonObject["status"] as? String, "cancelled")
            let remaining = try await API.status(client, ids[1])
            XCTAssertEqual(remaining["queue_position"] as? Int, 1, "the others move up")
            let again = try await client.execute(uri: "/v1/images/jobs/\(ids[0])/cancel", method: .post)
            XCTAssertEqual(again.status, .conflict)
            XCTAssertTrue(API.message(again).contains("already cancelled"), API.message(again))
            let unknown = try await client.execute(uri: "/v1/images/jobs/nope/cancel", method: .post)
            XCTAssertEqual(unknown.status, .notFound)
            // The cancelled job's stream ends at once with its terminal event.
            let events = try await API.events(client, ids[0])
            XCTAssertEqual(events.map(\.event), ["cancelled"])

            try await API.cancel(client, blocker)
            let finished = try await API.waitFinished(client, ids[1])
            XCTAssertEqual(finished["status"] as? String, "succeeded")
            for id in [ids[0], ids[2]] {
                let job = try await API.status(client, id)
                XCTAssertEqual(job["status"] as? String, "cancelled")
                XCTAssertNil(job["started_at"] as? String, "never started")
                let image = try await client.execute(uri: "/v1/images/jobs/\(id)/images/0", method: .get)
                XCTAssertEqual(image.status, .conflict)
            }
            let deleteFinished = try await client.execute(uri: "/v1/images/jobs/\(ids[1])", method: .delete)
            XCTAssertEqual(deleteFinished.status, .conflict)
        }
    }

    func testCancellingARunningJob() async throws {
        let engine = API.engine()
        try await TestServer.withApplication(engine: engine) { client in
            let id = try await API.submitID(client, ["prompt": "long", "width": 32, "height": 32, "steps": 150, "seed": 3])
            let stream = try await engine.events(id)
            for await event in stream where event.type == "step" { break }
            let response = try await client.execute(uri: "/v1/images/jobs/\(id)/cancel", method: .post)
            XCTAssertEqual(response.status, .ok)
            XCTAssertEqual(response.body.jsonObject["status"] as? String, "running", "it stops at its next step boundary")
            let job = try await API.waitFinished(client, id)
            XCTAssertEqual(job["status"] as? String, "cancelled")
            XCTAssertEqual((job["results"] as? [Any])?.count, 0)
            let step = (job["progress"] as? [String: Any])?["step"] as? Int ?? 0
            XCTAssertGreaterThanOrEqual(step, 1)
            XCTAssertLessThan(step, 150)
            let image = try await client.execute(uri: "/v1/images/jobs/\(id)/images/0", method: .get)
            XCTAssertEqual(image.status, .conflict)
            let events = try await API.events(client, id)
            XCTAssertEqual(events.map(\.event), ["cancelled"])
            // The engine goes on with the next job.
            let next = try await API.waitFinished(
                client, try await API.submitID(client, ["prompt": "next", "width": 32, "height": 32, "steps": 2]))
            XCTAssertEqual(next["status"] as? String, "succeeded")
        }
    }

    func testRegistries() async throws {
        try await TestServer.withApplication { client in
            let models = try await API.get(client, "/v1/models")
            let modelItems = try XCTUnwrap(models["data"] as? [[String: Any]])
            XCTAssertEqual(modelItems.map { $0["id"] as? String }, ["sd1", "sd2", "sdxl"])
            XCTAssertEqual(modelItems.map { $0["default"] as? Bool }, [true, false, false])
            XCTAssertTrue(modelItems.allSatisfy { $0["format"] as? String == "diffusers" && ($0["size_bytes"] as? Int ?? 0) > 0 })
            XCTAssertTrue(modelItems.allSatisfy { $0["path"] == nil }, "paths are not shown to clients")
            let lorasResponse = try await API.get(client, "/v1/loras")
            let loras = try XCTUnwrap(lorasResponse["data"] as? [[String: Any]])
            XCTAssertEqual(loras.map { $0["id"] as? String }, ["sd1-lora", "sd1-lora-b"])
            XCTAssertTrue(loras.allSatisfy { $0["format"] as? String == "safetensors" && $0["default"] == nil })
            let controlnetsResponse = try await API.get(client, "/v1/controlnets")
            let controlnets = try XCTUnwrap(controlnetsResponse["data"] as? [[String: Any]])
            XCTAssertEqual(controlnets.map { $0["id"] as? String }, ["sd1-controlnet", "sd1-controlnet-b"])

            let samplersResponse = try await client.execute(uri: "/v1/samplers", method: .get)
            let samplers = try XCTUnwrap(
                try JSONSerialization.jsonObject(with: Data(buffer: samplersResponse.body)) as? [[String: String]])
            let names = samplers.compactMap { $0["name"] }
            for name in ["euler", "euler_a", "ddim", "dpmpp_2m", "lcm"] { XCTAssertTrue(names.contains(name), name) }
            XCTAssertEqual(samplers.first { $0["name"] == "euler_a" }?["a1111_name"], "Euler a")
            let preprocessorsResponse = try await API.get(client, "/v1/preprocessors")
            let preprocessors = try XCTUnwrap(preprocessorsResponse["preprocessors"] as? [String])
            for name in ["none", "canny", "invert"] { XCTAssertTrue(preprocessors.contains(name), "\(name) in \(preprocessors)") }

            let capabilities = try await API.get(client, "/v1/capabilities")
            let limits = try XCTUnwrap(capabilities["limits"] as? [String: Int])
            XCTAssertEqual(limits["max_steps"], 150)
            XCTAssertEqual(limits["max_side"], 2048)
            XCTAssertEqual(limits["max_images"], 8)
            XCTAssertEqual(capabilities["queue_capacity"] as? Int, 32)
            XCTAssertEqual(capabilities["lora_deadline_fraction"] as? Double, 0.05)
            XCTAssertTrue((capabilities["samplers"] as? [String] ?? []).contains("euler_a"))
            XCTAssertEqual(capabilities["lora_modes"] as? [String], ["merged", "runtime"])
            XCTAssertEqual(capabilities["prompt_syntaxes"] as? [String], ["plain", "a1111"])
            XCTAssertTrue((capabilities["resize_modes"] as? [String] ?? []).contains("crop_and_resize"))
        }
    }

    func testRescanFindsNewFiles() async throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("swiftdiffusion-api-rescan-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: root) }
        let manager = FileManager.default
        try manager.createDirectory(at: root.appendingPathComponent("checkpoints"), withIntermediateDirectories: true)
        try manager.createDirectory(at: root.appendingPathComponent("loras"), withIntermediateDirectories: true)
        try manager.createSymbolicLink(
            at: root.appendingPathComponent("checkpoints/sd1"),
            withDestinationURL: TestServer.modelsFolder.appendingPathComponent("checkpoints/sd1"))
        let repository = ModelRepository(roots: [root], embeddedModels: nil)
        let engine = GenerationEngine(
            configuration: EngineConfiguration(), repository: repository, store: InMemoryJobStore(), logger: API.quietLogger)
        try await TestServer.withApplication(engine: engine) { client in
            let before = try await API.get(client, "/v1/loras")["data"] as? [Any]
            XCTAssertEqual(before?.count, 0)
            let unknown = try await API.submit(
                client, ["prompt": "x", "width": 32, "height": 32, "steps": 2, "loras": [["name": "fresh"]]])
            XCTAssertEqual(unknown.status, .notFound)
            try manager.createSymbolicLink(
                at: root.appendingPathComponent("loras/fresh.safetensors"),
                withDestinationURL: TestServer.modelsFolder.appendingPathComponent("loras/sd1-lora.safetensors"))
            try manager.createDirectory(at: root.appendingPathComponent("controlnets"), withIntermediateDirectories: true)
            try manager.createSymbolicLink(
                at: root.appendingPathComponent("controlnets/edges"),
                withDestinationURL: TestServer.modelsFolder.appendingPathComponent("controlnets/sd1-controlnet"))
            let rescan = try await client.execute(uri: "/v1/models/rescan", method: .post)
            XCTAssertEqual(rescan.status, .ok)
            XCTAssertEqual(rescan.body.jsonObject as? [String: Int], ["checkpoints": 1, "loras": 1, "controlnets": 1])
            let after = try await API.get(client, "/v1/loras")["data"] as? [[String: Any]]
            XCTAssertEqual(after?.map { $0["id"] as? String }, ["fresh"])
            let id = try await API.submitID(
                client, ["prompt": "x", "width": 32, "height": 32, "steps": 2, "loras": [["name": "fresh", "weight": 0.5]]])
            let job = try await API.waitFinished(client, id)
            XCTAssertEqual(job["status"] as? String, "succeeded", job["error"] as? String ?? "")
        }
    }

    func testLoRAAndControlNetJobsChangeTheImage() async throws {
        let control = try Data(contentsOf: Golden.fixturesDirectory.appendingPathComponent("pipelines/control_ring.png"))
            .base64EncodedString()
        try await TestServer.withApplication { client in
            let base: [String: Any] = ["prompt": "a ring", "width": 32, "height": 32, "steps": 4, "seed": 21, "cfg": 5]
            var bodies: [String: [String: Any]] = ["plain": base]
            bodies["lora"] = base.merging(["loras": [["name": "sd1-lora", "weight": 1.0]]]) { $1 }
            bodies["lora-b"] = base.merging(["loras": [["name": "sd1-lora-b", "weight": 1.0, "weight_text": 0.5]]]) { $1 }
            bodies["controlnet"] = base.merging([
                "controls": [["model": "sd1-controlnet", "image": control, "preprocessor": "none", "weight": 1.0]]
            ]) { $1 }
            bodies["controlnet-data-url"] = base.merging([
                "controls": [
                    [
                        "model": "sd1-controlnet-b", "image": "data:image/png;base64," + control, "preprocessor": "invert",
                        "resize_mode": "just_resize",
                    ]
                ]
            ]) { $1 }
            var images: [String: Data] = [:]
            for (name, body) in bodies {
                let id = try await API.submitID(client, body)
                let job = try await API.waitFinished(client, id)
                XCTAssertEqual(job["status"] as? String, "succeeded", "\(name): \(job["error"] as? String ?? "")")
                let image = try await client.execute(uri: "/v1/images/jobs/\(id)/images/0", method: .get)
                images[name] = Data(buffer: image.body)
                let echo = job["request"] as? [String: Any]
                if name.hasPrefix("lora") {
                    XCTAssertEqual((echo?["loras"] as? [[String: Any]])?.count, 1, name)
                    XCTAssertTrue((job["infotext"] as? String ?? "").contains("Lora weights"), name)
                }
                if name.hasPrefix("controlnet") { XCTAssertEqual((echo?["controls"] as? [String])?.count, 1, name) }
            }
            // Without the PNG text chunk the pixels must differ: each adapter changes the image.
            let pixels = images.mapValues(PNG.withoutTextChunks)
            let names = pixels.keys.sorted()
            for (index, first) in names.enumerated() {
                for second in names[(index + 1)...] { XCTAssertNotEqual(pixels[first], pixels[second], "\(first) vs \(second)") }
            }
        }
    }

    /// Interleaved submissions with two LoRAs run grouped by LoRA; with a zero grouping wait the oldest job
    /// always goes first, so no job is passed over.
    func testQueueGroupsJobsBySharedLoRAWithoutStarvingOldJobs() async throws {
        for (maximumWait, expected) in [(30.0, "AAABBB"), (0.0, "ABABAB")] {
            var configuration = API.configuration
            configuration.maximumGroupingWait = maximumWait
            let engine = API.engine(configuration)
            try await TestServer.withApplication(engine: engine) { client in
                let blocker = try await API.submitBlocker(client, engine)
                var ids: [(String, Character)] = []
                for (index, group) in "ABABAB".enumerated() {
                    let lora = group == "A" ? "sd1-lora" : "sd1-lora-b"
                    let body: [String: Any] = [
                        "prompt": "job \(index)", "width": 32, "height": 32, "steps": 2, "seed": index, "loras": [["name": lora]],
                    ]
                    ids.append((try await API.submitID(client, body), group))
                }
                let blockerStatus = try await API.status(client, blocker)
                XCTAssertEqual(blockerStatus["status"] as? String, "running", "all jobs must queue behind the blocker")
                if maximumWait > 0 {
                    // Positions follow the grouped order.
                    let positions = try await ids.asyncMap { try await API.status(client, $0.0)["queue_position"] as? Int ?? 0 }
                    XCTAssertEqual(positions, [1, 4, 2, 5, 3, 6])
                }
                try await API.cancel(client, blocker)
                var started: [(Date, Character)] = []
                for (id, group) in ids {
                    _ = try await API.waitFinished(client, id)
                    let job = try await engine.job(id)
                    XCTAssertEqual(job.status, .succeeded)
                    started.append((try XCTUnwrap(job.startedAt), group))
                }
                let order = String(started.sorted { $0.0 < $1.0 }.map(\.1))
                XCTAssertEqual(order, expected, "maximum grouping wait \(maximumWait)")
            }
        }
    }

    /// Bounded asynchronous LoRA loading: a LoRA not yet in memory loads while denoising starts and is patched
    /// in by the deadline step; the record says at which step. A cached LoRA is applied before the first step.
    func testBoundedAsyncLoRALoadingIsVisibleInTheJobRecord() async throws {
        try await TestServer.withApplication(engine: API.engine()) { client in
            let body: [String: Any] = [
                "prompt": "lora", "width": 32, "height": 32, "steps": 20, "seed": 5,
                "loras": [["name": "sd1-lora", "weight": 0.7]],
            ]
            let first = try await API.waitFinished(client, try await API.submitID(client, body))
            XCTAssertEqual(first["status"] as? String, "succeeded")
            let patchStep = try XCTUnwrap(first["lora_patch_step"] as? Int, "the first use loads in the background")
            XCTAssertTrue((0...1).contains(patchStep), "patched by the default deadline, 0.05 x 20 steps: \(patchStep)")
            let second = try await API.waitFinished(client, try await API.submitID(client, body))
            XCTAssertEqual(second["status"] as? String, "succeeded")
            XCTAssertNil(second["lora_patch_step"] as? Int, "cached: applied before denoising")
            // Deadline 0: loaded before denoising starts.
            let upfront = body.merging(["lora_deadline_step": 0, "loras": [["name": "sd1-lora-b"]]]) { $1 }
            let third = try await API.waitFinished(client, try await API.submitID(client, upfront))
            XCTAssertEqual(third["status"] as? String, "succeeded")
            XCTAssertNil(third["lora_patch_step"] as? Int)
        }
    }
}

// MARK: - Helpers shared by the server tests

/// Small helpers over the test client for the native API.
enum API {
    static var quietLogger: Logger {
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        return logger
    }

    /// Blocker jobs may run longer than the default step limit.
    static var configuration: EngineConfiguration {
        var configuration = EngineConfiguration()
        configuration.limits.maximumSteps = 1000
        return configuration
    }

    static func engine(_ configuration: EngineConfiguration = API.configuration) -> GenerationEngine {
        TestServer.engine(configuration: configuration)
    }

    static func submit(
        _ client: any TestClientProtocol, _ body: [String: Any], headers: HTTPFields = [:]
    ) async throws -> TestResponse {
        var fields = headers
        fields[.contentType] = "application/json"
        return try await client.execute(uri: "/v1/images/jobs", method: .post, headers: fields, body: TestServer.json(body))
    }

    static func submitID(
        _ client: any TestClientProtocol, _ body: [String: Any], file: StaticString = #filePath, line: UInt = #line
    ) async throws -> String {
        let response = try await submit(client, body)
        XCTAssertEqual(response.status, .accepted, message(response), file: file, line: line)
        return try XCTUnwrap(response.body.jsonObject["id"] as? String, file: file, line: line)
    }

    /// A long job that keeps the runner busy until it is cancelled; returns once it runs.
    static func submitBlocker(_ client: any TestClientProtocol, _ engine: GenerationEngine) async throws -> String {
        let id = try await submitID(client, ["prompt": "blocker", "width": 32, "height": 32, "steps": 1000, "seed": 0])
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            if try await engine.job(id).status == .running { return id }
            try await Task.sleep(for: .milliseconds(2))
        }
        throw APITestError("the blocker did not start")
    }

    static func cancel(_ client: any TestClientProtocol, _ id: String) async throws {
        let response = try await client.execute(uri: "/v1/images/jobs/\(id)/cancel", method: .post)
        guard response.status == .ok else { throw APITestError("cancel \(id): \(response.status) \(message(response))") }
    }

    static func get(_ client: any TestClientProtocol, _ uri: String) async throws -> [String: Any] {
        let response = try await client.execute(uri: uri, method: .get)
        guard response.status == .ok else { throw APITestError("GET \(uri): \(response.status) \(message(response))") }
        return response.body.jsonObject
    }

    static func status(_ client: any TestClientProtocol, _ id: String) async throws -> [String: Any] {
        try await get(client, "/v1/images/jobs/\(id)")
    }

    /// Polls the job until it is succeeded, failed or cancelled.
    static func waitFinished(_ client: any TestClientProtocol, _ id: String, seconds: Double = 60) async throws -> [String: Any] {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            let job = try await status(client, id)
            if ["succeeded", "failed", "cancelled"].contains(job["status"] as? String ?? "") { return job }
            try await Task.sleep(for: .milliseconds(5))
        }
        throw APITestError("job \(id) did not finish within \(seconds) s")
    }

    /// Waits until some client is subscribed to some job's events.
    static func waitForSubscriber(_ engine: GenerationEngine) async throws {
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            if await engine.events.subscriberCount > 0 { return }
            try await Task.sleep(for: .milliseconds(2))
        }
        throw APITestError("no subscriber")
    }

    /// `GET .../events`, read to its end and checked for Server-Sent Events framing.
    static func events(_ client: any TestClientProtocol, _ id: String, headers: HTTPFields = [:]) async throws -> [SSEEvent] {
        let response = try await client.execute(uri: "/v1/images/jobs/\(id)/events", method: .get, headers: headers)
        guard response.status == .ok else { throw APITestError("events \(id): \(response.status) \(message(response))") }
        XCTAssertEqual(response.headers[.contentType], "text/event-stream")
        XCTAssertEqual(response.headers[.cacheControl], "no-cache")
        return try SSEEvent.parse(String(buffer: response.body))
    }

    /// The error message of a JSON error response ("" if the body is not one).
    static func message(_ response: TestResponse) -> String {
        let body = response.body.jsonObject
        return (body["error"] as? [String: Any])?["message"] as? String ?? ""
    }
}

struct APITestError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// One Server-Sent Event: `event: <type>` then `data: <JSON>`, then a blank line.
struct SSEEvent: @unchecked Sendable {
    let event: String
    let data: [String: Any]

    /// Parses a whole stream and checks its framing: every block is exactly an `event:` line and a `data:` line
    /// whose JSON `type` is the event name, blocks end with a blank line.
    static func parse(_ text: String) throws -> [SSEEvent] {
        guard text.hasSuffix("\n\n") else { throw APITestError("the stream does not end with a blank line: \(text.suffix(80))") }
        var events: [SSEEvent] = []
        for block in text.dropLast(2).components(separatedBy: "\n\n") {
            let lines = block.components(separatedBy: "\n")
            guard lines.count == 2, lines[0].hasPrefix("event: "), lines[1].hasPrefix("data: ") else {
                throw APITestError("malformed event block: \(block)")
            }
            let name = String(lines[0].dropFirst("event: ".count))
            let json = Data(lines[1].dropFirst("data: ".count).utf8)
            guard let data = try JSONSerialization.jsonObject(with: json) as? [String: Any] else {
                throw APITestError("data is not an object: \(block)")
            }
            guard data["type"] as? String == name else {
                throw APITestError("event name \(name) but type \(data["type"] ?? "-")")
            }
            events.append(SSEEvent(event: name, data: data))
        }
        return events
    }
}

/// Reading the few things the tests check in a PNG.
enum PNG {
    static let signature: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]

    static func chunks(_ data: Data) -> [(type: String, payload: Data)] {
        let bytes = [UInt8](data)
        guard bytes.count > 8, Array(bytes[0..<8]) == signature else { return [] }
        var chunks: [(String, Data)] = []
        var offset = 8
        while offset + 12 <= bytes.count {
            let length =
                Int(bytes[offset]) << 24 | Int(bytes[offset + 1]) << 16 | Int(bytes[offset + 2]) << 8 | Int(bytes[offset + 3])
            guard offset + 12 + length <= bytes.count else { break }
            let type = String(decoding: bytes[(offset + 4)..<(offset + 8)], as: UTF8.self)
            chunks.append((type, Data(bytes[(offset + 8)..<(offset + 8 + length)])))
            offset += 12 + length
        }
        return chunks
    }

    static func size(_ data: Data) -> (width: Int, height: Int)? {
        guard let header = chunks(data).first, header.type == "IHDR", header.payload.count >= 8 else { return nil }
        let bytes = [UInt8](header.payload)
        let width = Int(bytes[0]) << 24 | Int(bytes[1]) << 16 | Int(bytes[2]) << 8 | Int(bytes[3])
        let height = Int(bytes[4]) << 24 | Int(bytes[5]) << 16 | Int(bytes[6]) << 8 | Int(bytes[7])
        return (width, height)
    }

    /// The text of a `tEXt` chunk.
    static func text(_ data: Data, key: String) -> String? {
        for chunk in chunks(data) where chunk.type == "tEXt" {
            let bytes = [UInt8](chunk.payload)
            guard let zero = bytes.firstIndex(of: 0), String(decoding: bytes[..<zero], as: UTF8.self) == key else { continue }
            return String(decoding: bytes[(zero + 1)...], as: UTF8.self)
        }
        return nil
    }

    /// The image chunks only (IHDR, IDAT...), to compare pixels regardless of metadata.
    static func withoutTextChunks(_ data: Data) -> Data {
        chunks(data).filter { !["tEXt", "iTXt", "zTXt"].contains($0.type) }.reduce(into: Data()) { $0.append($1.payload) }
    }
}

extension Array {
    func asyncMap<T>(_ transform: (Element) async throws -> T) async rethrows -> [T] {
        var result: [T] = []
        for element in self { result.append(try await transform(element)) }
        return result
    }
}
