import Foundation
import Pipelines
import Serving

/// Rejects JSON objects with fields the API does not define: a typo such as `"stesp"` must be an error,
/// not a silently ignored setting.
enum StrictJSON {
    /// Parses `data` and checks every object against `schema` (object key -> nested schema for the keys
    /// whose values are objects or arrays of objects).
    static func check(_ data: Data, allowed: Set<String>, nested: [String: Set<String>] = [:]) throws {
        let object: Any
        do {
            object = try JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed])
        } catch {
            throw APIError.badRequest("the request body is not valid JSON")
        }
        guard let fields = object as? [String: Any] else { throw APIError.badRequest("the request body must be a JSON object") }
        try checkKeys(fields, allowed: allowed, path: "")
        for (key, keys) in nested {
            if let child = fields[key] as? [String: Any] {
                try checkKeys(child, allowed: keys, path: key + ".")
            } else if let list = fields[key] as? [Any] {
                for (index, item) in list.enumerated() {
                    guard let child = item as? [String: Any] else { throw APIError.badRequest("\(key)[\(index)] must be an object") }
                    try checkKeys(child, allowed: keys, path: "\(key)[\(index)].")
                }
            }
        }
    }

    private static func checkKeys(_ fields: [String: Any], allowed: Set<String>, path: String) throws {
        let unknown = fields.keys.filter { !allowed.contains($0) }.sorted()
        guard unknown.isEmpty else {
            throw APIError.badRequest(
                "unknown field\(unknown.count > 1 ? "s" : ""): \(unknown.map { path + $0 }.joined(separator: ", ")); allowed: \(allowed.sorted().joined(separator: ", "))")
        }
    }
}

/// `POST /v1/images/jobs` body.
struct NativeJobRequest: Decodable {
    var model: String?
    var prompt: String
    var negativePrompt: String?
    var width: Int?
    var height: Int?
    var steps: Int?
    var sampler: String?
    var cfg: Float?
    var seed: Int64?
    var n: Int?
    var clipSkip: Int?
    var loras: [LoRA]?
    var controls: [Control]?
    var initImage: String?
    var initLatents: String?
    var strength: Float?
    var promptSyntax: PromptSyntax?
    var loraDeadlineStep: Int?
    var metadata: [String: String]?

    struct LoRA: Decodable {
        var name: String
        var weight: Float?
        var weightText: Float?

        static let fields: Set<String> = ["name", "weight", "weight_text"]
        enum CodingKeys: String, CodingKey { case name, weight, weightText = "weight_text" }
    }

    struct Control: Decodable {
        var model: String
        var image: String
        var preprocessor: String?
        var thresholdA: Double?
        var thresholdB: Double?
        var resizeMode: String?
        var weight: Float?
        var start: Float?
        var end: Float?
        var guessMode: Bool?

        static let fields: Set<String> = [
            "model", "image", "preprocessor", "threshold_a", "threshold_b", "resize_mode", "weight", "start", "end", "guess_mode",
        ]
        enum CodingKeys: String, CodingKey {
            case model, image, preprocessor, weight, start, end
            case thresholdA = "threshold_a", thresholdB = "threshold_b", resizeMode = "resize_mode", guessMode = "guess_mode"
        }
    }

    static let fields: Set<String> = [
        "model", "prompt", "negative_prompt", "width", "height", "steps", "sampler", "cfg", "seed", "n", "clip_skip", "loras", "controls",
        "init_image", "init_latents", "strength", "prompt_syntax", "lora_deadline_step", "metadata",
    ]

    enum CodingKeys: String, CodingKey {
        case model, prompt, width, height, steps, sampler, cfg, seed, n, loras, controls, strength, metadata
        case negativePrompt = "negative_prompt", clipSkip = "clip_skip", initImage = "init_image", promptSyntax = "prompt_syntax"
        case loraDeadlineStep = "lora_deadline_step", initLatents = "init_latents"
    }

    /// Parses and checks a body: unknown fields anywhere are a 400.
    static func decode(_ data: Data) throws -> NativeJobRequest {
        try StrictJSON.check(data, allowed: fields, nested: ["loras": LoRA.fields, "controls": Control.fields])
        return try JSONDecoder().decode(NativeJobRequest.self, from: data)
    }

