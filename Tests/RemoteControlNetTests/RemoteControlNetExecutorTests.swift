import Compute
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import Imaging
import Logging
import Models
import ParityTesting
import Pipelines
import Weights
import XCTest

@testable import RemoteControlNet

/// Runs blocking compute on an OS thread of its own (never on Swift's cooperative pool, which the gRPC
/// client and server need meanwhile).
func onThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        let thread = Thread { continuation.resume(with: Result { try body() }) }
        thread.stackSize = 64 << 20
        thread.start()
    }
}

/// The `remote` ControlNet executor (issue 12 item 2): ControlNet workers in other processes or hosts over gRPC.
/// Workers here are in-process gRPC servers on loopback, on ephemeral ports; the wire is real HTTP/2.
final class RemoteControlNetExecutorTests: XCTestCase {
    static let models = Golden.fixturesDirectory.appendingPathComponent("models")
    static let tolerance: Float = 1e-4
    static let controlnetIDs = ["sd1-controlnet", "sd1-controlnet-b"]

    static func loadControlNet(_ id: String) throws -> (ControlNetModel, bytes: Int) {
        let folder = try ComponentFolder(models.appendingPathComponent(id))
        return (try ControlNetModel(configData: try folder.configData, weights: try folder.weights()), 1 << 20)
    }

    static func drawing(_ size: Int, every stride: Int) -> RGBImage {
        var pixels = [UInt8](repeating: 0, count: size * size * 3)
        for i in Swift.stride(from: 0, to: pixels.count, by: stride) { pixels[i] = 255 }
        return RGBImage(width: size, height: size, pixels: pixels)
    }

    /// A worker on 127.0.0.1 with an ephemeral port. (Cancelling its serving task would end it abruptly, but
    /// grpc-swift-nio-transport 2.9.2 can then trap with "Deinited NIOAsyncWriter without calling finish()" in
    /// the server, so in process workers are stopped; a worker killed with SIGKILL is `RemoteWorkerCommandTests`.)
    final class RunningWorker: Sendable {
        let service: ControlNetWorkerService
        let server: ControlNetWorkerServer
        let task: Task<Void, any Error>
        let port: Int
        var address: String { "127.0.0.1:\(port)" }

        /// Serves the SD 1.x fixture ControlNets unless `serving` and `load` name others.
        init(
            options: ControlNetWorkerService.Options = .init(), listenPort: Int = 0, serving: [String] = RemoteControlNetExecutorTests.controlnetIDs,
            load: @escaping @Sendable (String) throws -> (ControlNetModel, bytes: Int) = { try RemoteControlNetExecutorTests.loadControlNet($0) },
            onCall: (@Sendable (Int) async -> Void)? = nil
        ) async throws {
            service = ControlNetWorkerService(
                options: options, logger: Logger(label: "test-worker"), available: { serving }, load: load, onCall: onCall)
            let server = ControlNetWorkerServer(host: "127.0.0.1", port: listenPort, service: service)
            self.server = server
            task = Task { try await server.run() }
            port = try await server.port()
        }

        func stop() async {
            server.stop()
            _ = try? await task.value
        }
    }

    /// Warnings a logger was given.
    final class LogRecorder: LogHandler, @unchecked Sendable {
        final class Lines: @unchecked Sendable {
            private let lock = NSLock()
            private var lines: [(Logger.Level, String)] = []
            func append(_ level: Logger.Level, _ line: String) { lock.withLock { lines.append((level, line)) } }
            var warnings: [String] { lock.withLock { lines.filter { $0.0 == .warning }.map(\.1) } }
        }
        let lines = Lines()
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .info
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(event: LogEvent) {
            lines.append(event.level, "\(event.message) \(event.metadata ?? [:])")
        }
        var logger: Logger { Logger(label: "test") { _ in self } }
    }

    /// A pipeline and its generation, moved to a thread of their own.
    final class Job: @unchecked Sendable {
        let pipeline: DiffusionPipeline
        let request: GenerationRequest
        init(_ pipeline: DiffusionPipeline, _ request: GenerationRequest) {
            self.pipeline = pipeline
            self.request = request
        }

