import Foundation
import Hummingbird

/// `GET /openapi.json`: the OpenAPI 3.1 description of the native API (Resources/openapi.json, written by hand
/// and checked against the router and the request decoders by the tests).
struct OpenAPIDocument {
    static let path = "openapi.json"

    func register(on router: Router<ServerRequestContext>) {
        router.get(RouterPath(Self.path)) { _, _ in try Self.response() }
    }

    /// The document's bytes as bundled with the server.
    static func data() throws -> Data {
        guard let url = Bundle.module.url(forResource: "Resources/\(path)", withExtension: nil) else {
            throw APIError.notFound("the OpenAPI document is not bundled with this build")
        }
        return try Data(contentsOf: url)
    }

    static func response() throws -> Response {
        Response(
            status: .ok, headers: [.contentType: "application/json", .cacheControl: "no-cache"],
            body: .init(byteBuffer: ByteBuffer(bytes: try data())))
    }
}
