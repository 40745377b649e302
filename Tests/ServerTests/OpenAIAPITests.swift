import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Serving
import XCTest

/// OpenAI-compatible `POST /v1/images/generations`, as the official clients call it.
final class OpenAIAPITests: XCTestCase {
    /// What `openai` (Python, 1.x) sends for
    /// `client.images.generate(model="dall-e-2", prompt=..., n=2, size="32x32", response_format="b64_json")`:
    /// the given arguments in the SDK's parameter order, compact JSON, its headers.
    static let pythonClientBody =
        #"{"prompt":"a red circle on a blue background","model":"dall-e-2","n":2,"response_format":"b64_json","size":"32x32"}"#
    static let pythonClientHeaders: HTTPFields = [
        .contentType: "application/json", .accept: "application/json", .userAgent: "OpenAI/Python 1.54.4",
        .authorization: "Bearer sk-not-checked-when-auth-is-off", HTTPField.Name("X-Stainless-Lang")!: "python",
        HTTPField.Name("X-Stainless-Package-Version")!: "1.54.4", HTTPField.Name("X-Stainless-Retry-Count")!: "0",
    ]

    func testThePythonClientsB64Request() async throws {
        try await TestServer.withApplication { client in
            let before = Int(Date().timeIntervalSince1970)
            let response = try await client.execute(
                uri: "/v1/images/generations", method: .post, headers: Self.pythonClientHeaders,
                body: ByteBuffer(string: Self.pythonClientBody))
            XCTAssertEqual(response.status, .ok, String(buffer: response.body))
            XCTAssertEqual(response.headers[.contentType], "application/json")
            let body = response.body.jsonObject
            let created = try XCTUnwrap(body["created"] as? Int)
            XCTAssertTrue((before - 1...Int(Date().timeIntervalSince1970) + 1).contains(created), "\(created)")
            let data = try XCTUnwrap(body["data"] as? [[String: Any]])
            XCTAssertEqual(data.count, 2)
            var images: [Data] = []
            for item in data {
                XCTAssertNil(item["url"], "b64_json responses carry no url")
                let encoded = try XCTUnwrap(item["b64_json"] as? String)
                let png = try XCTUnwrap(Data(base64Encoded: encoded))
                XCTAssertEqual(PNG.size(png)?.width, 32)
                XCTAssertEqual(PNG.size(png)?.height, 32)
                images.append(png)
            }
            XCTAssertNotEqual(images[0], images[1])
        }
    }

    func testURLResponsesPointAtTheNativeImageRoutes() async throws {
        try await TestServer.withApplication { client in
            let response = try await client.execute(
                uri: "/v1/images/generations", method: .post, headers: [.contentType: "application/json"],
                body: TestServer.json(["prompt": "a square", "size": "32x48", "response_format": "url", "model": "sd2"]))
            XCTAssertEqual(response.status, .ok, String(buffer: response.body))
            let data = try XCTUnwrap(response.body.jsonObject["data"] as? [[String: Any]])
            XCTAssertEqual(data.count, 1, "n defaults to 1")
            let url = try XCTUnwrap(data.first?["url"] as? String)
            XCTAssertTrue(url.hasPrefix("/v1/images/jobs/") && url.hasSuffix("/images/0"), url)
            let image = try await client.execute(uri: url, method: .get)
            XCTAssertEqual(image.status, .ok)
            XCTAssertEqual(PNG.size(Data(buffer: image.body))?.width, 32)
            XCTAssertEqual(PNG.size(Data(buffer: image.body))?.height, 48)
            // "sd2" names a checkpoint here, so that model ran.
            let jobID = url.split(separator: "/")[3]
            let job = try await API.status(client, String(jobID))
            XCTAssertEqual((job["request"] as? [String: Any])?["model"] as? String, "sd2")
        }
    }

    func testBadRequestsAre400WithOpenAIStyleErrors() async throws {
        try await TestServer.withApplication { client in
            let cases: [(String, String, String)] = [
                (#"{"prompt":"x","size":"big"}"#, "size", "malformed size"),
                (#"{"prompt":"x","size":"32"}"#, "size", "one number"),
                (#"{"prompt":"x","size":"32x"}"#, "size", "missing height"),
                (#"{"prompt":"x","size":"0x0"}"#, "width", "zero"),
                (#"{"prompt":"x","size":"4096x4096"}"#, "width", "too large"),
                (#"{"prompt":"x","size":"32x32","response_format":"jpeg"}"#, "response_format", "format"),
                (#"{"prompt":"x","size":"32x32","output_format":"webp"}"#, "webp", "output format"),
                (#"{"prompt":"x","size":"32x32","n":100}"#, "number of images", "n"),
                (#"{"prompt":"","size":"32x32"}"#, "prompt", "empty prompt"),
                (#"{"size":"32x32"}"#, "prompt", "missing prompt"),
                (#"{"prompt":"x","n":"two"}"#, "n", "wrong type"),
                ("not json", "malformed", "not JSON"),
            ]
            for (body, fragment, name) in cases {
                let response = try await client.execute(
                    uri: "/v1/images/generations", method: .post, headers: [.contentType: "application/json"],
                    body: ByteBuffer(string: body))
                XCTAssertEqual(response.status, .badRequest, name)
                let error = response.body.jsonObject["error"] as? [String: Any]
                XCTAssertEqual(error?["type"] as? String, "invalid_request", name)
                let message = error?["message"] as? String ?? ""
                XCTAssertTrue(message.contains(fragment), "\(name): \(message)")
            }
        }
    }
}