        func latents(with executor: any ControlNetExecutor) throws -> Tensor {
            pipeline.controlNetExecutor = executor
            return try pipeline.generate(request).latents
        }
    }

    func sd1Pipeline() throws -> DiffusionPipeline {
        DiffusionPipeline(model: try StableDiffusionModel(folder: Self.models.appendingPathComponent("sd1")))
    }

    /// One ControlNet, or two (the second in guess mode, active only in the middle of the schedule).
    func request(controls: Int, seed: UInt64 = 9) throws -> GenerationRequest {
        var request = GenerationRequest(
            prompt: "a red circle", negativePrompt: "blue", width: 32, height: 32, steps: 4, sampler: .dpmPlusPlus2M, seed: seed, decode: false)
        let (first, _) = try Self.loadControlNet("sd1-controlnet")
        request.controls = [ControlInput(model: first, image: Self.drawing(32, every: 7), scale: 0.8, modelID: "sd1-controlnet")]
        if controls == 2 {
            let (second, _) = try Self.loadControlNet("sd1-controlnet-b")
            request.controls.append(
                ControlInput(
                    model: second, image: Self.drawing(32, every: 5), scale: 1.2, start: 0.25, end: 0.75, guessMode: true,
                    modelID: "sd1-controlnet-b"))
        }
        return request
    }

    // MARK: - Parity

    /// The remote executor gives the sequential executor's latents (≤ 1e-4) for one and two ControlNets, with one
    /// worker and with two (the two ControlNets of a step then run on different workers), and every ControlNet call
    /// really crossed the wire (no fallback).
    func testRemoteMatchesSequentialForOneAndTwoControlNets() async throws {
        let first = try await RunningWorker()
        let second = try await RunningWorker()
        let recorder = LogRecorder()
        for controls in [1, 2] {
            let job = Job(try sd1Pipeline(), try request(controls: controls))
            let reference = try await onThread { try job.latents(with: SequentialControlNetExecutor()) }
            for addresses in [[first.address], [first.address, second.address]] {
                let calls = (first.service.callCount, second.service.callCount)
                let executor = try RemoteControlNetExecutor(workers: addresses, logger: recorder.logger)
                defer { executor.close() }
                let remote = try await onThread { try job.latents(with: executor) }
                let difference = remote.maxAbsDifference(reference)
                print("[parity] remote, \(controls) ControlNet(s), \(addresses.count) worker(s): max abs difference \(difference)")
                XCTAssertLessThan(difference, Self.tolerance, "\(controls) ControlNets on \(addresses.count) workers")
                XCTAssertEqual(executor.fallbackCount, 0)
                // 4 steps; the second ControlNet acts in 2 of them.
                let expected = controls == 1 ? 4 : 6
                let served = (first.service.callCount - calls.0) + (second.service.callCount - calls.1)
                XCTAssertEqual(served, expected, "every call crossed the wire")
                if addresses.count == 2 && controls == 2 {
                    XCTAssertEqual(second.service.callCount - calls.1, 2, "the second ControlNet runs on the second worker")
                }
            }
        }
        XCTAssertEqual(recorder.lines.warnings, [])
        // The ControlNets matter: without them the latents differ (the comparison above is not vacuous).
        var plain = try request(controls: 1)
        plain.controls = []
        let withJob = Job(try sd1Pipeline(), try request(controls: 1)), withoutJob = Job(try sd1Pipeline(), plain)
        let withControl = try await onThread { try withJob.latents(with: SequentialControlNetExecutor()) }
        let without = try await onThread { try withoutJob.latents(with: SequentialControlNetExecutor()) }
        XCTAssertGreaterThan(without.maxAbsDifference(withControl), 1e-3)
        await first.stop()
        await second.stop()
    }

