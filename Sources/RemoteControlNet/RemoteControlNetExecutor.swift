import Compute
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import Logging
import Metrics
import Models
import Pipelines
import Serving

/// The `remote` ControlNet executor: a step's ControlNets run on ControlNet workers in other processes or hosts
/// (`swiftdiffusion worker --role controlnet`, `serve --controlnet-worker HOST:PORT`) while this process runs the
/// UNet's down and mid blocks; the residuals join before the up blocks, summed in request order.
///
/// - ControlNet `i` of a request goes to healthy worker `i mod n` of those that serve it (what a worker serves is
///   known from its registration and its health checks; before that, any), so several workers share a step's ControlNets and
///   each control image crosses the wire once per request and worker (the worker caches it under the request id). It
///   stays on that worker for the rest of the request.
/// - A worker that fails or times out, or fails its health check or leaves the registry while a request is on it:
///   the call runs here instead, the request finishes with local ControlNets (one logged warning), and the worker is
///   left out of new calls for `retryAfter`. No request fails for it.
/// - Every message is bounded (`maximumMessageBytes`, both ways); a call whose inputs exceed it runs here.
/// - Workers are the static addresses (`--controlnet-worker`) plus, with a `WorkerRegistry` (`serve --store
///   postgres://...`), the workers registered in the shared store (`worker --store`, issue 14 item 3), re-read every
///   `checkInterval`; a registered worker whose heartbeat is older than `staleAfter` (or whose row is gone) is dropped.
///   Every worker is health-checked every `checkInterval` (the cheap `Models` RPC, within `checkTimeout`): one that
///   fails is left out of new calls until a check passes again. Changes are logged, and `/metrics` has
///   `swiftdiffusion_controlnet_workers{state="known"|"healthy"}` and `swiftdiffusion_controlnet_worker_fallbacks_total`.
public final class RemoteControlNetExecutor: ControlNetExecutor, @unchecked Sendable {
    public struct Options: Sendable {
        /// The longest a call may take (the RPC deadline; the request then finishes here).
        public var timeout: Duration = .seconds(30)
        /// Element type of tensors on the wire (float16: half the bytes, ~1e-3 relative rounding).
        public var wireFloat: WireFloat = .float32
        /// Largest message sent or accepted, in bytes.
        public var maximumMessageBytes = 256 << 20
        /// How long a failed worker is left out of new calls.
        public var retryAfter: Duration = .seconds(30)
        /// Time between health checks of every worker and reads of the registered ones.
        public var checkInterval: Duration = .seconds(5)
        /// The longest a health check may take.
        public var checkTimeout: Duration = .seconds(2)
        /// A registered worker whose last heartbeat is older than this is dropped (three of `worker`'s default 5 s
        /// heartbeats).
        public var staleAfter: Duration = .seconds(15)

        public init() {}
    }

    /// One worker: a gRPC client with its connections running, and the control images it was sent.
    final class Worker: @unchecked Sendable {
        let address: String
        /// The id it registered under (nil: a static `--controlnet-worker`).
        let registrationID: String?
        let client: GRPCClient<HTTP2ClientTransport.Posix>
        private let lock = NSLock()
        private var sentImages: [String] = []
        private var sentImageSet: Set<String> = []
        private var downUntil: ContinuousClock.Instant?
        /// The last health check passed (static workers start trusted, registered ones after their first check).
        private var passing: Bool
        /// The ControlNet ids it serves, from its registration and its last health check (nil: not known yet, any).
        private var models: Set<String>?

        init(address: String, registrationID: String? = nil, models: [String]? = nil) throws {
            self.address = address
            self.registrationID = registrationID
            passing = registrationID == nil
            self.models = models.map(Set.init)
            let (host, port) = try parseHostPort(address)
            client = GRPCClient(transport: try .http2NIOPosix(target: .dns(host: host, port: port), transportSecurity: .plaintext))
            let client = self.client
            Task.detached { try? await client.runConnections() }
        }

        func isHealthy(at now: ContinuousClock.Instant) -> Bool {
            lock.lock()
            defer { lock.unlock() }
            return passing && (downUntil.map { now >= $0 } ?? true)
        }

