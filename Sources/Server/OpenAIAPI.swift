import Foundation
import Hummingbird
import Serving

/// OpenAI-compatible `POST /v1/images/generations` (prompt, n, size, response_format b64_json, model).
/// Runs synchronously like OpenAI's endpoint; `url` responses point at the native job's image routes.
struct OpenAIAPI {
    let engine: GenerationEngine

    struct Generation: Decodable {
        var prompt: String
        var n: Int?
        var size: String?
        var responseFormat: String?
        var model: String?
        var quality: String?
        var style: String?
        var user: String?
        var outputFormat: String?
        var background: String?
        var moderation: String?
        var outputCompression: Int?

        enum CodingKeys: String, CodingKey {
            case prompt, n, size, model, quality, style, user, background, moderation
            case responseFormat = "response_format", outputFormat = "output_format", outputCompression = "output_compression"
        }
    }

    func register(on router: Router<ServerRequestContext>) {
        router.post("v1/images/generations") { request, context in
            let body = try await request.body.collect(upTo: context.maxUploadSize)
            let generation: Generation
            do {
                generation = try JSONDecoder().decode(Generation.self, from: Data(buffer: body))
            } catch {
                throw APIError.badRequest("malformed request: \(error)")
            }
            var width: Int?, height: Int?
            if let size = generation.size, size != "auto" {
                let parts = size.lowercased().split(separator: "x").compactMap { Int($0) }
                guard parts.count == 2 else { throw APIError.badRequest("size must look like 512x512, got '\(size)'") }
                (width, height) = (parts[0], parts[1])
            }
            let format = generation.responseFormat ?? "b64_json"
            guard format == "b64_json" || format == "url" else { throw APIError.badRequest("response_format must be b64_json or url") }
            if let outputFormat = generation.outputFormat, outputFormat != "png" {
                throw APIError.badRequest("output_format '\(outputFormat)' is not supported (png)")
            }
            // OpenAI's model names (dall-e-*, gpt-image-*) mean "the server's default model".
            let model = generation.model.flatMap { engine.repository.entry(.checkpoint, $0) != nil ? $0 : nil }
            let spec = JobSpec(model: model, prompt: generation.prompt, width: width, height: height, count: generation.n ?? 1)
            let job = try await engine.submitAndWait(spec)
            guard job.status == .succeeded else {
                throw APIError(.internalServerError, "generation_failed", job.error ?? "the job ended as \(job.status.rawValue)")
            }
            let images = try await engine.outputs(job.id)
            let data: [[String: String]] =
                format == "url"
                ? (0..<images.count).map { ["url": "/v1/images/jobs/\(job.id)/images/\($0)", "revised_prompt": generation.prompt] }
                : images.map { ["b64_json": $0.base64EncodedString(), "revised_prompt": generation.prompt] }
            return try json(["created": Int(job.createdAt.timeIntervalSince1970), "data": data])
        }
    }
}