    /// SDXL over the wire (pooled text embeddings and time ids travel with every call): one ControlNet, then two (the
    /// second in guess mode, active only in the middle of the schedule) spread over two workers, with guidance and
    /// without; the same latents as sequential (≤ 1e-4), no fallback.
    func testRemoteMatchesSequentialOnSDXL() async throws {
        let config = try FixtureModels.sdxlControlNetConfig()
        let ids = ["sdxl-controlnet", "sdxl-controlnet-b"]
        @Sendable func load(_ id: String) throws -> (ControlNetModel, bytes: Int) {
            guard let index = ids.firstIndex(of: id) else { throw CocoaError(.fileNoSuchFile) }
            return (try ControlNetModel(configData: config, weights: RandomWeights(seed: 11 + UInt64(index))), 1 << 20)
        }
        let first = try await RunningWorker(serving: ids, load: load)
        let second = try await RunningWorker(serving: ids, load: load)
        let pipeline = DiffusionPipeline(model: try StableDiffusionModel(folder: Self.models.appendingPathComponent("sdxl")))
        var request = GenerationRequest(
            prompt: "a blue square", negativePrompt: "red", width: 32, height: 32, steps: 4, sampler: .euler, seed: 3, decode: false)
        request.controls = [ControlInput(model: try load(ids[0]).0, image: Self.drawing(32, every: 3), scale: 1, modelID: ids[0])]
        var requests = [request]
        request.controls.append(
            ControlInput(
                model: try load(ids[1]).0, image: Self.drawing(32, every: 5), scale: 0.7, start: 0.25, end: 0.75, guessMode: true,
                modelID: ids[1]))
        requests.append(request)
        request.guidanceScale = 1
        requests.append(request)
        for request in requests {
            let job = Job(pipeline, request)
            let reference = try await onThread { try job.latents(with: SequentialControlNetExecutor()) }
            let executor = try RemoteControlNetExecutor(workers: [first.address, second.address], logger: Logger(label: "test"))
            defer { executor.close() }
            let calls = first.service.callCount + second.service.callCount
            let remote = try await onThread { try job.latents(with: executor) }
            let difference = remote.maxAbsDifference(reference)
            print("[parity] remote SDXL, \(request.controls.count) ControlNet(s), guidance \(request.guidanceScale): max abs difference \(difference)")
            XCTAssertLessThan(difference, Self.tolerance)
            XCTAssertEqual(executor.fallbackCount, 0)
            XCTAssertEqual(first.service.callCount + second.service.callCount - calls, request.controls.count == 1 ? 4 : 6)
        }
        // The ControlNets matter here too.
        var plain = requests[1]
        plain.controls = []
        let withJob = Job(pipeline, requests[1]), withoutJob = Job(pipeline, plain)
        let withControl = try await onThread { try withJob.latents(with: SequentialControlNetExecutor()) }
        let without = try await onThread { try withoutJob.latents(with: SequentialControlNetExecutor()) }
        XCTAssertGreaterThan(without.maxAbsDifference(withControl), 1e-3)
        await first.stop()
        await second.stop()
    }

    /// fp16 on the wire: close to the float32 result, not identical (it really is narrower).
    func testFloat16OnTheWire() async throws {
        let worker = try await RunningWorker()
        let job = Job(try sd1Pipeline(), try request(controls: 2))
        let reference = try await onThread { try job.latents(with: SequentialControlNetExecutor()) }
        var options = RemoteControlNetExecutor.Options()
        options.wireFloat = .float16
        let executor = try RemoteControlNetExecutor(workers: [worker.address], options: options, logger: Logger(label: "test"))
        defer { executor.close() }
        let remote = try await onThread { try job.latents(with: executor) }
        let difference = remote.maxAbsDifference(reference)
        print("[parity] remote fp16 wire, 2 ControlNets: max abs difference \(difference)")
        XCTAssertEqual(executor.fallbackCount, 0)
        XCTAssertGreaterThan(difference, 0)
        XCTAssertLessThan(difference, 2e-2)
        await worker.stop()
    }

    // MARK: - Sharing

