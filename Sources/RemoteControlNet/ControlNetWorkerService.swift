import Compute
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import Logging
import Models
import Serving

/// Bounds and threads of a ControlNet worker.
public struct ControlNetWorkerOptions: Sendable {
    /// Largest message accepted or sent, in bytes.
    public var maximumMessageBytes = 256 << 20
    /// Cached control images, in bytes and entries.
    public var imageCacheBytes = 1 << 30
    public var imageCacheEntries = 256
    /// Loaded ControlNets, in bytes (one always stays).
    public var modelCacheBytes = 4 << 30
    /// Threads of the compute pool (nil: the process-wide pool).
    public var threads: Int?

    public init() {}
}

/// The ControlNet worker (`swiftdiffusion worker --role controlnet`): keeps ControlNets resident and computes one
/// ControlNet call of one denoising step per `Residuals` RPC. Control images arrive once per request and are
/// cached under (request id, control index), bounded in bytes and entries, least recently used out first.
///
/// Every input is checked against the ControlNet's configuration before any compute, so a malformed message gets
/// `INVALID_ARGUMENT` (an unknown ControlNet `NOT_FOUND`, a missing control image `FAILED_PRECONDITION`), never a
/// crash. Compute runs on a thread of its own (off Swift's cooperative pool), one call at a time in arrival order,
/// so one worker serves any number of engines.
final class ControlNetWorkerService: WorkerService.SimpleServiceProtocol, Sendable {
    typealias Options = ControlNetWorkerOptions

    let options: Options
    private let available: @Sendable () -> [String]
    private let load: @Sendable (String) throws -> (ControlNetModel, bytes: Int)
    private let models: BoundedCache<String, ControlNetModel>
    private let images: BoundedCache<String, Tensor>
    private let thread: WorkerThread
    private let logger: Logger
    /// Called (awaited) as each Residuals call arrives, with its 1-based number; tests use it to stop the worker mid-request.
    let onCall: (@Sendable (Int) async -> Void)?
    private let calls = CallCounter()

    init(
        options: Options, logger: Logger, available: @escaping @Sendable () -> [String],
        load: @escaping @Sendable (String) throws -> (ControlNetModel, bytes: Int), onCall: (@Sendable (Int) async -> Void)?
    ) {
        self.options = options
        self.logger = logger
        self.available = available
        self.load = load
        self.onCall = onCall
        models = BoundedCache(
            capacityBytes: options.modelCacheBytes, metric: "swiftdiffusion_worker_cache_total", dimensions: [("kind", "controlnet")],
            onEvict: { id, _ in logger.info("unloaded ControlNet", metadata: ["controlnet": "\(id)"]) })
        images = BoundedCache(
            capacityBytes: options.imageCacheBytes, maximumEntries: options.imageCacheEntries, metric: "swiftdiffusion_worker_cache_total",
            dimensions: [("kind", "control_image")])
        thread = WorkerThread(name: "controlnet-worker", poolThreads: options.threads)
    }

    /// Residuals calls received so far.
    var callCount: Int { calls.value }

    // MARK: - RPCs

    func residuals(request: ResidualsRequest, context: ServerContext) async throws -> ResidualsReply {
        let number = calls.increment()
        await onCall?(number)
        guard available().contains(request.controlnet) else {
            throw RPCError(code: .notFound, message: "unknown ControlNet '\(request.controlnet)'")
        }
        guard !request.requestID.isEmpty, request.requestID.utf8.count <= 128 else {
            throw WireFormat.invalid("request_id must be 1 to 128 bytes")
        }
        let reply: Result<ResidualsReply, any Error> = await withCheckedContinuation { continuation in
            thread.enqueue { continuation.resume(returning: Result { try self.compute(request) }) }
        }
        return try reply.get()
    }

    func models(request: ModelsRequest, context: ServerContext) async throws -> ModelsReply {
        var reply = ModelsReply()
        reply.controlnets = available().sorted()
        reply.resident = available().filter { models.contains($0) }.sorted()
        reply.maxMessageBytes = UInt64(options.maximumMessageBytes)
        return reply
    }

