import Foundation
import HTTPTypes
import Hummingbird
import Imaging
import Pipelines
import Samplers
import Serving

/// The native asynchronous API under `/v1`: jobs (submit, status, results, events, cancel) and the
/// registries (models, LoRAs, ControlNets, samplers, preprocessors, capabilities).
struct NativeAPI {
    let engine: GenerationEngine

    func register(on router: Router<ServerRequestContext>) {
        let jobs = router.group("v1/images/jobs")
        jobs.post { request, context in try await submit(request, context: context) }
        jobs.get(":id") { _, context in try await status(context.parameters.require("id")) }
        jobs.get(":id/images/:index") { _, context in
            try await image(context.parameters.require("id"), index: context.parameters.require("index", as: Int.self))
        }
        jobs.get(":id/events") { _, context in try await events(context.parameters.require("id")) }
        jobs.post(":id/cancel") { _, context in try await cancel(context.parameters.require("id")) }
        jobs.delete(":id") { _, context in try await cancel(context.parameters.require("id")) }

        router.get("v1/models") { _, _ in try listing(.checkpoint, defaultID: engine.repository.defaultModel) }
        router.get("v1/loras") { _, _ in try listing(.lora, defaultID: nil) }
        router.get("v1/controlnets") { _, _ in try listing(.controlnet, defaultID: nil) }
        router.post("v1/models/rescan") { _, _ in
            let counts = engine.repository.rescan()
            return try json(["checkpoints": counts[.checkpoint] ?? 0, "loras": counts[.lora] ?? 0, "controlnets": counts[.controlnet] ?? 0])
        }
        router.get("v1/samplers") { _, _ in
            try json(
                SamplerKind.catalog.map { ["name": $0.name, "a1111_name": $0.a1111Name, "aliases": $0.aliases.joined(separator: ", ")] })
        }
        router.get("v1/preprocessors") { _, _ in try json(["preprocessors": ControlPreprocessor.moduleList]) }
        router.get("v1/capabilities") { _, _ in try capabilities() }
    }

    /// Parsing, checking and base64 decoding run on a request-work thread, off the threads that serve HTTP.
    private func submit(_ request: Request, context: ServerRequestContext) async throws -> Response {
        let body = try await BodyLimits.read(request, context: context)
        let (repository, limits) = (engine.repository, engine.configuration.limits)
        let spec = try await RequestWork.run {
            try NativeJobRequest.decode(Data(buffer: body)).spec(repository: repository, limits: limits)
        }
        let job = try await engine.submit(spec)
        let response = NativeJobResponse(job, queuePosition: await engine.queuePosition(job.id))
        var headers = HTTPFields()
        headers[HTTPField.Name.location] = response.links.`self`
        return try encode(response, status: .accepted, headers: headers)
    }

    private func status(_ id: String) async throws -> Response {
        let job = try await engine.job(id)
        return try encode(NativeJobResponse(job, queuePosition: await engine.queuePosition(id)))
    }

    private func cancel(_ id: String) async throws -> Response {
        let job = try await engine.cancel(id)
        return try encode(NativeJobResponse(try await engine.job(job.id), queuePosition: nil))
    }

    private func image(_ id: String, index: Int) async throws -> Response {
        let images = try await engine.outputs(id)
        guard images.indices.contains(index) else { throw APIError.notFound("job '\(id)' has no image \(index)") }
        return Response(status: .ok, headers: [.contentType: "image/png"], body: .init(byteBuffer: ByteBuffer(bytes: images[index])))
    }

    /// Server-Sent Events: `event: <type>` + `data: <JSON>` per job event, ending after the terminal one.
    private func events(_ id: String) async throws -> Response {
        let stream = try await engine.events(id)
        let encoder = APIJSON.encoder
        let body = stream.map { event -> ByteBuffer in
            let data = (try? encoder.encode(event)) ?? Data("{}".utf8)
            return ByteBuffer(string: "event: \(event.type)\ndata: \(String(decoding: data, as: UTF8.self))\n\n")
        }
        return Response(
            status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"], body: .init(asyncSequence: body))
    }

    private func listing(_ kind: ModelKind, defaultID: String?) throws -> Response {
        struct Item: Encodable {
            let id: String
            let format: String
            let sizeBytes: Int
            let embedded: Bool
            let isDefault: Bool?
            /// Checkpoints: native size, recommended sampler/steps/CFG, text encoder depth (what requests default to
            /// and are checked against); absent when the model's configuration cannot be read.
            let profile: ModelProfile?
            enum CodingKeys: String, CodingKey {
                case id, format, embedded, profile
                case sizeBytes = "size_bytes", isDefault = "default"
            }
        }
        let repository = engine.repository
        let items = repository.list(kind).map { entry in
            Item(
                id: entry.id, format: entry.format, sizeBytes: entry.sizeBytes, embedded: entry.embedded,
                isDefault: defaultID.map { $0 == entry.id }, profile: kind == .checkpoint ? try? repository.profile(entry.id) : nil)
        }
        return try encode(["data": items])
    }

    private func capabilities() throws -> Response {
        struct Capabilities: Encodable {
            let limits: RequestLimits
            let queueCapacity: Int
            let samplers: [String]
            let loraFormats: [String]
            let loraModes: [String]
            let loraDeadlineFraction: Double
            let controlnetPreprocessors: [String]
            let resizeModes: [String]
            let modelFormats: [String]
            let imageFormats: [String]
            let promptSyntaxes: [String]
            enum CodingKeys: String, CodingKey {
                case limits, samplers
                case queueCapacity = "queue_capacity", loraFormats = "lora_formats", loraModes = "lora_modes"
                case loraDeadlineFraction = "lora_deadline_fraction", controlnetPreprocessors = "controlnet_preprocessors"
                case resizeModes = "resize_modes", modelFormats = "model_formats", imageFormats = "image_formats"
                case promptSyntaxes = "prompt_syntaxes"
            }
        }
        let configuration = engine.configuration
        return try encode(
            Capabilities(
                limits: configuration.limits, queueCapacity: configuration.queueCapacity, samplers: SamplerKind.allCases.map(\.name),
                loraFormats: ["kohya", "diffusers", "peft"], loraModes: ["merged", "runtime"],
                loraDeadlineFraction: configuration.loraDeadlineFraction, controlnetPreprocessors: ControlPreprocessor.moduleList,
                resizeModes: ResizeMode.allCases.map(\.rawValue), modelFormats: ["diffusers", "safetensors (single file: SD 1.x, 2.x, SDXL)"],
                imageFormats: ["png (output)", "png, jpeg (input)"], promptSyntaxes: ["plain", "a1111"]))
    }
}

/// Encodes a value as a JSON response.
func encode<T: Encodable>(_ value: T, status: HTTPResponse.Status = .ok, headers: HTTPFields = [:]) throws -> Response {
    var fields = headers
    fields[.contentType] = "application/json"
    return Response(status: status, headers: fields, body: .init(byteBuffer: ByteBuffer(bytes: try APIJSON.encoder.encode(value))))
}

/// A JSON response from a dictionary or array of plain values.
func json(_ value: Any, status: HTTPResponse.Status = .ok) throws -> Response {
    let data = try JSONSerialization.data(withJSONObject: value, options: [.sortedKeys])
    return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
}