    /// One worker serves two engines (two pipelines, two requests) at the same time: the worker holds its first call
    /// until a call of the other engine arrives, which happens only if both are in flight together.
    func testOneWorkerServesTwoEnginesAtOnce() async throws {
        let gate = Gate()
        let worker = try await RunningWorker(onCall: { number in
            if number == 1 { gate.firstArrived() } else { gate.otherArrived() }
            if number == 1 { await gate.waitForOther(seconds: 20) }
        })
        let jobA = Job(try sd1Pipeline(), try request(controls: 2, seed: 1))
        let jobB = Job(try sd1Pipeline(), try request(controls: 1, seed: 2))
        let referenceA = try await onThread { try jobA.latents(with: SequentialControlNetExecutor()) }
        let referenceB = try await onThread { try jobB.latents(with: SequentialControlNetExecutor()) }
        let executorA = try RemoteControlNetExecutor(workers: [worker.address], logger: Logger(label: "a"))
        let executorB = try RemoteControlNetExecutor(workers: [worker.address], logger: Logger(label: "b"))
        defer {
            executorA.close()
            executorB.close()
        }
        async let a = onThread { try jobA.latents(with: executorA) }
        async let b = onThread { try jobB.latents(with: executorB) }
        let (latentsA, latentsB) = try await (a, b)
        XCTAssertTrue(gate.overlapped, "the second engine's call arrived while the first engine's was held")
        XCTAssertLessThan(latentsA.maxAbsDifference(referenceA), Self.tolerance)
        XCTAssertLessThan(latentsB.maxAbsDifference(referenceB), Self.tolerance)
        XCTAssertEqual(executorA.fallbackCount + executorB.fallbackCount, 0)
        XCTAssertEqual(worker.service.callCount, 6 + 4)
        await worker.stop()
    }

    final class Gate: @unchecked Sendable {
        private let lock = NSLock()
        private var first = false, other = false
        private(set) var overlapped = false
        func firstArrived() { lock.withLock { first = true } }
        func otherArrived() {
            lock.withLock {
                other = true
                if first { overlapped = true }
            }
        }
        func waitForOther(seconds: Double) async {
            let deadline = Date(timeIntervalSinceNow: seconds)
            while Date() < deadline {
                if lock.withLock({ other }) { return }
                try? await Task.sleep(for: .milliseconds(5))
            }
        }
    }

    // MARK: - Failure

    /// A worker stopped mid-request (its server shut down while it serves the second call; the calls of the next
    /// steps find no worker): the request finishes with local ControlNets, gives the sequential latents, and logs
    /// one warning; no error reaches the caller.
    func testWorkerStoppedMidRequestFinishesLocallyWithAWarning() async throws {
        let holder = WorkerHolder()
        let worker = try await RunningWorker(onCall: { number in
            guard number == 2 else { return }
            holder.worker?.server.stop()
        })
        holder.worker = worker
        let job = Job(try sd1Pipeline(), try request(controls: 2))
        let reference = try await onThread { try job.latents(with: SequentialControlNetExecutor()) }
        let recorder = LogRecorder()
        let executor = try RemoteControlNetExecutor(workers: [worker.address], logger: recorder.logger)
        defer { executor.close() }
        let latents = try await onThread { try job.latents(with: executor) }
        XCTAssertLessThan(latents.maxAbsDifference(reference), Self.tolerance)
        XCTAssertGreaterThanOrEqual(executor.fallbackCount, 1)
        XCTAssertEqual(recorder.lines.warnings.count, 1, "\(recorder.lines.warnings)")
        XCTAssertTrue(recorder.lines.warnings.first?.contains("finishes with local ControlNets") ?? false)
        // The next request does not wait for the dead worker: it runs locally at once and is right too.
        let again = try await onThread { try job.latents(with: executor) }
        XCTAssertLessThan(again.maxAbsDifference(reference), Self.tolerance)
        holder.worker = nil
    }

    final class WorkerHolder: @unchecked Sendable {
        var worker: RunningWorker?
    }

    final class ExecutorHolder: @unchecked Sendable {
        var executor: RemoteControlNetExecutor?
    }

