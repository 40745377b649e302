import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Imaging
import Logging
import ParityTesting
import Server
import Serving
import XCTest

/// Issue 10's server findings, one regression test each: no single request kills the server or is answered 500
/// or 202-then-failed; requests are checked against the model they run on; bodies, options and metadata are
/// bounded; CPU-heavy request work stays off the threads that serve HTTP; 405 with Allow, JSON errors everywhere,
/// Retry-After on every 429; a synchronous job whose client goes away is cancelled.
final class HardeningTests: XCTestCase {
    /// The repository's embedded model family (`models/`: shapes-sd, 128x128 in multiples of 8, a 3-layer text
    /// encoder) beside the fixtures (sd1/sd2/sdxl: 16x16 in multiples of 2, 2-layer text encoders); default sd1.
    static func engine(
        _ configuration: EngineConfiguration = API.configuration, store: InMemoryJobStore = InMemoryJobStore()
    ) -> GenerationEngine {
        ServerApplication.bootstrapMetrics()
        let embedded = Golden.fixturesDirectory.deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("models")
        let repository = ModelRepository(roots: [TestServer.modelsFolder], embeddedModels: embedded, defaultModel: "sd1")
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        return GenerationEngine(configuration: configuration, repository: repository, store: store, logger: logger)
    }

    static func detail(_ response: TestResponse) -> String { response.body.jsonObject["detail"] as? String ?? "" }

    static func assertRefused(
        _ response: TestResponse, _ status: HTTPResponse.Status, mentions: [String], file: StaticString = #filePath, line: UInt = #line
    ) {
        XCTAssertEqual(response.status, status, String(buffer: response.body).prefix(400).description, file: file, line: line)
        XCTAssertEqual(response.headers[.contentType], "application/json", file: file, line: line)
        let message = API.message(response)
        for fragment in mentions {
            XCTAssertTrue(message.lowercased().contains(fragment.lowercased()), "'\(message)' lacks '\(fragment)'", file: file, line: line)
        }
    }

    // MARK: 1. counts, sizes and steps bounded before arithmetic

    func testA1111HugeBatchAndIterationsAreRefusedNotAnOverflow() async throws {
        let engine = HardeningTests.engine()
        try await TestServer.withApplication(engine: engine) { client in
            let api = A1111Client(client)
            for route in ["txt2img", "img2img"] {
                let huge = try await api.post(
                    "/sdapi/v1/\(route)", A1111APITests.small(["batch_size": 4_611_686_018_427_387_904, "n_iter": 4_611_686_018_427_387_904]))
                Self.assertRefused(huge, .badRequest, mentions: ["batch_size", "at most 8"])
                // Each within the limit, the product beyond it.
                let product = try await api.post(
                    "/sdapi/v1/\(route)",
                    A1111APITests.small([
                        "batch_size": 8, "n_iter": 8, "init_images": [A1111APITests.initImage.base64EncodedString()],
                    ]))
                Self.assertRefused(product, .unprocessableContent, mentions: ["batch_size x n_iter", "8 x 8"])
            }
            let big = 4_611_686_018_427_387_904
            let steps = try await api.post("/sdapi/v1/txt2img", A1111APITests.small(["steps": big]))
            Self.assertRefused(steps, .badRequest, mentions: ["steps must be at most 1000"])
            let width = try await api.post("/sdapi/v1/txt2img", A1111APITests.small(["width": big, "height": big]))
            Self.assertRefused(width, .badRequest, mentions: ["width must be at most 2048"])
            let seed = try await api.post("/sdapi/v1/txt2img", A1111APITests.small(["seed": Int(Int64.max) - 1, "batch_size": 3]))
            Self.assertRefused(seed, .badRequest, mentions: ["seed must be at most"])
            // Beyond what an integer holds: refused as out of range, never converted.
            let beyond = try await api.post("/sdapi/v1/txt2img", A1111APITests.small(["n_iter": 1e19]))
            Self.assertRefused(beyond, .unprocessableContent, mentions: ["n_iter", "out of range"])
            // A thin init image under crop-and-resize would need a huge intermediate image: refused before any
            // pixel is scaled.
            let thin = try ImageCodec.encodePNG(RGBImage(width: 4000, height: 1, pixels: [UInt8](repeating: 128, count: 12_000)))
            for resizeMode in [1, 2] {
                let extreme = try await api.post(
                    "/sdapi/v1/img2img",
                    A1111APITests.small([
                        "init_images": [thin.base64EncodedString()], "resize_mode": resizeMode, "width": 256, "height": 256,
                    ]))
                Self.assertRefused(extreme, .badRequest, mentions: ["4000x1", "aspect ratio"])
            }
            let index = try await api.post("/sdapi/v1/txt2img", A1111APITests.small(["sampler_index": 1e300]))
            XCTAssertEqual(index.status, .unprocessableContent, String(buffer: index.body))
            let unitMode: [String: Any] = [
                "args": [["model": "sd1-controlnet", "image": A1111APITests.controlImage.base64EncodedString(), "resize_mode": 1e300]]
            ]
            let mode = try await api.post("/sdapi/v1/txt2img", A1111APITests.small(["alwayson_scripts": ["controlnet": unitMode]]))
            Self.assertRefused(mode, .badRequest, mentions: ["resize_mode"])
            // None of it became a job, and the server still generates.
            let counts = try await engine.counts()
            XCTAssertEqual(counts, [:])
            let ok = try await api.post("/sdapi/v1/txt2img", A1111APITests.small(["batch_size": 2, "n_iter": 4, "steps": 1]))
            XCTAssertEqual(ok.status, .ok, String(buffer: ok.body))
            let info = try A1111Client.info(ok)
            XCTAssertEqual((info["all_seeds"] as? [Int])?.count, 8)
        }
    }

