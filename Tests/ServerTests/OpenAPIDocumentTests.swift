import Foundation
import Hummingbird
import HummingbirdTesting
import OpenAPIKit
import Server
import Serving
import XCTest

/// The committed OpenAPI document (Sources/Server/Resources/openapi.json) against OpenAPIKit's validation and
/// against the server itself: routes, accepted fields, status codes and response shapes.
final class OpenAPIDocumentTests: XCTestCase {
    /// One operation of the document, read as plain JSON.
    struct Operation: @unchecked Sendable {
        let path: String
        let method: String
        let body: [String: Any]

        var responses: [String: Any] { body["responses"] as? [String: Any] ?? [:] }
        var route: RegisteredRoute { RegisteredRoute(method: method, path: path) }
    }

    static let data: Data = {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
            .appendingPathComponent("Sources/Server/Resources/openapi.json")
        return (try? Data(contentsOf: url)) ?? Data()
    }()

    nonisolated(unsafe) static let document: [String: Any] =
        (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] ?? [:]

    static let operations: [Operation] = {
        let methods = ["get", "put", "post", "delete", "patch", "head", "options"]
        let paths = document["paths"] as? [String: [String: Any]] ?? [:]
        return paths.flatMap { path, item in
            methods.compactMap { method in
                (item[method] as? [String: Any]).map { Operation(path: path, method: method.uppercased(), body: $0) }
            }
        }.sorted { $0.route < $1.route }
    }()

    nonisolated(unsafe) static let shape = JSONShape(document: document)

    /// The routes the document must cover: the native and OpenAI API under /v1 and the operations routes.
    static func isAPIRoute(_ path: String) -> Bool {
        path.hasPrefix("/v1/") || ["/healthz", "/readyz", "/metrics", "/openapi.json"].contains(path)
    }

    // MARK: - The document itself

    func testDecodesAndValidatesWithOpenAPIKit() throws {
        let document = try JSONDecoder().decode(OpenAPI.Document.self, from: Self.data)
        XCTAssertEqual(document.openAPIVersion, .v3_1_0)
        let validator = Validator().validating(
            \.documentContainsPaths, \.pathsContainOperations, \.operationsContainResponses, \.pathParametersAreDefined,
            \.schemaComponentsAreDefined)
        let warnings = try document.validate(using: validator, strict: true)
        XCTAssertTrue(warnings.isEmpty, "OpenAPIKit warnings: \(warnings)")
        // Every reference resolves, and every operation has an id and a summary.
        let resolved = try document.locallyDereferenced().resolved()
        XCTAssertEqual(resolved.endpoints.count, Self.operations.count)
        for endpoint in resolved.endpoints {
            XCTAssertNotNil(endpoint.operationId, "\(endpoint.method.rawValue) \(endpoint.path.rawValue)")
            XCTAssertNotNil(endpoint.endpointSummary, "\(endpoint.method.rawValue) \(endpoint.path.rawValue)")
        }
        // What it documents for the job request matches the decoder's strictness.
        let request = try XCTUnwrap(document.components.schemas["JobRequest"])
        XCTAssertEqual(request.objectContext?.additionalProperties?.booleanValue, false)
    }

    func testServedDocumentIsTheCommittedOne() async throws {
        try await TestServer.withApplication { client in
            let response = try await client.execute(uri: "/openapi.json", method: .get)
            XCTAssertEqual(response.status, .ok)
            XCTAssertEqual(response.headers[.contentType], "application/json")
            XCTAssertEqual(Data(buffer: response.body), Self.data)
        }
    }

    func testEveryRouteIsDocumentedAndEveryDocumentedRouteIsRegistered() throws {
        let router = ServerApplication.router(engine: TestServer.engine(), configuration: ServerConfiguration())
        let registered = try RouterRoutes.list(router)
        XCTAssertTrue(
            registered.contains(RegisteredRoute(method: "GET", path: "/v1/images/jobs/{id}/events")),
            "route reflection: \(registered)")
        let api = Set(registered.filter { Self.isAPIRoute($0.path) })
        let documented = Set(Self.operations.map(\.route))
        XCTAssertEqual(api.subtracting(documented).sorted(), [], "routes the server registers but the document lacks")
        XCTAssertEqual(
            documented.subtracting(registered).sorted(), [], "routes the document lists but the server does not register")
    }