    /// The job this request asks for. Counts and sizes are bounded, and checked against the chosen model, before any
    /// image is decoded; fields left out take the model's recommendation (sampler, steps, guidance; the engine uses
    /// the native size when width and height are left out).
    func spec(repository: ModelRepository, limits: RequestLimits) throws -> JobSpec {
        try FieldBounds.checkMetadata(metadata, limits: limits)
        guard (loras ?? []).count <= limits.maximumLoRAs else {
            throw APIError.badRequest("at most \(limits.maximumLoRAs) LoRAs per request, got \((loras ?? []).count)")
        }
        guard (controls ?? []).count <= limits.maximumControls else {
            throw APIError.badRequest("at most \(limits.maximumControls) ControlNets per request, got \((controls ?? []).count)")
        }
        if let n, !(1...limits.maximumCount).contains(n) {
            throw APIError.badRequest("the number of images must be between 1 and \(limits.maximumCount), got \(n)")
        }
        if let steps, !(1...limits.maximumSteps).contains(steps) {
            throw APIError.badRequest("steps must be between 1 and \(limits.maximumSteps), got \(steps)")
        }
        if let loraDeadlineStep, !(0...limits.maximumSteps).contains(loraDeadlineStep) {
            throw APIError.badRequest("lora_deadline_step must be between 0 and \(limits.maximumSteps), got \(loraDeadlineStep)")
        }
        try FieldBounds.checkPrompt(prompt, field: "prompt", limits: limits)
        try FieldBounds.checkPrompt(negativePrompt ?? "", field: "negative_prompt", limits: limits)
        let modelID = model ?? repository.defaultModel
        let profile = try repository.profile(modelID)
        if width != nil || height != nil {
            try FieldBounds.checkSize(
                width: width ?? profile.width, height: height ?? profile.height, profile: profile, limits: limits,
                model: modelID ?? "default")
        }
        if let clipSkip { try FieldBounds.checkClipSkip(clipSkip, field: "clip_skip", profile: profile, model: modelID ?? "default") }
        func image(_ text: String, _ what: String) throws -> Data {
            // Base64 takes 4 characters for 3 bytes: a longer text cannot hold an image within the limit.
            guard text.utf8.count <= (limits.maximumImageBytes / 3 + 2) * 4 + 1024 else {
                throw APIError.badRequest("\(what) is larger than \(limits.maximumImageBytes) bytes")
            }
            guard let data = Base64.decodeImage(text), !data.isEmpty else { throw APIError.badRequest("\(what) is not valid base64") }
            return data
        }
        return JobSpec(
            model: model, prompt: prompt, negativePrompt: negativePrompt, width: width, height: height, steps: steps ?? profile.steps,
            sampler: sampler ?? profile.sampler, cfg: cfg ?? profile.cfg, seed: seed.flatMap { $0 < 0 ? nil : UInt64($0) }, count: n ?? 1,
            clipSkip: clipSkip, loras: (loras ?? []).map { LoRASpec(name: $0.name, weight: $0.weight ?? 1, textEncoderWeight: $0.weightText) },
            controls: try (controls ?? []).enumerated().map { index, unit in
                ControlSpec(
                    model: unit.model, image: try image(unit.image, "controls[\(index)].image"), preprocessor: unit.preprocessor ?? "none",
                    thresholdA: unit.thresholdA, thresholdB: unit.thresholdB, resizeMode: unit.resizeMode ?? "crop_and_resize",
                    weight: unit.weight ?? 1, start: unit.start ?? 0, end: unit.end ?? 1, guessMode: unit.guessMode ?? false)
            },
            initImage: try initImage.map { try image($0, "init_image") }, strength: strength ?? 0.75, promptSyntax: promptSyntax ?? .plain,
            loraDeadlineStep: loraDeadlineStep, metadata: metadata ?? [:], initLatents: try initLatents.map { try image($0, "init_latents") })
    }
}

/// A job as the native API reports it.
struct NativeJobResponse: Encodable {
    struct Result: Encodable {
        let index: Int
        let url: String
    }
    struct Links: Encodable {
        let `self`: String
        let events: String
        let cancel: String
    }
    struct EchoLoRA: Encodable {
        let name: String
        let weight: Float
        let weightText: Float?
        enum CodingKeys: String, CodingKey { case name, weight, weightText = "weight_text" }
    }
    struct Echo: Encodable {
        let model: String?
        let prompt: String
        let negativePrompt: String?
        let width: Int?
        let height: Int?
        let steps: Int
        let sampler: String
        let cfg: Float
        let seed: UInt64?
        let n: Int
        let loras: [EchoLoRA]
        let controls: [String]
        let metadata: [String: String]

        enum CodingKeys: String, CodingKey {
            case model, prompt, width, height, steps, sampler, cfg, seed, n, loras, controls, metadata
            case negativePrompt = "negative_prompt"
        }
    }

    let id: String
    let status: String
    let createdAt: Date
    let startedAt: Date?
    let finishedAt: Date?
    let queuePosition: Int?
    let progress: JobProgress
    let timings: [String: Double]
    let error: String?
    let request: Echo
    let results: [Result]
    let infotext: String?
    let loraPatchStep: Int?
    let links: Links

    enum CodingKeys: String, CodingKey {
        case id, status, progress, timings, error, request, results, infotext, links
        case createdAt = "created_at", startedAt = "started_at", finishedAt = "finished_at", queuePosition = "queue_position"
        case loraPatchStep = "lora_patch_step"
    }

    init(_ job: JobRecord, queuePosition: Int?) {
        let base = "/v1/images/jobs/\(job.id)"
        id = job.id
        status = job.status.rawValue
        createdAt = job.createdAt
        startedAt = job.startedAt
        finishedAt = job.finishedAt
        self.queuePosition = queuePosition
        progress = job.progress
        timings = job.timings
        error = job.error
        let spec = job.spec
        request = Echo(
            model: spec.model, prompt: spec.prompt, negativePrompt: spec.negativePrompt, width: spec.width, height: spec.height, steps: spec.steps,
            sampler: spec.sampler, cfg: spec.cfg, seed: spec.seed, n: spec.count,
            loras: spec.loras.map { EchoLoRA(name: $0.name, weight: $0.weight, weightText: $0.textEncoderWeight) }, controls: spec.controls.map(\.model),
            metadata: spec.metadata)
        results = (0..<job.imageCount).map { Result(index: $0, url: "\(base)/images/\($0)") }
        infotext = job.infotext
        loraPatchStep = job.loraPatchStep
        links = Links(self: base, events: "\(base)/events", cancel: "\(base)/cancel")
    }
}

/// JSON encoding shared by the native and OpenAI surfaces (ISO dates, snake_case keys come from CodingKeys).
enum APIJSON {
    static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        encoder.outputFormatting = [.sortedKeys]
        return encoder
    }()
}