    // MARK: - Compute (on the worker thread)

    private func compute(_ request: ResidualsRequest) throws -> ResidualsReply {
        let start = Date()
        let model: ControlNetModel
        do {
            model = try models.value(for: request.controlnet) { try load(request.controlnet) }
        } catch {
            throw RPCError(code: .internalError, message: "cannot load ControlNet '\(request.controlnet)': \(error)")
        }
        let inputs = try Inputs(request, model: model.configuration)
        let imageKey = "\(request.requestID)/\(request.controlIndex)"
        let image: Tensor
        if request.hasControlImage {
            image = try WireFormat.decode(request.controlImage, field: "control_image")
        } else if let cached = images.peek(imageKey) {
            image = cached
        } else {
            throw RPCError(code: .failedPrecondition, message: "no control image cached for request \(imageKey); send control_image")
        }
        let batch = inputs.sample.shape[0]
        let scale = WireFormat.controlImageScale(of: model.configuration)
        let expected = [batch, scale * inputs.sample.shape[1], scale * inputs.sample.shape[2], model.configuration.conditioningChannels]
        guard image.shape == expected else {
            throw WireFormat.invalid("control_image must be \(expected) for this sample, got \(image.shape)")
        }
        // Cached only once it fits: a malformed image never replaces a good one.
        if request.hasControlImage { images.insert(image, bytes: 4 * image.count, for: imageKey) }
        let residuals: ControlResiduals
        do {
            residuals = try model(
            inputs.sample, timesteps: inputs.timesteps, conditioning: inputs.conditioning, controlImage: image,
            scaling: .init(conditioningScale: request.conditioningScale, guessMode: request.guessMode))
        } catch {
            throw RPCError(code: .internalError, message: "the ControlNet failed: \(error)")
        }
        let float: WireFloat = request.replyDtype == .float16 ? .float16 : .float32
        var reply = ResidualsReply()
        reply.down = residuals.down.map { WireFormat.encode($0, as: float) }
        reply.mid = WireFormat.encode(residuals.mid, as: float)
        reply.computeSeconds = Date().timeIntervalSince(start)
        return reply
    }

    /// A request's tensors, each checked against the ControlNet's configuration.
    struct Inputs {
        let sample: Tensor
        let timesteps: [Float]
        let conditioning: UNetConditioning

        init(_ request: ResidualsRequest, model configuration: ControlNetConfiguration) throws {
            let unet = configuration.unet
            guard request.hasSample, request.hasContext else { throw WireFormat.invalid("sample and context are required") }
            sample = try WireFormat.decode(request.sample, field: "sample")
            guard sample.rank == 4, sample.shape[3] == unet.inChannels, sample.shape[0] <= 64, sample.shape[1] <= 1024, sample.shape[2] <= 1024 else {
                throw WireFormat.invalid("sample must be NHWC [batch <= 64, h <= 1024, w <= 1024, \(unet.inChannels)], got \(sample.shape)")
            }
            let batch = sample.shape[0]
            timesteps = request.timesteps
            guard timesteps.count == 1 || timesteps.count == batch, timesteps.allSatisfy(\.isFinite) else {
                throw WireFormat.invalid("timesteps must be 1 or \(batch) finite values, got \(timesteps.count)")
            }
            let contextWidth = try unet.crossAttentionDim.values(count: unet.blockOutChannels.count, field: "cross_attention_dim")[0]
            let context = try WireFormat.decode(request.context, field: "context")
            guard context.rank == 3, context.shape[0] == batch, context.shape[2] == contextWidth, context.shape[1] <= 4096 else {
                throw WireFormat.invalid("context must be [\(batch), tokens <= 4096, \(contextWidth)], got \(context.shape)")
            }
            var conditioning = UNetConditioning(context: context)
            if unet.additionEmbedType == "text_time", let timeDim = unet.additionTimeEmbedDim, let inputDim = unet.projectionClassEmbeddingsInputDim {
                guard request.hasTextEmbeds, request.hasTimeIds else {
                    throw WireFormat.invalid("this ControlNet needs text_embeds and time_ids (SDXL)")
                }
                let textEmbeds = try WireFormat.decode(request.textEmbeds, field: "text_embeds")
                let timeIds = try WireFormat.decode(request.timeIds, field: "time_ids")
                guard textEmbeds.shape == [batch, inputDim - 6 * timeDim], timeIds.shape == [batch, 6] else {
                    throw WireFormat.invalid(
                        "text_embeds must be [\(batch), \(inputDim - 6 * timeDim)] and time_ids [\(batch), 6], got \(textEmbeds.shape), \(timeIds.shape)")
                }
                conditioning.textEmbeds = textEmbeds
                conditioning.timeIds = timeIds
            } else if request.hasTextEmbeds || request.hasTimeIds {
                throw WireFormat.invalid("this ControlNet takes no text_embeds or time_ids")
            }
            if let dim = unet.timeCondProjDim {
                guard request.hasTimestepCondition else { throw WireFormat.invalid("this ControlNet needs timestep_condition [\(batch), \(dim)]") }
                let condition = try WireFormat.decode(request.timestepCondition, field: "timestep_condition")
                guard condition.shape == [batch, dim] else {
                    throw WireFormat.invalid("timestep_condition must be [\(batch), \(dim)], got \(condition.shape)")
                }
                conditioning.timestepCondition = condition
            } else if request.hasTimestepCondition {
                throw WireFormat.invalid("this ControlNet takes no timestep_condition")
            }
            guard request.conditioningScale.isFinite, abs(request.conditioningScale) <= 100 else {
                throw WireFormat.invalid("conditioning_scale must be finite and at most 100 in magnitude")
            }
            self.conditioning = conditioning
        }
    }
}