    func testExamplesMatchTheirSchemas() throws {
        var checked = 0
        for operation in Self.operations {
            var media: [(String, [String: Any])] = []
            if let content = (operation.body["requestBody"] as? [String: Any])?["content"] as? [String: Any] {
                media += content.compactMap { type, value in
                    (value as? [String: Any]).map { ("\(operation.route) request \(type)", $0) }
                }
            }
            for (status, response) in operation.responses {
                let response = resolve(response as? [String: Any] ?? [:])
                for (type, value) in response["content"] as? [String: Any] ?? [:] {
                    if let value = value as? [String: Any] { media.append(("\(operation.route) \(status) \(type)", value)) }
                }
            }
            for (name, entry) in media {
                guard let schema = entry["schema"] as? [String: Any] else { continue }
                var examples: [(String, Any)] = entry["example"].map { [("example", $0)] } ?? []
                for (key, example) in entry["examples"] as? [String: Any] ?? [:] {
                    if let value = (example as? [String: Any])?["value"] { examples.append((key, value)) }
                }
                for (key, value) in examples {
                    XCTAssertEqual(Self.shape.problems(value, against: schema), [], "\(name) example '\(key)'")
                    checked += 1
                }
            }
        }
        XCTAssertGreaterThan(checked, 25)
    }

    // MARK: - The document against the server

    /// The job request schema lists exactly the fields the server accepts (top level, `loras[]`, `controls[]`),
    /// read from the 400 message that names them.
    func testJobRequestSchemaListsTheFieldsTheServerAccepts() async throws {
        try await TestServer.withApplication { client in
            let schemas = (Self.document["components"] as? [String: Any])?["schemas"] as? [String: [String: Any]] ?? [:]
            let cases: [(body: [String: Any], field: String, schema: String)] = [
                (["prompt": "x", "zzz": 1], "zzz", "JobRequest"),
                (["prompt": "x", "loras": [["name": "sd1-lora", "zzz": 1]]], "loras[0].zzz", "LoRARequest"),
                (
                    ["prompt": "x", "controls": [["model": "sd1-controlnet", "image": "", "zzz": 1]]], "controls[0].zzz",
                    "ControlRequest"
                ),
            ]
            for (body, field, schema) in cases {
                let documented = Set((schemas[schema]?["properties"] as? [String: Any] ?? [:]).keys)
                XCTAssertFalse(documented.isEmpty, schema)
                let response = try await client.execute(
                    uri: "/v1/images/jobs", method: .post, headers: [.contentType: "application/json"],
                    body: TestServer.json(body))
                XCTAssertEqual(response.status, .badRequest)
                let message = (response.body.jsonObject["error"] as? [String: Any])?["message"] as? String ?? ""
                XCTAssertTrue(message.hasPrefix("unknown field: \(field); allowed: "), message)
                let allowed = Set(message.components(separatedBy: "allowed: ").last?.components(separatedBy: ", ") ?? [])
                XCTAssertEqual(allowed, documented, "\(schema) vs the server's fields")
                XCTAssertEqual(Self.shape.problems(response.body.jsonObject, against: ["$ref": "#/components/schemas/Error"]), [])
            }
        }
    }