        /// Left out after a failed call (for `retryAfter`).
        func isMarkedDown(at now: ContinuousClock.Instant) -> Bool {
            lock.lock()
            defer { lock.unlock() }
            return downUntil.map { now < $0 } ?? false
        }

        /// Records a health check (with the ControlNets a passing one listed); returns whether it passed before.
        func recordCheck(_ passed: Bool, models: [String]?) -> Bool {
            lock.lock()
            defer { lock.unlock() }
            let before = passing
            passing = passed
            if let models { self.models = Set(models) }
            return before
        }

        var servedModels: [String]? {
            lock.lock()
            defer { lock.unlock() }
            return models?.sorted()
        }

        func serves(_ modelID: String) -> Bool {
            lock.lock()
            defer { lock.unlock() }
            return models?.contains(modelID) ?? true
        }

        func markDown(until instant: ContinuousClock.Instant) {
            lock.lock()
            downUntil = instant
            lock.unlock()
        }

        func hasImage(_ key: String) -> Bool {
            lock.lock()
            defer { lock.unlock() }
            return sentImageSet.contains(key)
        }

        func sentImage(_ key: String) {
            lock.lock()
            defer { lock.unlock() }
            guard sentImageSet.insert(key).inserted else { return }
            sentImages.append(key)
            if sentImages.count > 4096 { sentImageSet.remove(sentImages.removeFirst()) }
        }
    }

    public let options: Options
    private let registry: (any WorkerRegistry)?
    private let logger: Logger
    private let lock = NSLock()
    /// The static workers in the order given, then the registered ones by address.
    private var pool: [Worker]
    private var monitor: Task<Void, Never>?
    private var closed = false
    /// Generations that run their ControlNets here for the rest of the request (bounded, oldest out first).
    private var localGenerations: [UUID] = []
    /// The worker each ControlNet of a request runs on ("generation/control index"; bounded, oldest out first): a
    /// request stays on its worker, and one that leaves the healthy set mid-request sends the request here.
    private var assignments: [String: Worker] = [:]
    private var assignmentOrder: [String] = []
    private var fallbacks = 0

    /// An executor over workers at `addresses` (HOST:PORT each) and, with a `registry`, the ControlNet workers
    /// registered there. Connections open lazily and reconnect.
    public init(workers addresses: [String], registry: (any WorkerRegistry)? = nil, options: Options = Options(), logger: Logger) throws {
        guard !addresses.isEmpty || registry != nil else { throw RemoteControlNetError("at least one ControlNet worker is needed") }
        guard options.checkInterval > .zero, options.checkTimeout > .zero, options.staleAfter > .zero else {
            throw RemoteControlNetError("the health-check interval, its timeout and the staleness window must be longer than 0")
        }
        self.options = options
        self.registry = registry
        self.logger = logger
        pool = try addresses.map { try Worker(address: $0) }
        let monitor = Task.detached { [weak self] in
            while !Task.isCancelled {
                guard let interval = await self?.refresh() else { return }
                try? await Task.sleep(for: interval)
            }
        }
        lock.withLock { self.monitor = monitor }
    }

    deinit { close() }

    /// Stops the health checks and closes the connections (calls in flight finish first).
    public func close() {
        let (workers, monitor) = lock.withLock {
            closed = true
            return (pool, self.monitor)
        }
        monitor?.cancel()
        for worker in workers { worker.client.beginGracefulShutdown() }
    }

    private var workers: [Worker] { lock.withLock { pool } }

    public var name: String { "remote x\(workers.count)" }

    /// The workers in the set (static and registered) and those new calls go to now (their checks pass, no recent
    /// failure), as HOST:PORT.
    public var workerAddresses: (known: [String], healthy: [String]) {
        let workers = self.workers
        let now = ContinuousClock.now
        return (workers.map(\.address), workers.filter { $0.isHealthy(at: now) }.map(\.address))
    }

    /// What each worker serves, where known (HOST:PORT to ControlNet ids).
    var servedModels: [String: [String]] {
        Dictionary(workers.compactMap { worker in worker.servedModels.map { (worker.address, $0) } }, uniquingKeysWith: { first, _ in first })
    }

    // MARK: - Discovery and health

