import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import Serving

/// How large a request body each route reads. Only the routes that carry images (base64 in JSON) get the large
/// limit; JSON-only routes get small ones, and routes that take no body the smallest. A declared `Content-Length`
/// over the limit is refused before the body is read (`BodyLimitMiddleware`); a chunked body is cut off at the limit
/// by `BodyLimits.read`.
enum BodyLimits {
    /// Native jobs, A1111 txt2img / img2img: an init image and ControlNet images, base64-encoded.
    static let images = 64 << 20
    /// OpenAI `images/generations`: a prompt and a few small fields.
    static let openAI = 256 << 10
    /// A1111 `POST /options`: a handful of known settings.
    static let options = 64 << 10
    /// Every other route (they read no body, or nothing worth more).
    static let small = 16 << 10

    static func limit(method: HTTPRequest.Method, path: String) -> Int {
        var path = Substring(path)
        while path.count > 1, path.hasSuffix("/") { path = path.dropLast() }
        guard method == .post || method == .put || method == .patch else { return small }
        switch path {
        case "/v1/images/jobs", "/sdapi/v1/txt2img", "/sdapi/v1/img2img": return images
        case "/v1/images/generations": return openAI
        case "/sdapi/v1/options": return options
        default: return small
        }
    }

    /// The request's body, read up to its route's limit (413 beyond it).
    static func read(_ request: Request, context: ServerRequestContext) async throws -> ByteBuffer {
        let limit = limit(method: request.method, path: request.uri.path)
        do {
            return try await request.body.collect(upTo: limit)
        } catch let error as any HTTPResponseError where error.status == .contentTooLarge {
            throw tooLarge(limit)
        }
    }

    static func tooLarge(_ limit: Int) -> APIError {
        APIError(.contentTooLarge, "too_large", "the request body is larger than this route's limit (\(limit) bytes)")
    }
}

/// Refuses a body whose declared length is over its route's limit, before any of it is read.
struct BodyLimitMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        if let declared = request.headers[.contentLength] {
            let limit = BodyLimits.limit(method: request.method, path: request.uri.path)
            // A length too long to be a number is over every limit.
            guard let length = Int(declared.trimmingCharacters(in: .whitespaces)), length <= limit else {
                throw BodyLimits.tooLarge(limit)
            }
        }
        return try await next(request, context)
    }
}

/// What the router answers when no route takes the request: 405 with `Allow` when the path is a route's and only
/// the method is wrong, else a JSON 404. Added to the router after every route, so it wraps only the router's
/// not-found responder.
struct RouteFallbackMiddleware<Context: RequestContext>: RouterMiddleware {
    struct Route: Sendable {
        let components: [RouterPath.Element]
        let method: HTTPRequest.Method
    }
    let routes: [Route]

    init(routes: [Router<Context>.RouteDescription]) {
        self.routes = routes.map { Route(components: $0.path.components, method: $0.method) }
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as HTTPError where error.status == .notFound {
            let path = request.uri.path
            let shown = path.count > 200 ? path.prefix(200) + "..." : Substring(path)
            let allowed = methods(for: path)
            guard !allowed.isEmpty else {
                throw APIError.notFound("no route \(request.method.rawValue) \(shown); see /openapi.json")
            }
            let list = allowed.map(\.rawValue).joined(separator: ", ")
            throw APIError(
                .methodNotAllowed, "method_not_allowed", "\(request.method.rawValue) is not allowed on \(shown); allowed: \(list)",
                headers: [.allow: list])
        }
    }

    /// The methods the router has for `path` (sorted, no duplicates).
    func methods(for path: String) -> [HTTPRequest.Method] {
        let segments = path.split(separator: "/", omittingEmptySubsequences: true)
        var found: Set<String> = []
        for route in routes where route.components.count == segments.count {
            if zip(route.components, segments).allSatisfy({ element, segment in element ~= segment }) {
                found.insert(route.method.rawValue)
            }
        }
        return found.sorted().compactMap { HTTPRequest.Method($0) }
    }
}

/// Bounds on request fields that the engine's own limits do not cover, and checked arithmetic for the products
/// the server forms.
enum FieldBounds {
    /// Native `metadata`: a few short labels, echoed with every job read (before the rest of the request is decoded).
    static func checkMetadata(_ metadata: [String: String]?, limits: RequestLimits) throws {
        guard let metadata else { return }
        guard metadata.count <= limits.maximumMetadataEntries else {
            throw APIError.badRequest("metadata has \(metadata.count) keys; at most \(limits.maximumMetadataEntries) are allowed")
        }
        let bytes = metadata.reduce(0) { $0 + $1.key.utf8.count + $1.value.utf8.count }
        guard bytes <= limits.maximumMetadataBytes else {
            throw APIError.badRequest(
                "metadata is \(bytes) bytes (keys and values); at most \(limits.maximumMetadataBytes) are allowed")
        }
    }

    /// `a * b`, or a 422 naming the fields when the product overflows or exceeds `maximum`.
    static func product(_ a: Int, _ b: Int, maximum: Int, what: String) throws -> Int {
        let (value, overflow) = a.multipliedReportingOverflow(by: b)
        guard !overflow, value <= maximum else {
            throw APIError(.unprocessableContent, "invalid_request", "\(what) must be at most \(maximum) images, got \(a) x \(b)")
        }
        return value
    }

    /// Checks a prompt's length before anything parses it.
    static func checkPrompt(_ text: String, field: String, limits: RequestLimits) throws {
        // Cheap first: more UTF-8 bytes than 4 per allowed character cannot fit.
        guard text.utf8.count <= limits.maximumPromptCharacters * 4, text.count <= limits.maximumPromptCharacters else {
            throw APIError.badRequest("\(field) is longer than \(limits.maximumPromptCharacters) characters (prompts are limited to \(limits.maximumPromptCharacters) characters)")
        }
    }

    /// Width and height checked against the model before a job is queued: within the server's limits and multiples
    /// of the model's size multiple.
    static func checkSize(width: Int, height: Int, profile: ModelProfile, limits: RequestLimits, model: String) throws {
        let multiple = max(1, profile.sizeMultiple)
        let side = limits.maximumSide
        for (name, value) in [("width", width), ("height", height)] {
            guard value >= multiple, value <= side else {
                throw APIError.badRequest("\(name) must be between \(multiple) and \(side), got \(value)")
            }
            guard value % multiple == 0 else {
                throw APIError.badRequest(
                    "\(name) must be a multiple of \(multiple) for model '\(model)', got \(value) (its native size is \(profile.width)x\(profile.height))"
                )
            }
        }
        let (pixels, overflow) = width.multipliedReportingOverflow(by: height)
        guard !overflow, pixels <= limits.maximumPixels else {
            throw APIError.badRequest("width x height must be at most \(limits.maximumPixels) pixels, got \(width)x\(height)")
        }
    }

    /// A CLIP skip the model can take (1 = no skip).
    static func checkClipSkip(_ value: Int, field: String, profile: ModelProfile, model: String) throws {
        guard (1...max(1, profile.maximumClipSkip)).contains(value) else {
            throw APIError.badRequest(
                "\(field) must be between 1 and \(profile.maximumClipSkip) for model '\(model)' (its text encoder has \(profile.textEncoderLayers) layers), got \(value)"
            )
        }
    }
}