    func testRequestExamplesAreAcceptedAndAnExtraFieldIsRejected() async throws {
        let submit = try XCTUnwrap(Self.operations.first { $0.route == RegisteredRoute(method: "POST", path: "/v1/images/jobs") })
        XCTAssertGreaterThanOrEqual(Self.requestExamples(submit).count, 4)
        try await TestServer.withApplication { client in
            let examples = Self.requestExamples(submit)
            for (name, example) in examples {
                let body = try XCTUnwrap(example as? [String: Any], name)
                let accepted = try await client.execute(
                    uri: "/v1/images/jobs", method: .post, headers: [.contentType: "application/json"],
                    body: TestServer.json(body))
                XCTAssertEqual(accepted.status, .accepted, "example '\(name)': \(String(buffer: accepted.body))")
                XCTAssertEqual(
                    Self.shape.problems(accepted.body.jsonObject, against: ["$ref": "#/components/schemas/Job"]), [], name)
                if let id = accepted.body.jsonObject["id"] as? String {
                    XCTAssertEqual(accepted.headers[.location], "/v1/images/jobs/\(id)")
                    _ = try await client.execute(uri: "/v1/images/jobs/\(id)/cancel", method: .post)
                }

                var extra = body
                extra["stesp"] = 30
                let rejected = try await client.execute(
                    uri: "/v1/images/jobs", method: .post, headers: [.contentType: "application/json"],
                    body: TestServer.json(extra))
                XCTAssertEqual(rejected.status, .badRequest, "example '\(name)' with an extra field")
                let error = rejected.body.jsonObject
                XCTAssertEqual(Self.shape.problems(error, against: ["$ref": "#/components/schemas/Error"]), [], name)
                XCTAssertTrue((error["detail"] as? String ?? "").contains("stesp"), "\(error)")
            }
        }
    }

    /// Every documented operation, called for real, answers with a status it documents and a body of the
    /// documented shape; job routes also for an unknown job (404).
    func testEveryOperationAnswersWithADocumentedStatusAndShape() async throws {
        try await TestServer.withApplication { client in
            let jobID = try await Self.finishedJob(client)
            for operation in Self.operations {
                for id in operation.path.contains("{id}") ? [jobID, "no-such-job"] : [jobID] {
                    let uri = operation.path.replacingOccurrences(of: "{id}", with: id).replacingOccurrences(
                        of: "{index}", with: "0")
                    let example = Self.probeBodies[operation.route.description] ?? Self.requestExamples(operation).first?.value
                    let response = try await client.execute(
                        uri: uri, method: HTTPRequest.Method(operation.method)!, headers: [.contentType: "application/json"],
                        body: example.map { TestServer.json($0) })
                    let status = "\(response.status.code)"
                    let what = "\(operation.method) \(uri) -> \(status): \(String(buffer: response.body).prefix(300))"
                    XCTAssertNotNil(operation.responses[status], "undocumented status: \(what)")
                    if id != jobID { XCTAssertEqual(response.status, .notFound, what) }
                    Self.checkBody(response, documented: operation.responses[status], what: what)
                    if operation.route == RegisteredRoute(method: "POST", path: "/v1/images/jobs"),
                        let created = response.body.jsonObject["id"] as? String
                    {
                        _ = try await client.execute(uri: "/v1/images/jobs/\(created)/cancel", method: .post)
                    }
                }
            }
        }
    }

    /// With tokens configured, every operation that the document secures answers 401 (documented, with the
    /// error body) without one, and the ones it marks open do not.
    func testSecuredOperationsDocumentAndAnswer401() async throws {
        var configuration = ServerConfiguration()
        configuration.tokens = ["token"]
        try await TestServer.withApplication(server: configuration) { client in
            let global = Self.document["security"] as? [Any] ?? []
            for operation in Self.operations {
                let uri = operation.path.replacingOccurrences(of: "{id}", with: "some-job").replacingOccurrences(
                    of: "{index}", with: "0")
                let response = try await client.execute(uri: uri, method: HTTPRequest.Method(operation.method)!)
                let secured = !((operation.body["security"] as? [Any]) ?? global).isEmpty
                if secured {
                    XCTAssertEqual(response.status, .unauthorized, "\(operation.route)")
                    XCTAssertNotNil(operation.responses["401"], "\(operation.route) does not document 401")
                    XCTAssertEqual(response.headers[.wwwAuthenticate], "Bearer")
                    Self.checkBody(response, documented: operation.responses["401"], what: "\(operation.route) 401")
                } else {
                    XCTAssertNotEqual(response.status, .unauthorized, "\(operation.route) is documented as open")
                }
            }
        }
    }