    /// A worker that fails its health check while it serves a request (stopped during its second call, which it
    /// still answers; the call returns only once the executor has left the worker out): the request's next steps
    /// do not silently change course but count as a fallback, with the request's one warning, and give the
    /// sequential latents. (Which of the two a dying worker meets first, the failed call or the failed check, is a
    /// race; both end the same way.)
    func testAWorkerFailingItsHealthCheckMidRequestIsAFallback() async throws {
        let workerHolder = WorkerHolder(), executorHolder = ExecutorHolder()
        let worker = try await RunningWorker(onCall: { number in
            guard number == 2 else { return }
            workerHolder.worker?.server.stop()
            let deadline = Date().addingTimeInterval(20)
            while executorHolder.executor?.workerAddresses.healthy.isEmpty == false, Date() < deadline {
                try? await Task.sleep(for: .milliseconds(20))
            }
        })
        workerHolder.worker = worker
        let job = Job(try sd1Pipeline(), try request(controls: 1))
        let reference = try await onThread { try job.latents(with: SequentialControlNetExecutor()) }
        let recorder = LogRecorder()
        var options = RemoteControlNetExecutor.Options()
        options.checkInterval = .milliseconds(100)
        options.checkTimeout = .milliseconds(500)
        let executor = try RemoteControlNetExecutor(workers: [worker.address], options: options, logger: recorder.logger)
        executorHolder.executor = executor
        defer { executor.close() }
        let latents = try await onThread { try job.latents(with: executor) }
        XCTAssertLessThan(latents.maxAbsDifference(reference), Self.tolerance)
        XCTAssertTrue(executor.workerAddresses.healthy.isEmpty, "the worker failed its check during the request")
        XCTAssertEqual(executor.fallbackCount, 1)
        let fallbacks = recorder.lines.warnings.filter { $0.contains("finishes with local ControlNets") }
        XCTAssertEqual(fallbacks.count, 1, "\(recorder.lines.warnings)")
        XCTAssertTrue(fallbacks.first?.contains("failed its health check") ?? false, "\(fallbacks)")
        XCTAssertEqual(worker.service.callCount, 2, "nothing more was sent to it")
        executorHolder.executor = nil
        workerHolder.worker = nil
    }

    /// A worker slower than the deadline: the request finishes locally with a warning, within about the deadline.
    func testWorkerTimeoutFinishesLocally() async throws {
        let worker = try await RunningWorker(onCall: { _ in try? await Task.sleep(for: .seconds(3)) })
        let job = Job(try sd1Pipeline(), try request(controls: 1))
        let reference = try await onThread { try job.latents(with: SequentialControlNetExecutor()) }
        let recorder = LogRecorder()
        var options = RemoteControlNetExecutor.Options()
        options.timeout = .milliseconds(300)
        let executor = try RemoteControlNetExecutor(workers: [worker.address], options: options, logger: recorder.logger)
        defer { executor.close() }
        let start = Date()
        let latents = try await onThread { try job.latents(with: executor) }
        XCTAssertLessThan(Date().timeIntervalSince(start), 2.5, "one deadline, then local for the rest of the request")
        XCTAssertLessThan(latents.maxAbsDifference(reference), Self.tolerance)
        XCTAssertEqual(recorder.lines.warnings.count, 1)
        worker.server.stop()
    }

    /// Health checks (issue 14 item 3): a worker that stops answering the `Models` call is left out of new calls
    /// (one warning) while it stays in the set; back on the same address, it is used again (one info line).
    func testAWorkerFailingItsHealthCheckIsLeftOutUntilItPassesAgain() async throws {
        let worker = try await RunningWorker()
        let address = worker.address, port = worker.port
        let recorder = LogRecorder()
        var options = RemoteControlNetExecutor.Options()
        options.checkInterval = .milliseconds(100)
        options.checkTimeout = .milliseconds(500)
        let executor = try RemoteControlNetExecutor(workers: [address], options: options, logger: recorder.logger)
        defer { executor.close() }
        func wait(_ what: String, _ condition: () -> Bool) async throws {
            let deadline = Date().addingTimeInterval(20)
            while !condition() {
                guard Date() < deadline else { return XCTFail("not within 20 s: \(what)") }
                try await Task.sleep(for: .milliseconds(20))
            }
        }
        XCTAssertEqual(executor.workerAddresses.healthy, [address])
        await worker.stop()
        try await wait("the stopped worker fails its check") { executor.workerAddresses.healthy.isEmpty }
        XCTAssertEqual(executor.workerAddresses.known, [address], "a static worker stays known")
        XCTAssertEqual(recorder.lines.warnings.filter { $0.contains("failed its health check") }.count, 1, "\(recorder.lines.warnings)")
        // Nothing is sent to it meanwhile: a request runs locally, without a fallback.
        let job = Job(try sd1Pipeline(), try request(controls: 1))
        let reference = try await onThread { try job.latents(with: SequentialControlNetExecutor()) }
        let local = try await onThread { try job.latents(with: executor) }
        XCTAssertLessThan(local.maxAbsDifference(reference), Self.tolerance)
        XCTAssertEqual(executor.fallbackCount, 0)
        // Back on the same port: used again.
        let revived = try await RunningWorker(listenPort: port)
        try await wait("the worker passes its check again") { executor.workerAddresses.healthy == [address] }
        let remote = try await onThread { try job.latents(with: executor) }
        XCTAssertLessThan(remote.maxAbsDifference(reference), Self.tolerance)
        XCTAssertEqual(revived.service.callCount, 4, "the request ran on the worker again")
        XCTAssertEqual(executor.fallbackCount, 0)
        await revived.stop()
    }

