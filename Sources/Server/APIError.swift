import Foundation
import HTTPTypes
import Hummingbird
import Imaging
import Logging
import Serving

/// The JSON body of every error response: `{"error": {"type", "message"}, "detail": message}`. `detail` is
/// what FastAPI-based clients (AUTOMATIC1111's) read; `error` what OpenAI clients read.
struct APIError: Error, HTTPResponseError {
    let status: HTTPResponse.Status
    let type: String
    let message: String
    var headers: HTTPFields = [:]

    init(_ status: HTTPResponse.Status, _ type: String, _ message: String, headers: HTTPFields = [:]) {
        self.status = status
        self.type = type
        self.message = message
        self.headers = headers
    }

    struct Body: Encodable {
        struct Detail: Encodable {
            let type: String
            let message: String
        }
        let error: Detail
        let detail: String
    }

    func response(from request: Request, context: some RequestContext) throws -> Response {
        let data = try JSONEncoder().encode(Body(error: Body.Detail(type: type, message: message), detail: message))
        var fields = headers
        fields[.contentType] = "application/json"
        return Response(status: status, headers: fields, body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    static func badRequest(_ message: String) -> APIError { APIError(.badRequest, "invalid_request", message) }
    static func notFound(_ message: String) -> APIError { APIError(.notFound, "not_found", message) }
}

/// Maps every error a route throws to a JSON error response with the right status; nothing escapes as a 500
/// without a message, and internal errors are logged.
struct ErrorMappingMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as APIError {
            throw error
        } catch let error as EngineError {
            switch error {
            case .invalidRequest(let message): throw APIError.badRequest(message)
            case .notFound(let message): throw APIError.notFound(message)
            case .conflict(let message): throw APIError(.conflict, "conflict", message)
            case .unavailable(let message): throw APIError(.serviceUnavailable, "unavailable", message)
            case .queueFull(let retryAfter):
                throw APIError(.tooManyRequests, "queue_full", error.description, headers: [.retryAfter: "\(retryAfter)"])
            }
        } catch let error as ImageError {
            throw APIError.badRequest("\(error)")
        } catch let error as HTTPError {
            let type = error.status == .contentTooLarge ? "too_large" : error.status == .notFound ? "not_found" : "invalid_request"
            throw APIError(error.status, type, error.body ?? error.status.reasonPhrase)
        } catch let error as any HTTPResponseError where error.status == .contentTooLarge {
            // NIO's error for `request.body.collect(upTo:)` over the upload limit.
            throw APIError(
                .contentTooLarge, "too_large", "the request body is larger than the upload limit (\(context.maxUploadSize) bytes)")
        } catch let error as DecodingError {
            throw APIError.badRequest(Self.describe(error))
        } catch {
            context.logger.error("internal error", metadata: ["error": "\(error)", "path": "\(request.uri.path)"])
            throw APIError(.internalServerError, "internal_error", "internal error: \(error)")
        }
    }

    /// A decoding error in words a client can act on: which field, and what it should hold.
    static func describe(_ error: DecodingError) -> String {
        func field(_ path: [any CodingKey]) -> String {
            let text = path.map { key in key.intValue.map { "[\($0)]" } ?? ".\(key.stringValue)" }.joined()
            return text.hasPrefix(".") ? String(text.dropFirst()) : text
        }
        switch error {
        case .typeMismatch(let type, let context):
            return "field '\(field(context.codingPath))' must be \(type): \(context.debugDescription)"
        case .valueNotFound(let type, let context):
            return "field '\(field(context.codingPath))' must not be null (\(type))"
        case .keyNotFound(let key, let context):
            return "missing field '\(field(context.codingPath + [key]))'"
        case .dataCorrupted(let context) where context.codingPath.isEmpty:
            // Foundation reports a fraction for an integer, or a number out of range, without the field.
            return "a value does not fit its field (a fraction where an integer is expected, or a number out of range)"
        case .dataCorrupted(let context):
            return "field '\(field(context.codingPath))': \(context.debugDescription)"
        @unknown default:
            return "malformed JSON: \(error)"
        }
    }
}