    func testNativeAndOpenAICountsAreBounded() async throws {
        try await TestServer.withApplication(engine: HardeningTests.engine()) { client in
            for (body, fragment) in [
                (["prompt": "x", "n": Int.max] as [String: Any], "number of images"),
                (["prompt": "x", "steps": Int.max], "steps must be between 1 and 1000"),
                (["prompt": "x", "width": Int.max, "height": Int.max], "width must be between"),
                (["prompt": "x", "loras": Array(repeating: ["name": "sd1-lora"], count: 100)], "at most 8 loras"),
            ] {
                Self.assertRefused(try await API.submit(client, body), .badRequest, mentions: [fragment])
            }
            func openAI(_ body: [String: Any]) async throws -> TestResponse {
                try await client.execute(
                    uri: "/v1/images/generations", method: .post, headers: [.contentType: "application/json"], body: TestServer.json(body))
            }
            Self.assertRefused(try await openAI(["prompt": "x", "n": Int.max]), .badRequest, mentions: ["number of images (n)", "between 1 and 8"])
            Self.assertRefused(
                try await openAI(["prompt": "x", "size": "99999999999999999999x99999999999999999999"]), .badRequest,
                mentions: ["size must be"])
            Self.assertRefused(
                try await openAI(["prompt": "x", "size": "4611686018427387904x4"]), .badRequest, mentions: ["between 2 and 2048"])
        }
    }

    // MARK: 3. prompt length before parsing; heavy work off the HTTP threads

    func testA1111PromptLengthIsCheckedBeforeParsing() async throws {
        try await TestServer.withApplication(engine: HardeningTests.engine()) { client in
            let api = A1111Client(client)
            for (field, text) in [
                ("prompt", String(repeating: "(", count: 300_000)), ("negative_prompt", String(repeating: "[<", count: 150_000)),
            ] {
                let started = Date()
                let response = try await api.post("/sdapi/v1/txt2img", A1111APITests.small([field: text]))
                Self.assertRefused(response, .badRequest, mentions: [field, "8000 characters"])
                XCTAssertLessThan(Date().timeIntervalSince(started), 1, "refused on its length, not after parsing it")
            }
        }
    }