    /// One pass: reads the registered workers (dropping stale ones, adding new ones), health-checks every worker and
    /// publishes the gauges. Returns the time until the next pass.
    private func refresh() async -> Duration {
        let interval = options.checkInterval
        var workers = self.workers
        if let registry {
            let stale = options.staleAfter.components
            let window = Double(stale.seconds) + Double(stale.attoseconds) / 1e18
            do {
                let registered = try await registry.workers(role: "controlnet", within: window)
                let fresh = Set(registered.map(\.address))
                for worker in workers where worker.registrationID != nil && !fresh.contains(worker.address) {
                    logger.warning(
                        "ControlNet worker dropped: its registration is stale or gone",
                        metadata: ["worker": "\(worker.address)", "id": "\(worker.registrationID ?? "")"])
                    worker.client.beginGracefulShutdown()
                }
                workers.removeAll { $0.registrationID != nil && !fresh.contains($0.address) }
                for entry in registered where !workers.contains(where: { $0.address == entry.address }) {
                    do {
                        workers.append(try Worker(address: entry.address, registrationID: entry.id, models: entry.models))
                    } catch {
                        logger.warning(
                            "a registered ControlNet worker has an unusable address", metadata: ["id": "\(entry.id)", "error": "\(error)"])
                    }
                }
            } catch {
                logger.warning("cannot read the registered ControlNet workers; keeping the known ones", metadata: ["error": "\(error)"])
            }
        }
        let options = self.options
        let results = await withTaskGroup(of: (Int, [String]?).self) { group in
            for (index, worker) in workers.enumerated() { group.addTask { (index, await Self.check(worker, options: options)) } }
            var results = [[String]?](repeating: nil, count: workers.count)
            for await (index, models) in group { results[index] = models }
            return results
        }
        for (worker, models) in zip(workers, results) {
            let passed = models != nil
            let before = worker.recordCheck(passed, models: models)
            if before && !passed {
                // A worker whose failed call was just reported (the fallback warning) is not reported twice.
                logger.log(
                    level: worker.isMarkedDown(at: .now) ? .info : .warning, "ControlNet worker failed its health check; left out until it passes",
                    metadata: ["worker": "\(worker.address)"])
            } else if !before && passed {
                logger.info("ControlNet worker healthy; in use", metadata: ["worker": "\(worker.address)", "id": "\(worker.registrationID ?? "static")"])
            }
        }
        let statics = workers.filter { $0.registrationID == nil }
        let registered = workers.filter { $0.registrationID != nil }.sorted { $0.address < $1.address }
        let cancelled = lock.withLock {
            // A close() meanwhile: no new set (its clients would stay open).
            if closed { return true }
            pool = statics + registered
            return false
        }
        if cancelled {
            for worker in registered { worker.client.beginGracefulShutdown() }
            return interval
        }
        let addresses = workerAddresses
        Gauge(label: "swiftdiffusion_controlnet_workers", dimensions: [("state", "known")]).record(addresses.known.count)
        Gauge(label: "swiftdiffusion_controlnet_workers", dimensions: [("state", "healthy")]).record(addresses.healthy.count)
        return interval
    }

    /// The health check: the `Models` RPC answers within `checkTimeout`; its ControlNet ids, or nil when it failed.
    private static func check(_ worker: Worker, options: Options) async -> [String]? {
        var callOptions = CallOptions.defaults
        callOptions.timeout = options.checkTimeout
        callOptions.waitForReady = false
        return try? await WorkerService.Client(wrapping: worker.client).models(ModelsRequest(), options: callOptions).controlnets
    }

    /// Calls that fell back to local ControlNets so far.
    public var fallbackCount: Int {
        lock.lock()
        defer { lock.unlock() }
        return fallbacks
    }

    /// Bare closures carry no inputs to send: they run here, one after another.
    public func step<Down>(
        controls: [@Sendable () throws -> ControlResiduals], downAndMid: () throws -> Down,
        up: (Down, ControlResiduals?) throws -> Tensor
    ) throws -> Tensor {
        let residuals = try controls.map { try $0() }
        return try up(try downAndMid(), ControlResiduals.sum(residuals))
    }

