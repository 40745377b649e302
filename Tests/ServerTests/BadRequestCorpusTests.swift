import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
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
                mentions: ["width must be between 8 and 2048"]),
            Case(
                name: "zero height", body: job(["height": 0]), status: .badRequest,
                mentions: ["height must be between 8 and 2048"]),
            Case(
                name: "huge width", body: job(["width": 1_000_000]), status: .badRequest,
                mentions: ["width must be between 8 and 2048"]),
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
}