    /// Huge prompts that must be parsed (the prompt limit raised to let them through) keep the request-work threads
    /// busy for seconds; `/healthz` on a live connection answers within a second all the while. (Two 300k-character
    /// prompts under the default limit are refused on their length at once, see above; these are 8M characters,
    /// four of them, so that parsing them on the threads that serve HTTP would block `/healthz` for over a second
    /// now that the parser is linear.)
    func testHealthzAnswersWithinASecondWhileHugePromptsAreProcessed() async throws {
        var configuration = API.configuration
        configuration.limits.maximumPromptCharacters = 10_000_000
        let engine = HardeningTests.engine(configuration)
        // Nested emphasis and brackets with extra-network openings, ending in a weight no parser accepts: parsed
        // (to the end, or to the parser's nesting budget), then refused. Built before any probe, off the clock.
        let nested = String(repeating: "(", count: 3_999_990) + "x" + String(repeating: ")", count: 3_999_990) + " (a:1.2.3)"
        let brackets = String(repeating: "[<a:", count: 1_999_990) + " (a:1.2.3)"
        let requests = [nested, brackets, nested, brackets].map { prompt in
            LiveHTTP.request("POST", "/sdapi/v1/txt2img", json: A1111APITests.small(["prompt": prompt]))
        }
        try await LiveHTTP.withServer(engine: engine) { port, client in
            let finished = FinishedCount()
            let heavy = requests.map { request in
                Task {
                    defer { finished.increment() }
                    return try await LiveHTTP.exchange(port: port, request)
                }
            }
            var slowest = 0.0
            var probes = 0
            while probes < 20 || finished.value < heavy.count {
                let started = Date()
                let response = try await client.execute(uri: "/healthz", method: .get)
                let elapsed = Date().timeIntervalSince(started)
                XCTAssertEqual(response.status, .ok)
                slowest = max(slowest, elapsed)
                probes += 1
                if probes > 3000 { break }
                try await Task.sleep(for: .milliseconds(20))
            }
            for task in heavy {
                let (status, body) = try await task.value
                let text = String(decoding: body, as: UTF8.self)
                XCTAssertEqual(status, 400, String(text.prefix(300)))
                XCTAssertTrue(text.contains("\"prompt: "), "refused by the parser, not on its length: \(text.prefix(300))")
            }
            XCTAssertLessThan(slowest, 1, "the slowest /healthz of \(probes) took \(slowest) s")
        }
    }

    // MARK: 5. body limits, options, metadata

    func testBodyLimitsPerRoute() async throws {
        try await TestServer.withApplication(engine: HardeningTests.engine()) { client in
            for (method, uri, size, limit) in [
                (HTTPRequest.Method.post, "/sdapi/v1/options", (64 << 10) + 1, 64 << 10),
                (.post, "/v1/images/generations", (256 << 10) + 1, 256 << 10),
                (.post, "/sdapi/v1/interrupt", (16 << 10) + 1, 16 << 10),
                (.post, "/v1/models/rescan", (16 << 10) + 1, 16 << 10),
                (.get, "/healthz", (16 << 10) + 1, 16 << 10),
            ] {
                let response = try await client.execute(
                    uri: uri, method: method, headers: [.contentType: "application/json"],
                    body: ByteBuffer(repeating: UInt8(ascii: " "), count: size))
                Self.assertRefused(response, .contentTooLarge, mentions: ["\(limit) bytes"])
            }
            // Just under a small limit is read (and then judged on its content).
            let options = try await client.execute(
                uri: "/sdapi/v1/options", method: .post, headers: [.contentType: "application/json"],
                body: ByteBuffer(string: "{}" + String(repeating: " ", count: (64 << 10) - 2)))
            XCTAssertEqual(options.status, .ok, String(buffer: options.body))
        }
    }

