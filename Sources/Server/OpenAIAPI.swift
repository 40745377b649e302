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
            let watch = await ConnectionWatch.install(on: context.channel)
            defer { watch?.remove() }
            let body = try await BodyLimits.read(request, context: context)
            let (repository, limits) = (engine.repository, engine.configuration.limits)
            let (generation, spec) = try await RequestWork.run { try Self.job(Data(buffer: body), repository: repository, limits: limits) }
            let format = generation.responseFormat ?? "b64_json"
            let job = try await SynchronousJob.run(spec, engine: engine, watch: watch, context: context)
            guard job.status == .succeeded else {
                throw APIError(.internalServerError, "generation_failed", job.error ?? "the job ended as \(job.status.rawValue)")
            }
            let images = try await engine.outputs(job.id)
            // Base64 of up to n PNGs: off the serving threads.
            return try await RequestWork.run {
                let data: [[String: String]] =
                    format == "url"
                    ? (0..<images.count).map { ["url": "/v1/images/jobs/\(job.id)/images/\($0)", "revised_prompt": generation.prompt] }
                    : images.map { ["b64_json": $0.base64EncodedString(), "revised_prompt": generation.prompt] }
                return Handoff(try json(["created": Int(job.createdAt.timeIntervalSince1970), "data": data]))
            }.value
        }
    }

    /// Reads a request into a job, checked against the model it runs on: `size` must be "auto" or WxH within the
    /// server's limits in multiples of the model's size multiple (the model's native size when left out or "auto");
    /// steps, sampler and guidance are the model's recommendation.
    static func job(_ data: Data, repository: ModelRepository, limits: RequestLimits) throws -> (Generation, JobSpec) {
        let generation: Generation
        do {
            generation = try JSONDecoder().decode(Generation.self, from: data)
        } catch let error as DecodingError {
            throw APIError.badRequest("malformed request: \(ErrorMappingMiddleware<ServerRequestContext>.describe(error))")
        } catch {
            throw APIError.badRequest("malformed request: the body is not a JSON object")
        }
        if let n = generation.n, !(1...limits.maximumCount).contains(n) {
            throw APIError.badRequest("the number of images (n) must be between 1 and \(limits.maximumCount), got \(n)")
        }
        try FieldBounds.checkPrompt(generation.prompt, field: "prompt", limits: limits)
        let format = generation.responseFormat ?? "b64_json"
        guard format == "b64_json" || format == "url" else { throw APIError.badRequest("response_format must be b64_json or url") }
        if let outputFormat = generation.outputFormat, outputFormat != "png" {
            throw APIError.badRequest("output_format '\(outputFormat.prefix(100))' is not supported (png)")
        }
        // OpenAI's model names (dall-e-*, gpt-image-*) mean "the server's default model".
        let model = generation.model.flatMap { repository.entry(.checkpoint, $0) != nil ? $0 : nil }
        let modelID = model ?? repository.defaultModel
        let profile = try repository.profile(modelID)
        var (width, height) = (profile.width, profile.height)
        if let size = generation.size, size != "auto" {
            let multiple = max(1, profile.sizeMultiple)
            let allowed =
                "WxH with each side a multiple of \(multiple) between \(multiple) and \(limits.maximumSide), at most \(limits.maximumPixels) pixels (this model's native size: \(profile.width)x\(profile.height)), or auto"
            let parts = size.count <= 32 ? size.lowercased().split(separator: "x", omittingEmptySubsequences: false) : []
            guard parts.count == 2, let w = Int(parts[0]), let h = Int(parts[1]) else {
                throw APIError.badRequest("size must be \(allowed); got '\(size.prefix(40))'")
            }
            do {
                try FieldBounds.checkSize(width: w, height: h, profile: profile, limits: limits, model: modelID ?? "default")
            } catch let error as APIError {
                throw APIError.badRequest("size '\(size)' is not allowed: \(error.message); size must be \(allowed)")
            }
            (width, height) = (w, h)
        }
        let spec = JobSpec(
            model: model, prompt: generation.prompt, width: width, height: height, steps: profile.steps, sampler: profile.sampler,
            cfg: profile.cfg, count: generation.n ?? 1)
        return (generation, spec)
    }
}