    public func step<Down>(
        calls: [ControlNetCall], downAndMid: () throws -> Down, up: (Down, ControlResiduals?) throws -> Tensor
    ) throws -> Tensor {
        guard !calls.isEmpty else { return try up(try downAndMid(), nil) }
        let now = ContinuousClock.now
        let healthy = workers.filter { $0.isHealthy(at: now) }
        let tickets: [(ControlResidualsTicket, Worker)?] = calls.map { call in
            guard let modelID = call.modelID, !isLocal(call.generationID) else { return nil }
            let serving = healthy.filter { $0.serves(modelID) }
            let key = "\(call.generationID)/\(call.controlIndex)"
            let worker: Worker
            if let assigned = assignment(key) {
                // A worker that failed its health check or left the registry since the request's last step: the
                // request finishes here, as after a failed call.
                guard serving.contains(where: { $0 === assigned }) else {
                    fallBack(call, worker: assigned, error: RemoteControlNetError("it failed its health check or left the registry"))
                    return nil
                }
                worker = assigned
            } else {
                guard !serving.isEmpty else { return nil }
                worker = serving[call.controlIndex % serving.count]
                assign(key, to: worker)
            }
            let ticket = ControlResidualsTicket()
            let options = self.options
            Task.detached {
                do {
                    ticket.fulfil(.success(try await Self.residuals(call, on: worker, options: options)))
                } catch {
                    ticket.fulfil(.failure(error))
                }
            }
            return (ticket, worker)
        }
        // The UNet's first half runs here meanwhile (an error here leaves the calls to finish on their own).
        let down = try downAndMid()
        var residuals: [ControlResiduals] = []
        for (call, sent) in zip(calls, tickets) {
            if let (ticket, worker) = sent {
                // The RPC has the deadline; the margin only guards against a transport that never answers.
                switch ticket.wait(timeout: options.timeout + .seconds(5)) {
                case .success(let value):
                    residuals.append(value)
                    continue
                case .failure(let error):
                    fallBack(call, worker: worker, error: error)
                case nil:
                    fallBack(call, worker: worker, error: RemoteControlNetError("no answer within \(options.timeout)"))
                }
            }
            residuals.append(try call())
        }
        return try up(down, ControlResiduals.sum(residuals))
    }

    private func assignment(_ key: String) -> Worker? {
        lock.withLock { assignments[key] }
    }

    private func assign(_ key: String, to worker: Worker) {
        lock.withLock {
            assignments[key] = worker
            assignmentOrder.append(key)
            if assignmentOrder.count > 4096 { assignments.removeValue(forKey: assignmentOrder.removeFirst()) }
        }
    }