    func testOptionsKeepOnlyKnownKeysWithBoundedValues() async throws {
        try await TestServer.withApplication(engine: HardeningTests.engine()) { client in
            let api = A1111Client(client)
            var body: [String: Any] = ["samples_format": "jpg", "jpeg_quality": 95, "live_previews_enable": true]
            for index in 0..<200 { body["junk_\(index)"] = String(repeating: "x", count: 200) }
            let set = try await api.post("/sdapi/v1/options", body)
            XCTAssertEqual(set.status, .ok, String(buffer: set.body))
            let header = try XCTUnwrap(set.headers[HTTPField.Name("X-Ignored-Options")!])
            XCTAssertTrue(header.hasPrefix("junk_0, junk_1, ") && header.hasSuffix("(200 in all)"), header)
            XCTAssertLessThan(header.count, 32 * 12, "a bounded summary")
            let readOnly = try await api.post("/sdapi/v1/options", ["sd_checkpoints_limit": 99])
            XCTAssertEqual(readOnly.status, .ok)
            XCTAssertEqual(readOnly.headers[HTTPField.Name("X-Ignored-Options")!], "sd_checkpoints_limit")
            let after = try await api.object("/sdapi/v1/options")
            XCTAssertEqual(after["samples_format"] as? String, "jpg")
            XCTAssertEqual(after["jpeg_quality"] as? Int, 95)
            XCTAssertEqual(after["live_previews_enable"] as? Bool, true)
            XCTAssertEqual(after["sd_checkpoints_limit"] as? Int, 1, "read-only")
            XCTAssertFalse(after.keys.contains { $0.hasPrefix("junk_") }, "unknown keys are not kept")
            // Values of the wrong kind or size are refused, and nothing of that request is applied.
            for (key, value, fragment) in [
                ("sd_vae", String(repeating: "v", count: 257) as Any, "at most 256 characters"), ("jpeg_quality", "high", "a number"),
                ("enable_pnginfo", 1, "a boolean"), ("samples_format", ["png"], "a string"),
            ] {
                let refused = try await api.post("/sdapi/v1/options", [key: value, "samples_format_unused": 1, "grid_save": true])
                Self.assertRefused(refused, .unprocessableContent, mentions: ["option \(key)", fragment])
            }
            let unchanged = try await api.object("/sdapi/v1/options")
            XCTAssertEqual(unchanged["grid_save"] as? Bool, false)
            XCTAssertEqual(unchanged["samples_format"] as? String, "jpg")
            // The CLIP skip is checked against the model the options name (sd1: a 2-layer text encoder).
            let clip = try await api.post("/sdapi/v1/options", ["CLIP_stop_at_last_layers": 3])
            Self.assertRefused(clip, .badRequest, mentions: ["between 1 and 2", "sd1"])
            let embedded = try await api.post(
                "/sdapi/v1/options", ["sd_model_checkpoint": "shapes-sd", "CLIP_stop_at_last_layers": 3])
            XCTAssertEqual(embedded.status, .ok, String(buffer: embedded.body))
            let twelve = try await api.post("/sdapi/v1/options", ["CLIP_stop_at_last_layers": 12])
            Self.assertRefused(twelve, .badRequest, mentions: ["between 1 and 3", "shapes-sd"])
        }
    }

    func testNativeMetadataIsBounded() async throws {
        try await TestServer.withApplication(engine: HardeningTests.engine()) { client in
            let valid: [String: Any] = ["prompt": "a red circle", "width": 32, "height": 32, "steps": 1]
            var many: [String: String] = [:]
            for index in 0..<17 { many["k\(index)"] = "v" }
            Self.assertRefused(
                try await API.submit(client, valid.merging(["metadata": many]) { $1 }), .badRequest, mentions: ["17 keys", "16"])
            let big = ["note": String(repeating: "m", count: 5000)]
            Self.assertRefused(
                try await API.submit(client, valid.merging(["metadata": big]) { $1 }), .badRequest, mentions: ["metadata", "4096"])
            let fine = ["user": "alice", "note": String(repeating: "m", count: 4000)]
            let id = try await API.submitID(client, valid.merging(["metadata": fine]) { $1 })
            let job = try await API.status(client, id)
            XCTAssertEqual((job["request"] as? [String: Any])?["metadata"] as? [String: String], fine)
        }
    }

    // MARK: 6. checked against the model at submission