    /// Calls go to a worker that serves their ControlNet (learned from its health check): with workers listed
    /// [serves only B, serves only A], `i mod n` alone would send each ControlNet to the wrong one (NOT_FOUND, a
    /// fallback); every call crosses the wire to the right worker instead.
    func testCallsGoToAWorkerThatServesTheirControlNet() async throws {
        let onlyA = try await RunningWorker(serving: ["sd1-controlnet"])
        let onlyB = try await RunningWorker(serving: ["sd1-controlnet-b"])
        var options = RemoteControlNetExecutor.Options()
        options.checkInterval = .milliseconds(100)
        let recorder = LogRecorder()
        let executor = try RemoteControlNetExecutor(workers: [onlyB.address, onlyA.address], options: options, logger: recorder.logger)
        defer { executor.close() }
        let deadline = Date().addingTimeInterval(20)
        while executor.servedModels.count < 2, Date() < deadline { try await Task.sleep(for: .milliseconds(20)) }
        XCTAssertEqual(executor.servedModels, [onlyA.address: ["sd1-controlnet"], onlyB.address: ["sd1-controlnet-b"]])
        let job = Job(try sd1Pipeline(), try request(controls: 2))
        let reference = try await onThread { try job.latents(with: SequentialControlNetExecutor()) }
        let latents = try await onThread { try job.latents(with: executor) }
        XCTAssertLessThan(latents.maxAbsDifference(reference), Self.tolerance)
        XCTAssertEqual(executor.fallbackCount, 0, "\(recorder.lines.warnings)")
        XCTAssertEqual(onlyA.service.callCount, 4)
        XCTAssertEqual(onlyB.service.callCount, 2)
        await onlyA.stop()
        await onlyB.stop()
    }

    // MARK: - Bad messages