/// A thread-safe counter.
final class CallCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0

    @discardableResult
    func increment() -> Int {
        lock.lock()
        defer { lock.unlock() }
        count += 1
        return count
    }

    var value: Int {
        lock.lock()
        defer { lock.unlock() }
        return count
    }
}

/// The worker's gRPC server: HTTP/2 over TCP (plaintext) with the message-size bound on requests.
public final class ControlNetWorkerServer: Sendable {
    let server: GRPCServer<HTTP2ServerTransport.Posix>
    private let transport: HTTP2ServerTransport.Posix

    let service: ControlNetWorkerService

    /// A worker on `host:port`, `host` an IPv4 or IPv6 address (port 0: an ephemeral port, see `port()`), serving the
    /// ControlNet ids `available` lists; `load` loads one with its size in bytes.
    public convenience init(
        host: String, port: Int, options: ControlNetWorkerOptions = .init(), logger: Logger, available: @escaping @Sendable () -> [String],
        load: @escaping @Sendable (String) throws -> (ControlNetModel, bytes: Int)
    ) {
        self.init(
            host: host, port: port, service: ControlNetWorkerService(options: options, logger: logger, available: available, load: load, onCall: nil))
    }

    init(host: String, port: Int, service: ControlNetWorkerService) {
        self.service = service
        let maximum = service.options.maximumMessageBytes
        transport = HTTP2ServerTransport.Posix(
            address: host.contains(":") ? .ipv6(host: host, port: port) : .ipv4(host: host, port: port), transportSecurity: .plaintext,
            config: .defaults { $0.rpc.maxRequestPayloadSize = maximum })
        server = GRPCServer(transport: transport, services: [service])
    }

    /// Serves until `stop()` or cancellation (which ends in-flight calls at once).
    public func run() async throws { try await server.serve() }

    /// The port the server listens on, once it does.
    public func port() async throws -> Int {
        let address = try await transport.listeningAddress
        if let ipv4 = address.ipv4 { return ipv4.port }
        if let ipv6 = address.ipv6 { return ipv6.port }
        throw RPCError(code: .internalError, message: "the worker listens on \(address), not a TCP port")
    }

    /// Residuals calls received so far.
    public var callCount: Int { service.callCount }

    /// Stops accepting calls and ends once the in-flight ones finish.
    public func stop() { server.beginGracefulShutdown() }
}