    private func isLocal(_ generation: UUID) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        return localGenerations.contains(generation)
    }

    /// The rest of this generation runs its ControlNets here; the worker is left out for `retryAfter`.
    private func fallBack(_ call: ControlNetCall, worker: Worker, error: any Error) {
        Counter(label: "swiftdiffusion_controlnet_worker_fallbacks_total").increment()
        lock.lock()
        fallbacks += 1
        let first = !localGenerations.contains(call.generationID)
        if first {
            localGenerations.append(call.generationID)
            if localGenerations.count > 1024 { localGenerations.removeFirst() }
        }
        lock.unlock()
        let detail: String
        if let rpc = error as? RPCError { detail = "\(rpc.code): \(rpc.message)" } else { detail = "\(error)" }
        if let refusal = error as? RPCError, [.invalidArgument, .notFound, .resourceExhausted].contains(refusal.code) {
            // The worker is up but refused this call: keep it for other requests.
        } else {
            worker.markDown(until: ContinuousClock.now + options.retryAfter)
        }
        if first {
            logger.warning(
                "ControlNet worker failed; this request finishes with local ControlNets",
                metadata: [
                    "worker": "\(worker.address)", "controlnet": "\(call.modelID ?? "?")", "request": "\(call.generationID)",
                    "error": "\(detail)",
                ])
        }
    }

    // MARK: - One call

    static func residuals(_ call: ControlNetCall, on worker: Worker, options: Options) async throws -> ControlResiduals {
        guard let modelID = call.modelID else { throw RemoteControlNetError("the ControlNet has no id") }
        let imageKey = "\(call.generationID)/\(call.controlIndex)"
        var request = ResidualsRequest()
        request.requestID = call.generationID.uuidString
        request.controlIndex = UInt32(call.controlIndex)
        request.controlnet = modelID
        request.sample = WireFormat.encode(call.sample, as: options.wireFloat)
        request.timesteps = call.timesteps
        request.context = WireFormat.encode(call.conditioning.context, as: options.wireFloat)
        if let value = call.conditioning.textEmbeds { request.textEmbeds = WireFormat.encode(value, as: options.wireFloat) }
        if let value = call.conditioning.timeIds { request.timeIds = WireFormat.encode(value, as: .float32) }
        if let value = call.conditioning.timestepCondition { request.timestepCondition = WireFormat.encode(value, as: options.wireFloat) }
        request.conditioningScale = call.scaling.conditioningScale
        request.guessMode = call.scaling.guessMode
        request.replyDtype = options.wireFloat.dtype
        if !worker.hasImage(imageKey) { request.controlImage = WireFormat.encode(call.controlImage, as: options.wireFloat) }
        guard let expected = try? WireFormat.residualShapes(of: call.model.configuration, sample: call.sample.shape) else {
            throw RemoteControlNetError("cannot work out the residual shapes of this ControlNet")
        }
        let replyBytes = (expected.down + [expected.mid]).reduce(0) { $0 + $1.reduce(1, *) * options.wireFloat.bytes } + 1024
        guard replyBytes <= options.maximumMessageBytes else {
            throw RPCError(code: .resourceExhausted, message: "the residuals (\(replyBytes) bytes) exceed the message bound")
        }

        var callOptions = CallOptions.defaults
        callOptions.timeout = options.timeout
        callOptions.waitForReady = false
        callOptions.maxRequestMessageBytes = options.maximumMessageBytes
        callOptions.maxResponseMessageBytes = options.maximumMessageBytes
        let stub = WorkerService.Client(wrapping: worker.client)
        func send(_ request: ResidualsRequest) async throws -> ResidualsReply {
            let tensors = [request.sample, request.context, request.textEmbeds, request.timeIds, request.timestepCondition, request.controlImage]
            guard tensors.reduce(4096, { $0 + $1.data.count }) <= options.maximumMessageBytes else {
                throw RPCError(code: .resourceExhausted, message: "the call's inputs exceed the message bound of \(options.maximumMessageBytes) bytes")
            }
            return try await stub.residuals(request, options: callOptions)
        }
        let reply: ResidualsReply
        do {
            reply = try await send(request)
        } catch let error as RPCError where error.code == .failedPrecondition && !request.hasControlImage {
            // The worker no longer has the image (evicted, or restarted): send it again.
            request.controlImage = WireFormat.encode(call.controlImage, as: options.wireFloat)
            reply = try await send(request)
        }
        if request.hasControlImage { worker.sentImage(imageKey) }
        let down = try reply.down.enumerated().map { try WireFormat.decode($1, field: "down[\($0)]") }
        let mid = try WireFormat.decode(reply.mid, field: "mid")
        guard down.map(\.shape) == expected.down, mid.shape == expected.mid else {
            throw RemoteControlNetError("the worker's residuals have shapes \(down.map(\.shape)) + \(mid.shape), expected \(expected.down) + \(expected.mid)")
        }
        return call.finish(ControlResiduals(down: down, mid: mid))
    }
}

/// HOST:PORT, or [IPv6]:PORT (port 0 only where `allowPortZero`: listen on any free port).
public func parseHostPort(_ address: String, allowPortZero: Bool = false) throws -> (host: String, port: Int) {
    guard let colon = address.lastIndex(of: ":"), colon != address.startIndex, let port = Int(address[address.index(after: colon)...]),
        ((allowPortZero ? 0 : 1)...65535).contains(port)
    else { throw RemoteControlNetError("an address must be HOST:PORT, got '\(address)'") }
    var host = String(address[..<colon])
    if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
    guard !host.isEmpty else { throw RemoteControlNetError("an address must be HOST:PORT, got '\(address)'") }
    return (host, port)
}

/// A remote ControlNet problem, in words.
public struct RemoteControlNetError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