    /// Malformed calls get a clear gRPC status and the worker keeps serving.
    func testInvalidMessagesGetClearErrors() async throws {
        var options = ControlNetWorkerService.Options()
        options.maximumMessageBytes = 1 << 20
        let worker = try await RunningWorker(options: options)
        let (model, _) = try Self.loadControlNet("sd1-controlnet")
        let inChannels = model.configuration.unet.inChannels
        func valid() -> ResidualsRequest {
            var request = ResidualsRequest()
            request.requestID = "r1"
            request.controlnet = "sd1-controlnet"
            request.sample = WireFormat.encode(Tensor(shape: [1, 4, 4, inChannels], repeating: 0.1), as: .float32)
            request.timesteps = [500]
            let width = (try? model.configuration.unet.crossAttentionDim.values(count: model.configuration.unet.blockOutChannels.count, field: ""))?[0] ?? 0
            request.context = WireFormat.encode(Tensor(shape: [1, 7, width], repeating: 0.2), as: .float32)
            let side = 4 * WireFormat.controlImageScale(of: model.configuration)
            request.controlImage = WireFormat.encode(Tensor(shape: [1, side, side, 3], repeating: 0.5), as: .float32)
            request.conditioningScale = 1
            return request
        }
        try await withGRPCClient(transport: try .http2NIOPosix(target: .ipv4(address: "127.0.0.1", port: worker.port), transportSecurity: .plaintext)) {
            client in
            let stub = WorkerService.Client(wrapping: client)
            func expect(_ code: RPCError.Code, containing text: String, _ request: ResidualsRequest, line: UInt = #line) async {
                var options = CallOptions.defaults
                options.maxRequestMessageBytes = 64 << 20
                do {
                    _ = try await stub.residuals(request, options: options)
                    XCTFail("expected \(code)", line: line)
                } catch let error as RPCError {
                    XCTAssertEqual(error.code, code, error.message, line: line)
                    XCTAssertTrue(error.message.contains(text), "\(error.message) should mention \(text)", line: line)
                } catch {
                    XCTFail("unexpected \(error)", line: line)
                }
            }
            // A valid call works (and the residuals have the shapes the client expects).
            let reply = try await stub.residuals(valid())
            let shapes = try WireFormat.residualShapes(of: model.configuration, sample: [1, 4, 4, inChannels])
            XCTAssertEqual(try reply.down.map { try WireFormat.decode($0, field: "").shape }, shapes.down)
            XCTAssertEqual(try WireFormat.decode(reply.mid, field: "").shape, shapes.mid)

            var request = valid()
            request.sample = WireFormat.encode(Tensor(shape: [1, 4, 4, inChannels + 1], repeating: 0), as: .float32)
            await expect(.invalidArgument, containing: "sample", request)
            request = valid()
            request.sample.data = request.sample.data.prefix(10)
            await expect(.invalidArgument, containing: "bytes", request)
            request = valid()
            request.sample.shape = [1, 70000, 1, 4]
            await expect(.invalidArgument, containing: "dimension", request)
            request = valid()
            request.context = WireFormat.encode(Tensor(shape: [2, 7, 3], repeating: 0), as: .float32)
            await expect(.invalidArgument, containing: "context", request)
            request = valid()
            request.controlImage = WireFormat.encode(Tensor(shape: [1, 3, 3, 3], repeating: 0), as: .float32)
            await expect(.invalidArgument, containing: "control_image", request)
            request = valid()
            request.timesteps = [1, 2, 3]
            await expect(.invalidArgument, containing: "timesteps", request)
            request = valid()
            request.controlnet = "nope"
            await expect(.notFound, containing: "nope", request)
            request = valid()
            request.requestID = "never-sent"
            request.clearControlImage()
            await expect(.failedPrecondition, containing: "control image", request)
            // Over the 1 MiB bound: refused before it is read whole.
            request = valid()
            request.controlImage = WireFormat.encode(Tensor(shape: [1, 32, 32 * 100, 3], repeating: 0), as: .float32)
            var oversized = CallOptions.defaults
            oversized.maxRequestMessageBytes = 64 << 20
            do {
                _ = try await stub.residuals(request, options: oversized)
                XCTFail("an oversized message must be refused")
            } catch let error as RPCError {
                XCTAssertFalse(error.message.isEmpty)
                print("[bounds] oversized message: \(error.code): \(error.message)")
            }
            // Still serving, and the image sent with the first call is cached under its request id.
            var cached = valid()
            cached.clearControlImage()
            _ = try await stub.residuals(cached)
            let models = try await stub.models(ModelsRequest())
            XCTAssertEqual(models.controlnets, Self.controlnetIDs)
            XCTAssertEqual(models.resident, ["sd1-controlnet"])
        }
        await worker.stop()
    }

    /// An executor refuses a malformed worker address with a message.
    func testWorkerAddressesAreChecked() throws {
        XCTAssertThrowsError(try RemoteControlNetExecutor(workers: ["nohost"], logger: Logger(label: "t")))
        XCTAssertThrowsError(try RemoteControlNetExecutor(workers: ["h:0"], logger: Logger(label: "t")))
        XCTAssertThrowsError(try RemoteControlNetExecutor(workers: [], logger: Logger(label: "t")))
        XCTAssertEqual(try parseHostPort("[::1]:50051").host, "::1")
    }
}
