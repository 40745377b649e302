import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import ParityTesting
import Server
import Serving
import XCTest

/// Every way a client can get a job request wrong: each is a 4xx with a JSON message that names the problem,
/// no job is queued, no file outside the model folders is touched, and the server keeps serving.
final class BadRequestCorpusTests: XCTestCase {
    struct Case {
        let name: String
        var uri = "/v1/images/jobs"
        /// Replaces the valid token (an empty value removes the header).
        var authorization: String?
        let body: ByteBuffer
        let status: HTTPResponse.Status
        /// Fragments the error message must contain (lowercased comparison).
        let mentions: [String]
    }

    func testTheCorpus() async throws {
        let token = "corpus-token"
        var server = ServerConfiguration()
        server.tokens = [token]
        var configuration = EngineConfiguration()
        configuration.limits.maximumImageBytes = 150
        configuration.limits.maximumPixels = 64 * 64
        let engine = TestServer.engine(configuration: configuration)
        let control = try Data(contentsOf: Golden.fixturesDirectory.appendingPathComponent("pipelines/control_ring.png"))
        XCTAssertGreaterThan(control.count, 150, "the fixture must exceed the configured image limit")
        var small = control
        small.removeLast(control.count - 150)  // under the limit but truncated: corrupt
        // A real LoRA outside the model folders, named by absolute and relative paths: never read.
        let outside = FileManager.default.temporaryDirectory.appendingPathComponent("swiftdiffusion-corpus-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: outside, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: outside) }
        let outsideLoRA = outside.appendingPathComponent("outside.safetensors")
        try FileManager.default.copyItem(
            at: TestServer.modelsFolder.appendingPathComponent("loras/sd1-lora.safetensors").resolvingSymlinksInPath(),
            to: outsideLoRA)
        let relativeOutside = String(repeating: "../", count: 12) + outsideLoRA.path.dropFirst()

        let valid: [String: Any] = ["prompt": "a red circle", "width": 32, "height": 32, "steps": 3]
        let validBody = TestServer.json(valid)
        func job(_ change: [String: Any], removing: [String] = []) -> ByteBuffer {
            var body = valid.merging(change) { $1 }
            for key in removing { body[key] = nil }
            return TestServer.json(body)
        }
        func raw(_ text: String) -> ByteBuffer { ByteBuffer(string: text) }
        let controlUnit: [String: Any] = ["model": "sd1-controlnet", "image": control.base64EncodedString()]
        func withControl(_ change: [String: Any]) -> ByteBuffer { job(["controls": [controlUnit.merging(change) { $1 }]]) }

        let cases: [Case] = [
            // Not JSON, not an object.
            Case(
                name: "malformed JSON", body: raw(#"{"prompt": "x", "steps": 3"#), status: .badRequest,
                mentions: ["not valid json"]),
            Case(name: "empty body", body: raw(""), status: .badRequest, mentions: ["not valid json"]),
            Case(name: "array", body: raw(#"[{"prompt": "x"}]"#), status: .badRequest, mentions: ["json object"]),
            Case(name: "string", body: raw(#""a red circle""#), status: .badRequest, mentions: ["json object"]),
            Case(name: "null", body: raw("null"), status: .badRequest, mentions: ["json object"]),
            // Unknown fields, top level and nested.
            Case(name: "unknown field", body: job(["stesp": 20]), status: .badRequest, mentions: ["unknown field", "stesp"]),
            Case(
                name: "unknown fields", body: job(["guidance": 7, "seeed": 1]), status: .badRequest,
                mentions: ["unknown fields", "guidance", "seeed"]),
            Case(
                name: "unknown LoRA field", body: job(["loras": [["name": "sd1-lora", "wieght": 1]]]), status: .badRequest,
                mentions: ["loras[0].wieght"]),
            Case(
                name: "unknown control field", body: withControl(["strength": 1]), status: .badRequest,
                mentions: ["controls[0].strength"]),
            Case(
                name: "LoRA not an object", body: job(["loras": ["sd1-lora"]]), status: .badRequest,
                mentions: ["loras[0]", "object"]),
            // Wrong types and missing fields.
            Case(
                name: "steps as text", body: job(["steps": "twenty"]), status: .badRequest,
                mentions: ["field 'steps' must be Int"]),
            Case(
                name: "LoRA weight as text", body: job(["loras": [["name": "sd1-lora", "weight": "high"]]]), status: .badRequest,
                mentions: ["loras[0].weight"]),
            Case(
                name: "width as fraction", body: job(["width": 32.5]), status: .badRequest,
                mentions: ["fraction where an integer is expected"]),
            Case(name: "prompt as number", body: job(["prompt": 5]), status: .badRequest, mentions: ["prompt"]),
            Case(
                name: "missing prompt", body: job([:], removing: ["prompt"]), status: .badRequest,
                mentions: ["missing field 'prompt'"]),
            Case(
                name: "missing LoRA name", body: job(["loras": [["weight": 1]]]), status: .badRequest,
                mentions: ["missing field 'loras[0].name'"]),
            Case(name: "loras as text", body: job(["loras": "sd1-lora"]), status: .badRequest, mentions: ["loras"]),
            Case(name: "metadata as list", body: job(["metadata": ["a"]]), status: .badRequest, mentions: ["metadata"]),
            Case(
                name: "bad prompt syntax", body: job(["prompt_syntax": "markdown"]), status: .badRequest,
                mentions: ["prompt_syntax"]),
            Case(
                name: "number out of range", body: raw(#"{"prompt": "x", "width": 1e30}"#), status: .badRequest,
                mentions: ["out of range"]),
            Case(
                name: "number beyond double", body: raw(#"{"prompt": "x", "width": 1e400}"#), status: .badRequest,
                mentions: ["not valid json"]),
            Case(name: "null prompt", body: raw(#"{"prompt": null}"#), status: .badRequest, mentions: ["prompt", "null"]),
            // Out of limits.
            Case(
                name: "negative width", body: job(["width": -32]), status: .badRequest,
                mentions: ["width must be between", "2048"]),
            Case(
                name: "zero height", body: job(["height": 0]), status: .badRequest,
                mentions: ["height must be between", "2048"]),
            Case(
                name: "huge width", body: job(["width": 1_000_000]), status: .badRequest,
                mentions: ["width must be between", "2048"]),
            Case(
                name: "too many pixels", body: job(["width": 128, "height": 64]), status: .badRequest,
                mentions: ["at most 4096 pixels"]),
            Case(
                name: "10k steps", body: job(["steps": 10_000]), status: .badRequest,
                mentions: ["steps must be between 1 and 150"]),
            Case(name: "zero steps", body: job(["steps": 0]), status: .badRequest, mentions: ["steps"]),
            Case(name: "n = 1000", body: job(["n": 1000]), status: .badRequest, mentions: ["number of images", "8"]),
            Case(name: "huge cfg", body: job(["cfg": 1e30]), status: .badRequest, mentions: ["cfg must be between 0 and 50"]),
            Case(name: "negative cfg", body: job(["cfg": -1]), status: .badRequest, mentions: ["cfg"]),
            Case(name: "strength above 1", body: job(["strength": 2]), status: .badRequest, mentions: ["strength"]),
            Case(name: "clip skip", body: job(["clip_skip": 99]), status: .badRequest, mentions: ["clip_skip"]),
            Case(
                name: "LoRA weight", body: job(["loras": [["name": "sd1-lora", "weight": 1e6]]]), status: .badRequest,
                mentions: ["lora weights"]),
            Case(
                name: "too many LoRAs", body: job(["loras": Array(repeating: ["name": "sd1-lora"], count: 9)]),
                status: .badRequest, mentions: ["at most 8 loras"]),
            Case(
                name: "long prompt", body: job(["prompt": String(repeating: "x", count: 8001)]), status: .badRequest,
                mentions: ["8000 characters"]),
            Case(name: "empty prompt", body: job(["prompt": ""]), status: .badRequest, mentions: ["prompt must not be empty"]),
            // Unknown names.
            Case(name: "unknown sampler", body: job(["sampler": "warp_drive"]), status: .badRequest, mentions: ["warp_drive"]),
            Case(
                name: "unknown model", body: job(["model": "sd9"]), status: .notFound,
                mentions: ["unknown model 'sd9'", "/v1/models"]),
            Case(
                name: "unknown LoRA", body: job(["loras": [["name": "nope"]]]), status: .notFound,
                mentions: ["unknown lora 'nope'", "/v1/loras"]),
            Case(
                name: "unknown ControlNet", body: withControl(["model": "nope"]), status: .notFound,
                mentions: ["unknown controlnet 'nope'"]),
            Case(
                name: "unknown preprocessor", body: withControl(["preprocessor": "xray"]), status: .badRequest, mentions: ["xray"]
            ),
            Case(
                name: "unknown resize mode", body: withControl(["resize_mode": "stretch"]), status: .badRequest,
                mentions: ["stretch"]),
            // Names that are paths.
            Case(name: "model ../", body: job(["model": "../checkpoints/sd1"]), status: .notFound, mentions: ["unknown model"]),
            Case(
                name: "model absolute",
                body: job(["model": TestServer.modelsFolder.appendingPathComponent("checkpoints/sd1").path]), status: .notFound,
                mentions: ["unknown model"]),
            Case(
                name: "LoRA absolute", body: job(["loras": [["name": outsideLoRA.path]]]), status: .notFound,
                mentions: ["unknown lora"]),
            Case(
                name: "LoRA ../", body: job(["loras": [["name": relativeOutside]]]), status: .notFound, mentions: ["unknown lora"]
            ),
            Case(
                name: "LoRA ../ into the folder", body: job(["loras": [["name": "../loras/sd1-lora"]]]), status: .notFound,
                mentions: ["unknown lora"]),
            Case(
                name: "LoRA /etc/passwd", body: job(["loras": [["name": "/etc/passwd"]]]), status: .notFound,
                mentions: ["unknown lora"]),
            Case(
                name: "ControlNet ../", body: withControl(["model": "../controlnets/sd1-controlnet"]), status: .notFound,
                mentions: ["unknown controlnet"]),
            // Images.
            Case(
                name: "corrupt base64", body: withControl(["image": "@@@@not base64@@@@"]), status: .badRequest,
                mentions: ["controls[0].image", "base64"]),
            Case(
                name: "base64 of text",
                body: withControl(["image": Data("hello, this is not an image".utf8).base64EncodedString()]), status: .badRequest,
                mentions: ["controlnet image", "unsupported image format"]),
            Case(
                name: "truncated PNG", body: withControl(["image": small.base64EncodedString()]), status: .badRequest,
                mentions: ["controlnet image", "png"]),
            Case(name: "image over the limit", body: withControl([:]), status: .badRequest, mentions: ["larger than 150 bytes"]),
            Case(
                name: "init image not base64", body: job(["init_image": "%%%"]), status: .badRequest,
                mentions: ["init_image", "base64"]),
            Case(
                name: "init image not an image", body: job(["init_image": Data(repeating: 7, count: 64).base64EncodedString()]),
                status: .badRequest, mentions: ["init image"]),
            Case(
                name: "body over the upload limit", body: ByteBuffer(repeating: UInt8(ascii: " "), count: (64 << 20) + 1),
                status: .contentTooLarge, mentions: ["larger than"]),
            // Jobs that do not exist.
            Case(name: "unknown job", uri: "/v1/images/jobs/0000", body: ByteBuffer(), status: .notFound, mentions: ["0000"]),
            // Credentials.
            Case(
                name: "wrong token", authorization: "Bearer wrong", body: job([:]), status: .unauthorized,
                mentions: ["invalid token"]),
            Case(
                name: "no token", authorization: "", body: job([:]), status: .unauthorized, mentions: ["authorization", "token"]),
        ]

        try await TestServer.withApplication(engine: engine, server: server) { client in
            for testCase in cases {
                var headers: HTTPFields = [.contentType: "application/json", .authorization: "Bearer \(token)"]
                if let authorization = testCase.authorization {
                    headers[.authorization] = authorization.isEmpty ? nil : authorization
                }
                let method: HTTPRequest.Method = testCase.uri == "/v1/images/jobs" ? .post : .get
                let response = try await client.execute(uri: testCase.uri, method: method, headers: headers, body: testCase.body)
                XCTAssertEqual(response.status, testCase.status, "\(testCase.name): \(String(buffer: response.body).prefix(300))")
                XCTAssertEqual(response.headers[.contentType], "application/json", testCase.name)
                let message = API.message(response)
                XCTAssertFalse(
                    message.isEmpty, "\(testCase.name): no JSON error message in \(String(buffer: response.body).prefix(200))")
                for fragment in testCase.mentions {
                    XCTAssertTrue(
                        message.lowercased().contains(fragment.lowercased()),
                        "\(testCase.name): '\(message)' does not mention '\(fragment)'")
                }
            }
            // None of it became a job.
            let counts = try await engine.counts()
            XCTAssertEqual(counts, [:])

            // The server still serves a normal job.
            let submitted = try await client.execute(
                uri: "/v1/images/jobs", method: .post,
                headers: [.contentType: "application/json", .authorization: "Bearer \(token)"], body: validBody)
            XCTAssertEqual(submitted.status, .accepted)
            let id = try XCTUnwrap(submitted.body.jsonObject["id"] as? String)
            let deadline = Date().addingTimeInterval(60)
            var status = ""
            while Date() < deadline {
                let response = try await client.execute(
                    uri: "/v1/images/jobs/\(id)", method: .get, headers: [.authorization: "Bearer \(token)"])
                status = response.body.jsonObject["status"] as? String ?? ""
                if ["succeeded", "failed", "cancelled"].contains(status) { break }
                try await Task.sleep(for: .milliseconds(5))
            }
            XCTAssertEqual(status, "succeeded")
        }
    }
    // MARK: - Every route

    /// One request of the every-route corpus.
    struct RouteCase {
        let name: String
        let method: HTTPRequest.Method
        let uri: String
        var body = ByteBuffer()
        /// Replaces the valid token (an empty value removes the header).
        var authorization: String?
        let status: HTTPResponse.Status
        let mentions: [String]
    }

    /// Bad requests on every route and surface (A1111, OpenAI, native, options, operations): each answered 4xx with
    /// a JSON error body that names the problem, none queued, and `/healthz` answering within a second throughout.
    func testTheCorpusOnEveryRoute() async throws {
        let token = "corpus-token"
        var server = ServerConfiguration()
        server.tokens = [token]
        var configuration = EngineConfiguration()
        configuration.limits.maximumImageBytes = 4096
        configuration.limits.maximumPixels = 64 * 64
        let engine = HardeningTests.engine(configuration)
        let router = ServerApplication.router(engine: engine, configuration: server)
        let initImage = A1111APITests.initImage.base64EncodedString()
        let control = A1111APITests.controlImage.base64EncodedString()
        func json(_ object: Any) -> ByteBuffer { TestServer.json(object) }
        func raw(_ text: String) -> ByteBuffer { ByteBuffer(string: text) }
        let small: [String: Any] = ["prompt": "a red circle", "steps": 2, "width": 32, "height": 32]
        func a1111(_ change: [String: Any], removing: [String] = []) -> ByteBuffer {
            var body = small.merging(change) { $1 }
            for key in removing { body[key] = nil }
            return json(body)
        }
        func img2img(_ change: [String: Any]) -> ByteBuffer { a1111(["init_images": [initImage]].merging(change) { $1 }) }
        func unit(_ change: [String: Any]) -> ByteBuffer {
            let unit: [String: Any] = ["model": "sd1-controlnet", "image": control, "enabled": true]
            return a1111(["alwayson_scripts": ["controlnet": ["args": [unit.merging(change) { $1 }]]]])
        }
        func openAI(_ change: [String: Any], removing: [String] = []) -> ByteBuffer {
            var body: [String: Any] = ["prompt": "a red circle", "size": "32x32"]
            body.merge(change) { $1 }
            for key in removing { body[key] = nil }
            return json(body)
        }
        func native(_ change: [String: Any]) -> ByteBuffer { json(small.merging(change) { $1 }) }
        let huge = 4_611_686_018_427_387_904
        let txt2img = "/sdapi/v1/txt2img", img2imgURI = "/sdapi/v1/img2img", options = "/sdapi/v1/options"
        let generations = "/v1/images/generations", jobs = "/v1/images/jobs"
        let bad = HTTPResponse.Status.badRequest, unprocessable = HTTPResponse.Status.unprocessableContent

        var cases: [RouteCase] = [
            // A1111 txt2img: bodies, types, bounds, names, the model's limits.
            RouteCase(name: "txt2img empty", method: .post, uri: txt2img, body: raw(""), status: unprocessable, mentions: ["json object"]),
            RouteCase(name: "txt2img not JSON", method: .post, uri: txt2img, body: raw("{\"prompt\": "), status: unprocessable, mentions: ["not valid json"]),
            RouteCase(name: "txt2img array", method: .post, uri: txt2img, body: raw("[1]"), status: unprocessable, mentions: ["json object"]),
            RouteCase(name: "txt2img string", method: .post, uri: txt2img, body: raw("\"x\""), status: unprocessable, mentions: ["json object"]),
            RouteCase(name: "txt2img prompt object", method: .post, uri: txt2img, body: a1111(["prompt": ["a": 1]]), status: unprocessable, mentions: ["prompt must be a string"]),
            RouteCase(name: "txt2img steps text", method: .post, uri: txt2img, body: a1111(["steps": "many"]), status: unprocessable, mentions: ["steps must be an integer"]),
            RouteCase(name: "txt2img steps fraction", method: .post, uri: txt2img, body: a1111(["steps": 2.5]), status: unprocessable, mentions: ["steps must be an integer"]),
            RouteCase(name: "txt2img steps 1e300", method: .post, uri: txt2img, body: a1111(["steps": 1e300]), status: unprocessable, mentions: ["steps"]),
            RouteCase(name: "txt2img steps zero", method: .post, uri: txt2img, body: a1111(["steps": 0]), status: bad, mentions: ["steps must be at least 1"]),
            RouteCase(name: "txt2img steps huge", method: .post, uri: txt2img, body: a1111(["steps": huge]), status: bad, mentions: ["steps must be at most 150"]),
            RouteCase(name: "txt2img steps 151", method: .post, uri: txt2img, body: a1111(["steps": 151]), status: bad, mentions: ["at most 150"]),
            RouteCase(name: "txt2img batch huge", method: .post, uri: txt2img, body: a1111(["batch_size": huge, "n_iter": huge]), status: bad, mentions: ["batch_size must be at most 8"]),
            RouteCase(name: "txt2img n_iter huge", method: .post, uri: txt2img, body: a1111(["n_iter": huge]), status: bad, mentions: ["n_iter must be at most 8"]),
            RouteCase(name: "txt2img batch x iter", method: .post, uri: txt2img, body: a1111(["batch_size": 4, "n_iter": 3]), status: unprocessable, mentions: ["batch_size x n_iter", "4 x 3"]),
            RouteCase(name: "txt2img batch negative", method: .post, uri: txt2img, body: a1111(["batch_size": -1]), status: bad, mentions: ["batch_size"]),
            RouteCase(name: "txt2img n_iter zero", method: .post, uri: txt2img, body: a1111(["n_iter": 0]), status: bad, mentions: ["n_iter"]),
            RouteCase(name: "txt2img width huge", method: .post, uri: txt2img, body: a1111(["width": huge]), status: bad, mentions: ["width must be at most 2048"]),
            RouteCase(name: "txt2img height negative", method: .post, uri: txt2img, body: a1111(["height": -512]), status: bad, mentions: ["height must be at least 1"]),
            RouteCase(name: "txt2img width 1", method: .post, uri: txt2img, body: a1111(["width": 1]), status: bad, mentions: ["at least 2"]),
            RouteCase(name: "txt2img too many pixels", method: .post, uri: txt2img, body: a1111(["width": 128, "height": 64]), status: bad, mentions: ["at most 4096 pixels"]),
            RouteCase(name: "txt2img cfg text", method: .post, uri: txt2img, body: a1111(["cfg_scale": "loud"]), status: unprocessable, mentions: ["cfg_scale must be a number"]),
            RouteCase(name: "txt2img cfg huge", method: .post, uri: txt2img, body: a1111(["cfg_scale": 1e300]), status: bad, mentions: ["cfg"]),
            RouteCase(name: "txt2img seed huge", method: .post, uri: txt2img, body: a1111(["seed": Int.max, "batch_size": 3]), status: bad, mentions: ["seed must be at most"]),
            RouteCase(name: "txt2img subseed huge", method: .post, uri: txt2img, body: a1111(["subseed": Int.max, "n_iter": 2]), status: bad, mentions: ["subseed must be at most"]),
            RouteCase(name: "txt2img seed text", method: .post, uri: txt2img, body: a1111(["seed": "lucky"]), status: unprocessable, mentions: ["seed must be an integer"]),
            RouteCase(name: "txt2img sampler", method: .post, uri: txt2img, body: a1111(["sampler_name": "Warp"]), status: .notFound, mentions: ["sampler not found"]),
            RouteCase(name: "txt2img sampler index", method: .post, uri: txt2img, body: a1111(["sampler_index": 99]), status: .notFound, mentions: ["index 99"]),
            RouteCase(name: "txt2img sampler index 1e300", method: .post, uri: txt2img, body: a1111(["sampler_index": 1e300]), status: unprocessable, mentions: ["sampler_index"]),
            RouteCase(name: "txt2img long prompt", method: .post, uri: txt2img, body: a1111(["prompt": String(repeating: "(", count: 300_000)]), status: bad, mentions: ["8000 characters"]),
            RouteCase(name: "txt2img long negative", method: .post, uri: txt2img, body: a1111(["negative_prompt": String(repeating: "<", count: 300_000)]), status: bad, mentions: ["negative_prompt"]),
            RouteCase(name: "txt2img bad weight", method: .post, uri: txt2img, body: a1111(["prompt": "(a:1.2.3)"]), status: bad, mentions: ["1.2.3"]),
            RouteCase(name: "txt2img unknown lora", method: .post, uri: txt2img, body: a1111(["prompt": "<lora:nope:1>"]), status: .notFound, mentions: ["nope"]),
            RouteCase(name: "txt2img lora path", method: .post, uri: txt2img, body: a1111(["prompt": "<lora:../../etc/passwd:1>"]), status: .notFound, mentions: ["not found"]),
            RouteCase(name: "txt2img lora weight", method: .post, uri: txt2img, body: a1111(["prompt": "<lora:sd1-lora:heavy>"]), status: bad, mentions: ["heavy"]),
            RouteCase(name: "txt2img unknown model", method: .post, uri: txt2img, body: a1111(["override_settings": ["sd_model_checkpoint": "nope"]]), status: .notFound, mentions: ["model not found"]),
            RouteCase(name: "txt2img override not object", method: .post, uri: txt2img, body: a1111(["override_settings": "x"]), status: unprocessable, mentions: ["override_settings must be an object"]),
            RouteCase(name: "txt2img clip skip 12", method: .post, uri: txt2img, body: a1111(["override_settings": ["CLIP_stop_at_last_layers": 12]]), status: bad, mentions: ["between 1 and 2"]),
            RouteCase(name: "txt2img clip skip 0", method: .post, uri: txt2img, body: a1111(["override_settings": ["CLIP_stop_at_last_layers": 0]]), status: bad, mentions: ["CLIP_stop_at_last_layers"]),
            RouteCase(name: "txt2img clip skip huge", method: .post, uri: txt2img, body: a1111(["override_settings": ["CLIP_stop_at_last_layers": huge]]), status: bad, mentions: ["CLIP_stop_at_last_layers"]),
            RouteCase(name: "txt2img embedded clip skip", method: .post, uri: txt2img, body: a1111(["width": 64, "height": 64, "override_settings": ["sd_model_checkpoint": "shapes-sd", "CLIP_stop_at_last_layers": 4]]), status: bad, mentions: ["between 1 and 3"]),
            RouteCase(name: "txt2img scripts not object", method: .post, uri: txt2img, body: a1111(["alwayson_scripts": [1, 2]]), status: unprocessable, mentions: ["alwayson_scripts"]),
            RouteCase(name: "txt2img send_images text", method: .post, uri: txt2img, body: a1111(["send_images": "maybe"]), status: unprocessable, mentions: ["send_images must be a boolean"]),
            // ControlNet units.
            RouteCase(name: "unit unknown model", method: .post, uri: txt2img, body: unit(["model": "nope"]), status: .notFound, mentions: ["controlnet model 'nope'"]),
            RouteCase(name: "unit model path", method: .post, uri: txt2img, body: unit(["model": "../controlnets/sd1-controlnet"]), status: .notFound, mentions: ["not found"]),
            RouteCase(name: "unit no image", method: .post, uri: txt2img, body: unit(["image": ""]), status: bad, mentions: ["no image"]),
            RouteCase(name: "unit image number", method: .post, uri: txt2img, body: unit(["image": 5]), status: bad, mentions: ["base64 string"]),
            RouteCase(name: "unit image not base64", method: .post, uri: txt2img, body: unit(["image": "%%%"]), status: bad, mentions: ["base64"]),
            RouteCase(name: "unit image text", method: .post, uri: txt2img, body: unit(["image": Data("hello".utf8).base64EncodedString()]), status: bad, mentions: ["controlnet image"]),
            RouteCase(name: "unit module", method: .post, uri: txt2img, body: unit(["module": "openpose"]), status: bad, mentions: ["openpose"]),
            RouteCase(name: "unit resize mode", method: .post, uri: txt2img, body: unit(["resize_mode": "Stretch"]), status: bad, mentions: ["resize_mode"]),
            RouteCase(name: "unit resize mode huge", method: .post, uri: txt2img, body: unit(["resize_mode": 1e300]), status: bad, mentions: ["resize_mode"]),
            RouteCase(name: "unit control mode", method: .post, uri: txt2img, body: unit(["control_mode": 7]), status: bad, mentions: ["control_mode"]),
            RouteCase(name: "unit control mode huge", method: .post, uri: txt2img, body: unit(["control_mode": -1e300]), status: bad, mentions: ["control_mode"]),
            RouteCase(name: "unit weight", method: .post, uri: txt2img, body: unit(["weight": 1e30]), status: bad, mentions: ["weight"]),
            RouteCase(name: "unit guidance", method: .post, uri: txt2img, body: unit(["guidance_start": 0.9, "guidance_end": 0.1]), status: bad, mentions: ["start"]),
            RouteCase(name: "unit enabled text", method: .post, uri: txt2img, body: unit(["enabled": "sure"]), status: unprocessable, mentions: ["enabled must be a boolean"]),
            RouteCase(name: "too many units", method: .post, uri: txt2img, body: a1111(["alwayson_scripts": ["controlnet": ["args": Array(repeating: ["model": "sd1-controlnet", "image": control] as [String: Any], count: 5)]]]), status: bad, mentions: ["at most 4 controlnet units"]),
            RouteCase(name: "thousands of units", method: .post, uri: txt2img, body: a1111(["alwayson_scripts": ["controlnet": ["args": Array(repeating: ["enabled": false] as [String: Any], count: 5000)]]]), status: bad, mentions: ["5000 units"]),
            // A1111 img2img.
            RouteCase(name: "img2img no images", method: .post, uri: img2imgURI, body: a1111([:]), status: bad, mentions: ["init_images"]),
            RouteCase(name: "img2img images not list", method: .post, uri: img2imgURI, body: a1111(["init_images": "x"]), status: unprocessable, mentions: ["init_images must be a list"]),
            RouteCase(name: "img2img empty list", method: .post, uri: img2imgURI, body: a1111(["init_images": [String]()]), status: bad, mentions: ["init_images"]),
            RouteCase(name: "img2img not base64", method: .post, uri: img2imgURI, body: img2img(["init_images": ["%%%"]]), status: bad, mentions: ["init_images[0]"]),
            RouteCase(name: "img2img number", method: .post, uri: img2imgURI, body: img2img(["init_images": [5]]), status: bad, mentions: ["init_images[0]"]),
            RouteCase(name: "img2img not an image", method: .post, uri: img2imgURI, body: img2img(["init_images": [Data(repeating: 9, count: 100).base64EncodedString()]]), status: bad, mentions: ["png or jpeg"]),
            RouteCase(name: "img2img over the image limit", method: .post, uri: img2imgURI, body: img2img(["init_images": [Data(repeating: 9, count: 8000).base64EncodedString()]]), status: bad, mentions: ["larger than 4096 bytes"]),
            RouteCase(name: "img2img resize mode", method: .post, uri: img2imgURI, body: img2img(["resize_mode": 9]), status: bad, mentions: ["resize_mode"]),
            RouteCase(name: "img2img resize mode huge", method: .post, uri: img2imgURI, body: img2img(["resize_mode": huge]), status: bad, mentions: ["resize_mode"]),
            RouteCase(name: "img2img strength", method: .post, uri: img2imgURI, body: img2img(["denoising_strength": 2]), status: bad, mentions: ["denoising_strength"]),
            RouteCase(name: "img2img strength zero", method: .post, uri: img2imgURI, body: img2img(["denoising_strength": 0]), status: bad, mentions: ["denoising_strength"]),
            RouteCase(name: "img2img batch x iter", method: .post, uri: img2imgURI, body: img2img(["batch_size": huge, "n_iter": huge]), status: bad, mentions: ["batch_size"]),
            RouteCase(name: "img2img steps", method: .post, uri: img2imgURI, body: img2img(["steps": -1]), status: bad, mentions: ["steps"]),
            RouteCase(name: "img2img width", method: .post, uri: img2imgURI, body: img2img(["width": huge]), status: bad, mentions: ["width"]),
            RouteCase(name: "img2img long prompt", method: .post, uri: img2imgURI, body: img2img(["prompt": String(repeating: "[", count: 9000)]), status: bad, mentions: ["8000 characters"]),
            RouteCase(name: "img2img clip skip", method: .post, uri: img2imgURI, body: img2img(["override_settings": ["CLIP_stop_at_last_layers": 3]]), status: bad, mentions: ["between 1 and 2"]),
            // A1111 options.
            RouteCase(name: "options empty", method: .post, uri: options, body: raw(""), status: unprocessable, mentions: ["json object"]),
            RouteCase(name: "options list", method: .post, uri: options, body: raw("[]"), status: unprocessable, mentions: ["json object"]),
            RouteCase(name: "options model", method: .post, uri: options, body: json(["sd_model_checkpoint": "nope"]), status: .notFound, mentions: ["not found"]),
            RouteCase(name: "options model path", method: .post, uri: options, body: json(["sd_model_checkpoint": "/etc/passwd"]), status: .notFound, mentions: ["not found"]),
            RouteCase(name: "options clip skip", method: .post, uri: options, body: json(["CLIP_stop_at_last_layers": 12]), status: bad, mentions: ["between 1 and 2"]),
            RouteCase(name: "options clip skip text", method: .post, uri: options, body: json(["CLIP_stop_at_last_layers": "two"]), status: unprocessable, mentions: ["integer"]),
            RouteCase(name: "options long text", method: .post, uri: options, body: json(["sd_vae": String(repeating: "v", count: 1000)]), status: unprocessable, mentions: ["256 characters"]),
            RouteCase(name: "options wrong kind", method: .post, uri: options, body: json(["jpeg_quality": ["a"]]), status: unprocessable, mentions: ["a number"]),
            RouteCase(name: "options bool kind", method: .post, uri: options, body: json(["samples_save": "yes"]), status: unprocessable, mentions: ["a boolean"]),
            RouteCase(name: "options too large", method: .post, uri: options, body: json(["junk": String(repeating: "j", count: 70_000)]), status: .contentTooLarge, mentions: ["65536 bytes"]),
            // Bodies on routes that take small or no bodies.
            RouteCase(name: "interrupt huge body", method: .post, uri: "/sdapi/v1/interrupt", body: ByteBuffer(repeating: 32, count: 20_000), status: .contentTooLarge, mentions: ["16384 bytes"]),
            RouteCase(name: "skip huge body", method: .post, uri: "/sdapi/v1/skip", body: ByteBuffer(repeating: 32, count: 20_000), status: .contentTooLarge, mentions: ["16384 bytes"]),
            RouteCase(name: "rescan huge body", method: .post, uri: "/v1/models/rescan", body: ByteBuffer(repeating: 32, count: 20_000), status: .contentTooLarge, mentions: ["16384 bytes"]),
            RouteCase(name: "refresh huge body", method: .post, uri: "/sdapi/v1/refresh-checkpoints", body: ByteBuffer(repeating: 32, count: 20_000), status: .contentTooLarge, mentions: ["16384 bytes"]),
            RouteCase(name: "cancel huge body", method: .post, uri: "/v1/images/jobs/x/cancel", body: ByteBuffer(repeating: 32, count: 20_000), status: .contentTooLarge, mentions: ["16384 bytes"]),
            RouteCase(name: "txt2img over 64 MiB", method: .post, uri: txt2img, body: ByteBuffer(repeating: 32, count: (64 << 20) + 1), status: .contentTooLarge, mentions: ["67108864 bytes"]),
            // OpenAI.
            RouteCase(name: "openai empty", method: .post, uri: generations, body: raw(""), status: bad, mentions: ["malformed request"]),
            RouteCase(name: "openai not JSON", method: .post, uri: generations, body: raw("{"), status: bad, mentions: ["malformed request"]),
            RouteCase(name: "openai no prompt", method: .post, uri: generations, body: openAI([:], removing: ["prompt"]), status: bad, mentions: ["missing field 'prompt'"]),
            RouteCase(name: "openai prompt number", method: .post, uri: generations, body: openAI(["prompt": 5]), status: bad, mentions: ["prompt"]),
            RouteCase(name: "openai empty prompt", method: .post, uri: generations, body: openAI(["prompt": ""]), status: bad, mentions: ["prompt must not be empty"]),
            RouteCase(name: "openai long prompt", method: .post, uri: generations, body: openAI(["prompt": String(repeating: "a", count: 9000)]), status: bad, mentions: ["8000 characters"]),
            RouteCase(name: "openai n zero", method: .post, uri: generations, body: openAI(["n": 0]), status: bad, mentions: ["number of images (n) must be between 1 and 8"]),
            RouteCase(name: "openai n huge", method: .post, uri: generations, body: openAI(["n": huge]), status: bad, mentions: ["number of images (n) must be between 1 and 8"]),
            RouteCase(name: "openai n fraction", method: .post, uri: generations, body: openAI(["n": 1.5]), status: bad, mentions: ["malformed request"]),
            RouteCase(name: "openai size 100x100", method: .post, uri: generations, body: openAI(["size": "100x100", "model": "shapes-sd"]), status: bad, mentions: ["multiple of 8"]),
            RouteCase(name: "openai size odd", method: .post, uri: generations, body: openAI(["size": "33x33"]), status: bad, mentions: ["multiple of 2"]),
            RouteCase(name: "openai size words", method: .post, uri: generations, body: openAI(["size": "large"]), status: bad, mentions: ["size must be"]),
            RouteCase(name: "openai size three", method: .post, uri: generations, body: openAI(["size": "32x32x32"]), status: bad, mentions: ["size must be"]),
            RouteCase(name: "openai size negative", method: .post, uri: generations, body: openAI(["size": "-32x32"]), status: bad, mentions: ["between 2 and 2048"]),
            RouteCase(name: "openai size zero", method: .post, uri: generations, body: openAI(["size": "0x0"]), status: bad, mentions: ["between 2 and 2048"]),
            RouteCase(name: "openai size huge", method: .post, uri: generations, body: openAI(["size": "99999999999999999999999x2"]), status: bad, mentions: ["size must be"]),
            RouteCase(name: "openai size pixels", method: .post, uri: generations, body: openAI(["size": "128x64"]), status: bad, mentions: ["at most 4096 pixels"]),
            RouteCase(name: "openai size long", method: .post, uri: generations, body: openAI(["size": String(repeating: "9", count: 5000)]), status: bad, mentions: ["size must be"]),
            RouteCase(name: "openai size number", method: .post, uri: generations, body: openAI(["size": 512]), status: bad, mentions: ["size"]),
            RouteCase(name: "openai format", method: .post, uri: generations, body: openAI(["response_format": "jpeg"]), status: bad, mentions: ["response_format"]),
            RouteCase(name: "openai output format", method: .post, uri: generations, body: openAI(["output_format": "webp"]), status: bad, mentions: ["webp"]),
            RouteCase(name: "openai too large", method: .post, uri: generations, body: openAI(["user": String(repeating: "u", count: 300_000)]), status: .contentTooLarge, mentions: ["262144 bytes"]),
            // Native: the model's limits, counts, metadata.
            RouteCase(name: "native width 100", method: .post, uri: jobs, body: native(["model": "shapes-sd", "width": 100, "height": 128]), status: bad, mentions: ["multiple of 8"]),
            RouteCase(name: "native height 33", method: .post, uri: jobs, body: native(["height": 33]), status: bad, mentions: ["multiple of 2"]),
            RouteCase(name: "native clip skip 12", method: .post, uri: jobs, body: native(["model": "shapes-sd", "clip_skip": 12, "width": 64, "height": 64]), status: bad, mentions: ["between 1 and 3"]),
            RouteCase(name: "native clip skip 3", method: .post, uri: jobs, body: native(["clip_skip": 3]), status: bad, mentions: ["between 1 and 2"]),
            RouteCase(name: "native clip skip sdxl", method: .post, uri: jobs, body: native(["model": "sdxl", "clip_skip": 2]), status: bad, mentions: ["between 1 and 1"]),
            RouteCase(name: "native n huge", method: .post, uri: jobs, body: native(["n": huge]), status: bad, mentions: ["number of images"]),
            RouteCase(name: "native steps huge", method: .post, uri: jobs, body: native(["steps": huge]), status: bad, mentions: ["steps"]),
            RouteCase(name: "native deadline huge", method: .post, uri: jobs, body: native(["lora_deadline_step": huge]), status: bad, mentions: ["lora_deadline_step must be between 0 and 150"]),
            RouteCase(name: "native deadline negative", method: .post, uri: jobs, body: native(["lora_deadline_step": -1]), status: bad, mentions: ["lora_deadline_step"]),
            RouteCase(name: "native seed text", method: .post, uri: jobs, body: native(["seed": "x"]), status: bad, mentions: ["seed"]),
            RouteCase(name: "native controls many", method: .post, uri: jobs, body: native(["controls": Array(repeating: ["model": "sd1-controlnet", "image": control] as [String: Any], count: 50)]), status: bad, mentions: ["at most 4 controlnets"]),
            RouteCase(name: "native metadata keys", method: .post, uri: jobs, body: native(["metadata": Dictionary(uniqueKeysWithValues: (0..<40).map { ("k\($0)", "v") })]), status: bad, mentions: ["40 keys"]),
            RouteCase(name: "native metadata size", method: .post, uri: jobs, body: native(["metadata": ["a": String(repeating: "m", count: 5000)]]), status: bad, mentions: ["4096"]),
            RouteCase(name: "native metadata value type", method: .post, uri: jobs, body: native(["metadata": ["a": 1]]), status: bad, mentions: ["metadata"]),
            RouteCase(name: "native init image over limit", method: .post, uri: jobs, body: native(["init_image": Data(repeating: 1, count: 9000).base64EncodedString()]), status: bad, mentions: ["larger than 4096 bytes"]),
            RouteCase(name: "native unknown model", method: .post, uri: jobs, body: native(["model": "nope"]), status: .notFound, mentions: ["unknown model"]),
            RouteCase(name: "native image index", method: .get, uri: "/v1/images/jobs/x/images/abc", status: bad, mentions: []),
            RouteCase(name: "native job unknown", method: .get, uri: "/v1/images/jobs/nope", status: .notFound, mentions: ["nope"]),
            RouteCase(name: "native cancel unknown", method: .post, uri: "/v1/images/jobs/nope/cancel", status: .notFound, mentions: ["nope"]),
            RouteCase(name: "native delete unknown", method: .delete, uri: "/v1/images/jobs/nope", status: .notFound, mentions: ["nope"]),
            RouteCase(name: "native events unknown", method: .get, uri: "/v1/images/jobs/nope/events", status: .notFound, mentions: ["nope"]),
            RouteCase(name: "native images unknown", method: .get, uri: "/v1/images/jobs/nope/images/0", status: .notFound, mentions: ["nope"]),
            // Unknown routes.
            RouteCase(name: "unknown route", method: .get, uri: "/nope", status: .notFound, mentions: ["no route get /nope"]),
            RouteCase(name: "unknown sdapi route", method: .post, uri: "/sdapi/v1/extra-single-image", status: .notFound, mentions: ["no route"]),
            RouteCase(name: "unknown v2", method: .get, uri: "/v2/images/jobs", status: .notFound, mentions: ["no route"]),
            RouteCase(name: "deep unknown", method: .get, uri: "/" + Array(repeating: "a", count: 300).joined(separator: "/"), status: .notFound, mentions: ["no route"]),
            RouteCase(name: "traversal", method: .get, uri: "/ui/../../etc/passwd", status: .notFound, mentions: []),
        ]
        // Credentials on every surface.
        for (method, uri) in [
            (HTTPRequest.Method.post, txt2img), (.post, img2imgURI), (.post, options), (.get, options), (.post, generations), (.post, jobs),
            (.get, "/v1/models"), (.get, "/metrics"), (.post, "/sdapi/v1/interrupt"), (.get, "/nope"),
        ] {
            cases.append(RouteCase(name: "no token \(uri)", method: method, uri: uri, body: a1111([:]), authorization: "", status: .unauthorized, mentions: ["authorization"]))
            cases.append(RouteCase(name: "wrong token \(uri)", method: method, uri: uri, body: a1111([:]), authorization: "Bearer nope", status: .unauthorized, mentions: ["invalid token"]))
        }
        // A wrong method on every route: 405 with Allow.
        var byPath: [String: Set<String>] = [:]
        for route in router.routes {
            let path = "/" + route.path.components.map { element -> String in
                let text = element.description
                return text.hasPrefix(":") || text.hasPrefix("{") ? "x" : text
            }.joined(separator: "/")
            byPath[path, default: []].insert(route.method.rawValue)
        }
        for (path, methods) in byPath.sorted(by: { $0.key < $1.key }) {
            let wrong = ["PUT", "PATCH", "DELETE", "POST", "GET"].first { !methods.contains($0) }!
            cases.append(
                RouteCase(
                    name: "\(wrong) \(path)", method: HTTPRequest.Method(wrong)!, uri: path, status: .methodNotAllowed,
                    mentions: ["not allowed", methods.sorted().joined(separator: ", ")]))
        }
        XCTAssertGreaterThanOrEqual(cases.count, 150, "the corpus has \(cases.count) requests")

        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let application = Application(router: router, services: [engine], logger: logger)
        let corpus = cases
        try await application.test(.router) { client in
            let auth: HTTPFields = [.authorization: "Bearer \(token)"]
            // /healthz keeps answering within a second all through the corpus.
            let done = FinishedCount()
            let watcher = Task {
                var slowest = 0.0
                while done.value == 0 {
                    let started = Date()
                    let response = try await client.execute(uri: "/healthz", method: .get)
                    XCTAssertEqual(response.status, .ok)
                    slowest = max(slowest, Date().timeIntervalSince(started))
                    try await Task.sleep(for: .milliseconds(10))
                }
                return slowest
            }
            for testCase in corpus {
                var headers: HTTPFields = auth
                headers[.contentType] = "application/json"
                if let authorization = testCase.authorization {
                    headers[.authorization] = authorization.isEmpty ? nil : authorization
                }
                let response = try await client.execute(uri: testCase.uri, method: testCase.method, headers: headers, body: testCase.body)
                let text = String(buffer: response.body).prefix(300)
                XCTAssertEqual(response.status, testCase.status, "\(testCase.name): \(text)")
                XCTAssertTrue((400..<500).contains(Int(response.status.code)), "\(testCase.name): \(response.status)")
                XCTAssertEqual(response.headers[.contentType], "application/json", testCase.name)
                let message = API.message(response)
                XCTAssertFalse(message.isEmpty, "\(testCase.name): no JSON error message in \(text)")
                XCTAssertEqual(response.body.jsonObject["detail"] as? String, message, testCase.name)
                for fragment in testCase.mentions {
                    XCTAssertTrue(
                        message.lowercased().contains(fragment.lowercased()), "\(testCase.name): '\(message)' does not mention '\(fragment)'")
                }
                if testCase.status == .methodNotAllowed { XCTAssertNotNil(response.headers[.allow], testCase.name) }
            }
            done.increment()
            let slowest = try await watcher.value
            XCTAssertLessThan(slowest, 1, "the slowest /healthz during the corpus took \(slowest) s")
            let counts = try await engine.counts()
            XCTAssertEqual(counts, [:], "no bad request became a job")
        }
    }
}

