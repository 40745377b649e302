import HTTPTypes
import Hummingbird

/// Optional bearer-token authentication on every route but `/healthz` and `/readyz`.
///
/// `Authorization: Bearer <token>`; AUTOMATIC1111 clients configured with `--api-auth user:password` send
/// HTTP Basic, which is accepted when the password is a valid token.
struct AuthMiddleware<Context: RequestContext>: RouterMiddleware {
    let tokens: Set<String>
    static var openPaths: Set<String> { ["/healthz", "/readyz"] }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        if tokens.isEmpty || Self.openPaths.contains(request.uri.path) { return try await next(request, context) }
        guard let header = request.headers[.authorization] else {
            throw APIError(.unauthorized, "unauthorized", "missing Authorization header (Bearer token)", headers: [.wwwAuthenticate: "Bearer"])
        }
        if header.hasPrefix("Bearer "), tokens.contains(String(header.dropFirst("Bearer ".count)).trimmingCharacters(in: .whitespaces)) {
            return try await next(request, context)
        }
        if header.hasPrefix("Basic "), let decoded = Base64.decodeString(String(header.dropFirst("Basic ".count))),
            let colon = decoded.firstIndex(of: ":"), tokens.contains(String(decoded[decoded.index(after: colon)...]))
        {
            return try await next(request, context)
        }
        throw APIError(.unauthorized, "unauthorized", "invalid token", headers: [.wwwAuthenticate: "Bearer"])
    }
}

/// Base64 helpers (Foundation's, behind a name that says what they are for).
enum Base64 {
    static func decodeString(_ text: String) -> String? {
        guard let data = Data(base64Encoded: text.trimmingCharacters(in: .whitespaces)) else { return nil }
        return String(data: data, encoding: .utf8)
    }

    /// Decodes a base64 string or a `data:` URL (what web pages and A1111 clients send).
    static func decodeImage(_ text: String) -> Data? {
        var payload = Substring(text)
        if payload.hasPrefix("data:"), let comma = payload.firstIndex(of: ",") { payload = payload[payload.index(after: comma)...] }
        return Data(base64Encoded: String(payload).trimmingCharacters(in: .whitespacesAndNewlines), options: .ignoreUnknownCharacters)
    }
}

import Foundation
