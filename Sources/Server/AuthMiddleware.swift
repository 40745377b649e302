import HTTPTypes
import Hummingbird

/// Optional bearer-token authentication on every API route. Open: `/healthz`, `/readyz`, and the web page
/// and the OpenAPI document (static, no secrets; the page asks for the token and sends it with its calls).
///
/// `Authorization: Bearer <token>`; AUTOMATIC1111 clients configured with `--api-auth user:password` send
/// HTTP Basic, which is accepted when the password is a valid token. A job's event stream
/// (`GET /v1/images/jobs/{id}/events`) also accepts `?access_token=<token>` when no Authorization header is
/// sent, because browsers' `EventSource` cannot send headers.
struct AuthMiddleware<Context: RequestContext>: RouterMiddleware {
    let tokens: Set<String>
    static var openPaths: Set<String> {
        ["/healthz", "/readyz", "/", "/openapi.json", "/ui/index.html", "/ui/app.js", "/ui/style.css"]
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        if tokens.isEmpty || Self.openPaths.contains(request.uri.path) { return try await next(request, context) }
        guard let header = request.headers[.authorization] else {
            if Self.isEventStream(request), let token = request.uri.queryParameters["access_token"] {
                guard tokens.contains(String(token)) else {
                    throw APIError(.unauthorized, "unauthorized", "invalid access_token", headers: [.wwwAuthenticate: "Bearer"])
                }
                return try await next(request, context)
            }
            throw APIError(.unauthorized, "unauthorized", "missing Authorization header (Bearer token)", headers: [.wwwAuthenticate: "Bearer"])
        }
        // The scheme name is case-insensitive (RFC 7235).
        let scheme = header.prefix { $0 != " " }.lowercased()
        let credentials = header.drop { $0 != " " }.trimmingCharacters(in: .whitespaces)
        if scheme == "bearer", tokens.contains(credentials) {
            return try await next(request, context)
        }
        if scheme == "basic", let decoded = Base64.decodeString(credentials),
            let colon = decoded.firstIndex(of: ":"), tokens.contains(String(decoded[decoded.index(after: colon)...]))
        {
            return try await next(request, context)
        }
        throw APIError(.unauthorized, "unauthorized", "invalid token", headers: [.wwwAuthenticate: "Bearer"])
    }

    /// `GET /v1/images/jobs/{id}/events`: the one route that takes its token from the query string too.
    static func isEventStream(_ request: Request) -> Bool {
        let components = request.uri.path.split(separator: "/", omittingEmptySubsequences: false)
        return request.method == .get && components.count == 6 && components[0].isEmpty && components[1] == "v1"
            && components[2] == "images" && components[3] == "jobs" && !components[4].isEmpty && components[5] == "events"
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