    // MARK: - Helpers

    /// Bodies for synchronous routes that finish at once on the fixture models (the documented examples use
    /// realistic sizes; the schema test checks them).
    nonisolated(unsafe) static let probeBodies: [String: Any] = [
        "POST /v1/images/generations": ["prompt": "a dot", "size": "32x32"]
    ]

    /// The request body examples of an operation (name, value).
    static func requestExamples(_ operation: Operation) -> [(name: String, value: Any)] {
        let content =
            ((operation.body["requestBody"] as? [String: Any])?["content"] as? [String: Any])?["application/json"]
            as? [String: Any]
        let examples = content?["examples"] as? [String: Any] ?? [:]
        return examples.keys.sorted().compactMap { key in ((examples[key] as? [String: Any])?["value"]).map { (key, $0) } }
    }

    /// A small job run to completion, for the routes that need one.
    static func finishedJob(_ client: some TestClientProtocol) async throws -> String {
        let submitted = try await client.execute(
            uri: "/v1/images/jobs", method: .post, headers: [.contentType: "application/json"],
            body: TestServer.json(["prompt": "a dot", "width": 32, "height": 32, "steps": 2, "seed": 1]))
        let id = try XCTUnwrap(submitted.body.jsonObject["id"] as? String, String(buffer: submitted.body))
        // A generous deadline (the job takes well under a second alone; a loaded 2-core machine may be far
        // slower): a job that does not succeed within it fails the test rather than skipping it.
        let deadline = Date().addingTimeInterval(120)
        var status: String?
        var last: [String: Any] = [:]
        while Date() < deadline {
            last = try await client.execute(uri: "/v1/images/jobs/\(id)", method: .get).body.jsonObject
            status = last["status"] as? String
            if status == "succeeded" { return id }
            if status == "failed" || status == "cancelled" { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        XCTFail("the fixture job \(id) did not succeed within 120 s: status \(status ?? "none"), \(last["error"] ?? "")")
        throw FixtureJobFailed(id: id, status: status)
    }

    /// Checks a response against the documented response: its content type and, for JSON, the schema.
    static func checkBody(_ response: TestResponse, documented: Any?, what: String) {
        guard let documented = documented as? [String: Any] else { return }
        let content = resolve(documented)["content"] as? [String: Any] ?? [:]
        guard !content.isEmpty else { return }
        let type = response.headers[.contentType] ?? ""
        let media = content.first { type.hasPrefix($0.key) }
        XCTAssertNotNil(media, "content type '\(type)' is not documented: \(what)")
        guard let media, media.key == "application/json",
            let schema = (media.value as? [String: Any])?["schema"] as? [String: Any]
        else {
            if type == "image/png" {
                XCTAssertEqual(Array(response.body.readableBytesView.prefix(4)), [0x89, 0x50, 0x4E, 0x47], what)
            }
            return
        }
        guard let value = try? JSONSerialization.jsonObject(with: Data(buffer: response.body), options: [.fragmentsAllowed])
        else {
            return XCTFail("not JSON: \(what)")
        }
        XCTAssertEqual(shape.problems(value, against: schema), [], what)
    }

    /// Follows a `#/components/responses/...` reference.
    static func resolve(_ response: [String: Any]) -> [String: Any] {
        guard let reference = response["$ref"] as? String else { return response }
        let name = reference.replacingOccurrences(of: "#/components/responses/", with: "")
        return ((document["components"] as? [String: Any])?["responses"] as? [String: Any])?[name] as? [String: Any] ?? [:]
    }

    private func resolve(_ response: [String: Any]) -> [String: Any] { Self.resolve(response) }
}

/// The small job some operations need did not succeed (the test fails; it never skips).
private struct FixtureJobFailed: Error {
    let id: String
    let status: String?
}