    func testSizesAndClipSkipAreCheckedAgainstTheModel() async throws {
        let engine = HardeningTests.engine()
        try await TestServer.withApplication(engine: engine) { client in
            let api = A1111Client(client)
            // OpenAI size 100x100 on a model in multiples of 8: a 400 that says what is allowed, not a 500.
            let openAI = try await client.execute(
                uri: "/v1/images/generations", method: .post, headers: [.contentType: "application/json"],
                body: TestServer.json(["prompt": "a red circle", "size": "100x100", "model": "shapes-sd"]))
            Self.assertRefused(openAI, .badRequest, mentions: ["100x100", "multiple of 8", "128x128"])
            let odd = try await client.execute(
                uri: "/v1/images/generations", method: .post, headers: [.contentType: "application/json"],
                body: TestServer.json(["prompt": "a red circle", "size": "33x32"]))
            Self.assertRefused(odd, .badRequest, mentions: ["multiple of 2"])
            // A1111 CLIP skip beyond the model's text encoder: 400, not 500.
            let clip = try await api.post(
                "/sdapi/v1/txt2img", A1111APITests.small(["override_settings": ["CLIP_stop_at_last_layers": 12]]))
            Self.assertRefused(clip, .badRequest, mentions: ["CLIP_stop_at_last_layers", "between 1 and 2"])
            let embeddedClip = try await api.post(
                "/sdapi/v1/txt2img",
                A1111APITests.small([
                    "width": 64, "height": 64,
                    "override_settings": ["CLIP_stop_at_last_layers": 12, "sd_model_checkpoint": "shapes-sd"],
                ]))
            Self.assertRefused(embeddedClip, .badRequest, mentions: ["between 1 and 3", "3 layers"])
            // Native width 100 and clip_skip 12: refused at submission, never accepted and then failed.
            let width = try await API.submit(client, ["prompt": "a red circle", "model": "shapes-sd", "width": 100, "height": 128])
            Self.assertRefused(width, .badRequest, mentions: ["width", "multiple of 8"])
            let skip = try await API.submit(client, ["prompt": "a red circle", "model": "shapes-sd", "clip_skip": 12])
            Self.assertRefused(skip, .badRequest, mentions: ["clip_skip", "between 1 and 3"])
            let fixtureSkip = try await API.submit(client, ["prompt": "a red circle", "clip_skip": 3, "width": 32, "height": 32])
            Self.assertRefused(fixtureSkip, .badRequest, mentions: ["clip_skip", "between 1 and 2"])
            let counts = try await engine.counts()
            XCTAssertEqual(counts, [:], "nothing was queued")
            // Within the model's limits, the same requests run.
            let good = try await API.submitID(client, ["prompt": "a red circle", "clip_skip": 2, "width": 18, "height": 16, "steps": 2])
            let finished = try await API.waitFinished(client, good)
            XCTAssertEqual(finished["status"] as? String, "succeeded", "\(finished["error"] ?? "")")
        }
    }

    func testDefaultsComeFromTheModel() async throws {
        let engine = HardeningTests.engine()
        let profile = try engine.repository.profile("sd1")
        XCTAssertEqual(profile.width, 16, "the fixture's native size")
        try await TestServer.withApplication(engine: engine) { client in
            // Each checkpoint's profile is listed (the web page reads its defaults from it).
            let listing = try await API.get(client, "/v1/models")
            let models = try XCTUnwrap(listing["data"] as? [[String: Any]])
            let profiles = Dictionary(uniqueKeysWithValues: models.map { ($0["id"] as? String ?? "", $0["profile"] as? [String: Any]) })
            XCTAssertEqual(profiles["sd1"]??["width"] as? Int, 16)
            XCTAssertEqual(profiles["sd1"]??["sampler"] as? String, "pndm")
            XCTAssertEqual(profiles["sd1"]??["max_clip_skip"] as? Int, 2)
            XCTAssertEqual(profiles["shapes-sd"]??["width"] as? Int, 128)
            XCTAssertEqual(profiles["shapes-sd"]??["size_multiple"] as? Int, 8)
            let loraListing = try await API.get(client, "/v1/loras")
            let loras = try XCTUnwrap(loraListing["data"] as? [[String: Any]])
            XCTAssertFalse(loras.isEmpty)
            XCTAssertTrue(loras.allSatisfy { $0["profile"] == nil }, "checkpoints only")
            let api = A1111Client(client)
            // A1111 with no size, steps or sampler: the model's native size and recommendation.
            let response = try await api.post("/sdapi/v1/txt2img", ["prompt": "a red circle", "seed": 3])
            XCTAssertEqual(response.status, .ok, String(buffer: response.body))
            let info = try A1111Client.info(response)
            XCTAssertEqual(info["width"] as? Int, profile.width)
            XCTAssertEqual(info["height"] as? Int, profile.height)
            XCTAssertEqual(info["steps"] as? Int, profile.steps)
            XCTAssertEqual(info["sampler_name"] as? String, "PLMS", "sd1's scheduler config is PNDM (A1111's PLMS)")
            let png = try XCTUnwrap(try A1111Client.images(response).first)
            XCTAssertEqual(PNG.size(png)?.width, profile.width)
            // OpenAI with no size: the native size.
            let openAI = try await client.execute(
                uri: "/v1/images/generations", method: .post, headers: [.contentType: "application/json"],
                body: TestServer.json(["prompt": "a red circle", "model": "sd2"]))
            XCTAssertEqual(openAI.status, .ok, String(buffer: openAI.body))
            let data = try XCTUnwrap(openAI.body.jsonObject["data"] as? [[String: Any]])
            let image = try XCTUnwrap(Data(base64Encoded: data.first?["b64_json"] as? String ?? ""))
            XCTAssertEqual(PNG.size(image)?.width, 16)
            // Native with no steps, sampler or cfg: the model's recommendation (sd2's scheduler is DDIM).
            let id = try await API.submitID(client, ["prompt": "a red circle", "model": "sd2"])
            let job = try await API.status(client, id)
            let echo = try XCTUnwrap(job["request"] as? [String: Any])
            XCTAssertEqual(echo["sampler"] as? String, "ddim")
            XCTAssertEqual(echo["steps"] as? Int, try engine.repository.profile("sd2").steps)
            XCTAssertEqual(echo["cfg"] as? Double, Double(try engine.repository.profile("sd2").cfg))
            _ = try await API.waitFinished(client, id)
        }
    }

