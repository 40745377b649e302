import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Server
import Serving
import XCTest

/// Bearer-token authentication: every API route needs a valid token; only health, readiness and the static
/// web page and OpenAPI document are open. AUTOMATIC1111 clients' HTTP Basic is accepted with the token as
/// password.
final class AuthTests: XCTestCase {
    static let token = "s3cret-token"
    static var server: ServerConfiguration {
        var server = ServerConfiguration()
        server.tokens = [token, "second-token"]
        return server
    }

    /// The registered routes with their parameters filled in (read from the router, so new routes are covered).
    static func routes() throws -> [(method: HTTPRequest.Method, uri: String)] {
        let router = ServerApplication.router(engine: TestServer.engine(), configuration: server)
        return try RouterRoutes.list(router).map { route in
            let uri = route.path.replacingOccurrences(of: #"\{[^}]*\}"#, with: "0", options: .regularExpression)
            return (HTTPRequest.Method(route.method)!, uri)
        }
    }

    /// Open without a token: health and readiness, and static files with no data in them (the page asks for the
    /// token itself).
    static func isOpen(_ uri: String) -> Bool {
        ["/healthz", "/readyz", "/", "/openapi.json"].contains(uri) || uri.hasPrefix("/ui/")
    }

    func testEveryAPIRouteNeedsAToken() async throws {
        let routes = try Self.routes()
        XCTAssertGreaterThan(routes.count, 15, "\(routes)")
        for path in ["/v1/images/jobs", "/v1/images/generations", "/metrics", "/v1/models"] {
            XCTAssertTrue(routes.contains { $0.uri == path }, path)
        }
        try await TestServer.withApplication(server: Self.server) { client in
            for (method, uri) in routes {
                let anonymous = try await client.execute(uri: uri, method: method)
                if Self.isOpen(uri) {
                    XCTAssertTrue(
                        method == .get && !uri.hasPrefix("/v1") && !uri.hasPrefix("/sdapi") && uri != "/metrics",
                        "\(method) \(uri)")
                    XCTAssertEqual(anonymous.status, .ok, "\(method) \(uri)")
                    continue
                }
                XCTAssertEqual(anonymous.status, .unauthorized, "\(method) \(uri)")
                XCTAssertEqual(anonymous.headers[.wwwAuthenticate], "Bearer", "\(method) \(uri)")
                XCTAssertEqual(anonymous.headers[.contentType], "application/json", "\(method) \(uri)")
                let error = anonymous.body.jsonObject["error"] as? [String: Any]
                XCTAssertEqual(error?["type"] as? String, "unauthorized")
                XCTAssertTrue((error?["message"] as? String ?? "").contains("Authorization"), "\(method) \(uri)")
                XCTAssertEqual(
                    anonymous.body.jsonObject["detail"] as? String, error?["message"] as? String, "A1111 clients read detail")

                let wrong = try await client.execute(uri: uri, method: method, headers: [.authorization: "Bearer not-the-token"])
                XCTAssertEqual(wrong.status, .unauthorized, "\(method) \(uri)")
                XCTAssertTrue(API.message(wrong).contains("invalid token"), API.message(wrong))

                // A malformed body: past authentication, but never a generation that would run.
                let authorized = try await client.execute(
                    uri: uri, method: method, headers: [.authorization: "Bearer \(Self.token)"],
                    body: method == .post ? ByteBuffer(string: "{") : nil)
                XCTAssertNotEqual(authorized.status, .unauthorized, "\(method) \(uri)")
                XCTAssertLessThan(authorized.status.code, 500, "\(method) \(uri): \(String(buffer: authorized.body).prefix(200))")
            }
        }
    }

    func testAcceptedAndRefusedCredentials() async throws {
        @Sendable func basic(_ credentials: String) -> String { "Basic " + Data(credentials.utf8).base64EncodedString() }
        try await TestServer.withApplication(server: Self.server) { client in
            let cases: [(String, HTTPResponse.Status)] = [
                ("Bearer \(Self.token)", .ok), ("Bearer second-token", .ok), ("Bearer  \(Self.token) ", .ok),
                (basic("automatic:\(Self.token)"), .ok), (basic(":\(Self.token)"), .ok),
                ("Bearer", .unauthorized), ("Bearer ", .unauthorized), ("Bearer \(Self.token)x", .unauthorized),
                ("Token \(Self.token)", .unauthorized), (Self.token, .unauthorized),
                (basic("\(Self.token):wrong"), .unauthorized), (basic(Self.token), .unauthorized),
                ("Basic !!!notbase64", .unauthorized),
                (basic("user:"), .unauthorized),
            ]
            for (header, status) in cases {
                let response = try await client.execute(uri: "/v1/models", method: .get, headers: [.authorization: header])
                XCTAssertEqual(response.status, status, header)
            }
            // A whole job with the token: submit, follow, image.
            let submitted = try await API.submit(
                client, ["prompt": "x", "width": 32, "height": 32, "steps": 2], headers: [.authorization: "Bearer \(Self.token)"])
            XCTAssertEqual(submitted.status, .accepted)
            let id = try XCTUnwrap(submitted.body.jsonObject["id"] as? String)
            let events = try await API.events(client, id, headers: [.authorization: basic("a1111:\(Self.token)")])
            XCTAssertEqual(events.last?.event, "completed")
            let image = try await client.execute(
                uri: "/v1/images/jobs/\(id)/images/0", method: .get, headers: [.authorization: "Bearer \(Self.token)"])
            XCTAssertEqual(image.status, .ok)
        }
    }

    func testWithoutTokensNothingIsChecked() async throws {
        try await TestServer.withApplication { client in
            for header in [nil, "Bearer anything", "Basic !!!"] {
                let headers: HTTPFields = header.map { [.authorization: $0] } ?? [:]
                let response = try await client.execute(uri: "/v1/models", method: .get, headers: headers)
                XCTAssertEqual(response.status, .ok, header ?? "no header")
            }
        }
    }
}