    // MARK: 7. 405 with Allow, JSON errors, Retry-After, disconnects

    func testWrongMethodIs405WithAllowAndEveryErrorIsJSON() async throws {
        var server = ServerConfiguration()
        server.tokens = ["t"]
        try await TestServer.withApplication(engine: HardeningTests.engine(), server: server) { client in
            let auth: HTTPFields = [.authorization: "Bearer t"]
            for (method, uri, allow) in [
                (HTTPRequest.Method.get, "/sdapi/v1/txt2img", "POST"), (.put, "/v1/images/jobs/abc", "DELETE, GET"),
                (.delete, "/v1/images/jobs", "POST"), (.post, "/healthz", "GET"), (.post, "/sdapi/v1/progress", "GET"),
                (.patch, "/sdapi/v1/options", "GET, POST"), (.get, "/v1/images/jobs/abc/cancel", "POST"),
                (.head, "/v1/models", "GET"),
            ] {
                let response = try await client.execute(uri: uri, method: method, headers: auth)
                XCTAssertEqual(response.status, .methodNotAllowed, "\(method) \(uri)")
                XCTAssertEqual(response.headers[.allow], allow, "\(method) \(uri)")
                if method != .head {
                    Self.assertRefused(response, .methodNotAllowed, mentions: ["\(method.rawValue) is not allowed", allow])
                }
            }
            let unknown = try await client.execute(uri: "/no/such/route", method: .get, headers: auth)
            Self.assertRefused(unknown, .notFound, mentions: ["no route GET /no/such/route"])
            let unauthorized = try await client.execute(uri: "/no/such/route", method: .get)
            Self.assertRefused(unauthorized, .unauthorized, mentions: ["authorization"])
            let tooLarge = try await client.execute(
                uri: "/sdapi/v1/options", method: .post, headers: auth, body: ByteBuffer(repeating: 32, count: 1 << 20))
            Self.assertRefused(tooLarge, .contentTooLarge, mentions: ["larger than"])
            let badIndex = try await client.execute(uri: "/v1/images/jobs/abc/images/notanumber", method: .get, headers: auth)
            XCTAssertTrue((400..<500).contains(Int(badIndex.status.code)))
            XCTAssertEqual(badIndex.headers[.contentType], "application/json")
        }
    }

    func testEvery429CarriesRetryAfter() async throws {
        var configuration = API.configuration
        configuration.queueCapacity = 1
        let engine = HardeningTests.engine(configuration)
        try await TestServer.withApplication(engine: engine) { client in
            let blocker = try await API.submitBlocker(client, engine)
            let queued = try await API.submitID(client, ["prompt": "queued", "width": 32, "height": 32, "steps": 1])
            let refusals = [
                try await API.submit(client, ["prompt": "x", "width": 32, "height": 32, "steps": 1]),
                try await A1111Client(client).post("/sdapi/v1/txt2img", A1111APITests.small()),
                try await A1111Client(client).post(
                    "/sdapi/v1/img2img", A1111APITests.small(["init_images": [A1111APITests.initImage.base64EncodedString()]])),
                try await client.execute(
                    uri: "/v1/images/generations", method: .post, headers: [.contentType: "application/json"],
                    body: TestServer.json(["prompt": "x", "size": "32x32"])),
            ]
            for response in refusals {
                Self.assertRefused(response, .tooManyRequests, mentions: ["queue is full"])
                let retryAfter = try XCTUnwrap(response.headers[.retryAfter].flatMap { Int($0) }, "no Retry-After")
                XCTAssertGreaterThanOrEqual(retryAfter, 1)
            }
            try await API.cancel(client, queued)
            try await API.cancel(client, blocker)
        }
    }

    func testASynchronousJobWhoseClientDisconnectsIsCancelled() async throws {
        let store = InMemoryJobStore()
        let engine = HardeningTests.engine(store: store)
        try await LiveHTTP.withServer(engine: engine) { port, client in
            // A1111 txt2img running when its client goes away.
            let connection = try LiveHTTP.Connection(port: port)
            let long = LiveHTTP.request(
                "POST", "/sdapi/v1/txt2img",
                json: A1111APITests.small(["steps": 1000, "width": 64, "height": 64, "batch_size": 4, "sampler_name": "Euler"]))
            try await LiveHTTP.onThread { try connection.send(long) }
            var running: JobRecord?
            for _ in 0..<5000 where running == nil {
                if let job = await engine.currentJob, job.status == .running { running = job } else { try await Task.sleep(for: .milliseconds(2)) }
            }
            let job = try XCTUnwrap(running, "the A1111 job never ran")
            connection.close()
            let cancelled = try await Self.waitForStatus(engine, job.id)
            XCTAssertEqual(cancelled.status, .cancelled)
            XCTAssertLessThan(cancelled.progress.step, 1000, "stopped early")

            // OpenAI generation still queued behind a blocker when its client goes away: it never runs.
            // (A blocker far longer than the few milliseconds the rest takes.)
            let blocker = try await API.submitID(
                client, ["prompt": "blocker", "width": 64, "height": 64, "steps": 1000, "n": 8, "sampler": "euler"])
            for _ in 0..<5000 where try await engine.job(blocker).status != .running { try await Task.sleep(for: .milliseconds(2)) }
            let second = try LiveHTTP.Connection(port: port)
            try await LiveHTTP.onThread {
                try second.send(LiveHTTP.request("POST", "/v1/images/generations", json: ["prompt": "queued", "size": "32x32"]))
            }
            var queuedID: String?
            for _ in 0..<5000 where queuedID == nil {
                queuedID = try await store.unfinishedJobs().first { $0.status == .queued }?.id
                if queuedID == nil { try await Task.sleep(for: .milliseconds(2)) }
            }
            let queued = try XCTUnwrap(queuedID, "the OpenAI job was never queued")
            second.close()
            let dropped = try await Self.waitForStatus(engine, queued)
            XCTAssertEqual(dropped.status, .cancelled)
            XCTAssertNil(dropped.startedAt, "cancelled before it ran")
            try await API.cancel(client, blocker)

            // A client that stays gets its answer.
            let answered = try await LiveHTTP.exchange(
                port: port, LiveHTTP.request("POST", "/sdapi/v1/txt2img", json: A1111APITests.small(["steps": 1])))
            XCTAssertEqual(answered.status, 200, String(decoding: answered.body.prefix(300), as: UTF8.self))
        }
    }

    static func waitForStatus(_ engine: GenerationEngine, _ id: String) async throws -> JobRecord {
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline {
            let job = try await engine.job(id)
            if job.status.isFinished { return job }
            try await Task.sleep(for: .milliseconds(5))
        }
        throw APITestError("job \(id) did not finish after its client went away")
    }
}

/// How many of some tasks have finished.
final class FinishedCount: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0

    func increment() { lock.withLock { count += 1 } }
    var value: Int { lock.withLock { count } }
}
