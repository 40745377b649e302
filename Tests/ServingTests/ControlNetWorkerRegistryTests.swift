import Foundation
import Imaging
import Logging
import XCTest

@testable import RemoteControlNet
@testable import Serving

/// ControlNet workers across hosts (issue 14 item 3) on the real PostgreSQL: a worker on loopback registers itself in
/// the shared store; two replica engines on that store discover it and both run their ControlNets on it, giving the
/// local picture; the worker dies mid-request (server stopped, heartbeats stopped without deregistering, as after a
/// kill): that job finishes with local ControlNets, both replicas drop the worker once its heartbeat is stale, the
/// next job runs locally, no job is lost; a worker registering again is used again.
final class ControlNetWorkerRegistryTests: XCTestCase {
    private var schemas: [String] = []

    override func tearDown() async throws {
        for schema in schemas { await PostgresTestDatabase.drop(schema) }
        schemas = []
    }

    /// Two ControlNets (the second from a quarter of the schedule on), 4 steps, 32x32.
    static func spec(seed: UInt64 = 21) throws -> JobSpec {
        var spec = ServingFixtures.spec("a red circle", steps: 4, seed: seed)
        spec.controls = [
            ControlSpec(model: "sd1-controlnet", image: try ServingFixtures.controlImage, weight: 0.9),
            ControlSpec(model: "sd1-controlnet-b", image: try ServingFixtures.controlImage, preprocessor: "invert", start: 0.25, end: 1),
        ]
        return spec
    }

    /// Short windows, so drops and recoveries happen within a test.
    static var executorOptions: RemoteControlNetExecutor.Options {
        var options = RemoteControlNetExecutor.Options()
        options.checkInterval = .milliseconds(200)
        options.checkTimeout = .seconds(1)
        options.staleAfter = .seconds(3)
        options.retryAfter = .milliseconds(500)
        options.timeout = .seconds(20)
        return options
    }

    /// A ControlNet worker on 127.0.0.1 (ephemeral port) serving the fixture ControlNets, registered in `registry`
    /// with 200 ms heartbeats. `onCall` sees each Residuals call's number.
    final class RegisteredTestWorker: Sendable {
        let server: ControlNetWorkerServer
        let serving: Task<Void, any Error>
        let heartbeats: Task<Void, Never>
        let registration: WorkerRegistration

        init(id: String, registry: any WorkerRegistry, deregisterOnStop: Bool, onCall: (@Sendable (Int) async -> Void)? = nil) async throws {
            let repository = ServingFixtures.repository()
            let service = ControlNetWorkerService(
                options: .init(), logger: Logger(label: "test-worker"), available: { repository.list(.controlnet).map(\.id) },
                load: { try repository.loadControlNet($0) }, onCall: onCall)
            let server = ControlNetWorkerServer(host: "127.0.0.1", port: 0, service: service)
            self.server = server
            serving = Task { try await server.run() }
            let port = try await server.port()
            let registration = WorkerRegistration(
                registry: registry,
                worker: RegisteredWorker(id: id, address: "127.0.0.1:\(port)", role: "controlnet", models: repository.list(.controlnet).map(\.id)),
                interval: .milliseconds(200), logger: Logger(label: "test-worker"))
            self.registration = registration
            try await registration.register()
            heartbeats = Task { await registration.heartbeats(deregister: deregisterOnStop) }
        }

        var address: String { registration.worker.address }

        /// Stops heartbeating (deregistering or not, as configured) and serving.
        func stop() async {
            heartbeats.cancel()
            await heartbeats.value
            server.stop()
            _ = try? await serving.value
        }
    }

    /// Warnings and infos a logger was given.
    final class LogLines: LogHandler, @unchecked Sendable {
        private let lock = NSLock()
        private var lines: [(Logger.Level, String)] = []
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .info
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(event: LogEvent) { lock.withLock { lines.append((event.level, "\(event.message) \(event.metadata ?? [:])")) } }
        var warnings: [String] { lock.withLock { lines.filter { $0.0 == .warning }.map(\.1) } }
        var logger: Logger { Logger(label: "registry-test") { _ in self } }
    }

    private func waitUntil(_ what: String, seconds: Double = 20, _ condition: () async throws -> Bool) async throws {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if try await condition() { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        XCTFail("not within \(seconds) s: \(what)")
        throw TimeoutError(description: what)
    }

    /// Runs `spec` through `engine` (which must be the only running replica) and returns its picture.
    private func run(_ spec: JobSpec, on engine: GenerationEngine) async throws -> (JobRecord, RGBImage) {
        let job = try await engine.submit(spec)
        let finished = try await engine.waitUntilFinished(job.id, seconds: 120)
        XCTAssertEqual(finished.status, .succeeded, finished.error ?? "")
        let outputs = try await engine.outputs(job.id)
        XCTAssertEqual(outputs.count, 1)
        return (finished, try ImageCodec.decode(try XCTUnwrap(outputs.first)))
    }

    private func largestDifference(_ a: RGBImage, _ b: RGBImage) -> Int {
        XCTAssertEqual([a.width, a.height], [b.width, b.height])
        return zip(a.pixels, b.pixels).map { abs(Int($0) - Int($1)) }.max() ?? 0
    }

    func testAWorkerRegistersIsSharedByReplicasAndIsDroppedWhenItDies() async throws {
        let (url, schema) = try await PostgresTestDatabase.freshURL()
        schemas.append(schema)
        let spec = try Self.spec()

        // The picture with local ControlNets (no store, no worker).
        let local = ServingFixtures.engine()
        let runningLocal = RunningEngine(local)
        let (_, reference) = try await run(spec, on: local)
        try await runningLocal.stop()

        // The worker registers; it dies during its call number `killAt` (set before the third job).
        let workerStore = try await PostgresTestDatabase.store(url, replica: "worker-host")
        let killAt = KillSwitch()
        let worker = try await RegisteredTestWorker(id: "worker-host", registry: workerStore, deregisterOnStop: false) { number in
            await killAt.fire(at: number)
        }
        let rows = try await workerStore.workers(role: "controlnet", within: 10)
        XCTAssertEqual(rows.map(\.id), ["worker-host"])
        XCTAssertEqual(rows.first?.address, worker.address)
        XCTAssertEqual(rows.first?.models, ["sd1-controlnet", "sd1-controlnet-b"])
        XCTAssertNotNil(rows.first?.heartbeatAt)

        // Two replicas on the store, each with a remote executor that knows no static worker.
        var engines: [GenerationEngine] = []
        var executors: [RemoteControlNetExecutor] = []
        let logs = [LogLines(), LogLines()]
        for index in 0..<2 {
            let store = try await PostgresTestDatabase.store(url, replica: "replica-\(index)", lease: 2)
            let executor = try RemoteControlNetExecutor(workers: [], registry: store, options: Self.executorOptions, logger: logs[index].logger)
            executors.append(executor)
            var configuration = EngineConfiguration()
            configuration.controlNetExecutor = executor
            engines.append(ServingFixtures.engine(configuration: configuration, store: store))
        }
        defer { for executor in executors { executor.close() } }
        for executor in executors {
            try await waitUntil("both replicas discover the worker") { executor.workerAddresses.healthy == [worker.address] }
        }

        // Each replica runs one job on the worker (one replica running at a time, so each claims its own; the second
        // keeps running for the rest of the test).
        var jobs: [JobRecord] = []
        var running = RunningEngine(engines[0])
        for (index, engine) in engines.enumerated() {
            let calls = worker.server.callCount
            if index == 1 {
                try await running.stop()
                running = RunningEngine(engine)
            }
            let (job, image) = try await run(try Self.spec(seed: 21), on: engine)
            jobs.append(job)
            let served = worker.server.callCount - calls
            let largest = largestDifference(image, reference)
            print("[registry] replica \(index) through the registered worker: \(served) calls, largest pixel difference \(largest) of 255")
            XCTAssertGreaterThanOrEqual(served, 4, "replica \(index)'s ControlNets ran on the worker")
            XCTAssertLessThanOrEqual(largest, 1)
            XCTAssertEqual(executors[index].fallbackCount, 0)
            let claims = await engine.placementStats?.claims
            XCTAssertEqual(claims, 1, "replica \(index) ran its job")
        }

        // The worker dies during the second call of the next job (replica 1): that job finishes locally.
        await killAt.arm(at: worker.server.callCount + 2) { await worker.stop() }
        let (dying, dyingImage) = try await run(try Self.spec(seed: 21), on: engines[1])
        jobs.append(dying)
        XCTAssertLessThanOrEqual(largestDifference(dyingImage, reference), 1)
        XCTAssertGreaterThanOrEqual(executors[1].fallbackCount, 1, "the job fell back to local ControlNets")
        XCTAssertTrue(
            logs[1].warnings.contains { $0.contains("finishes with local ControlNets") }, "the fallback is logged: \(logs[1].warnings)")

        // Both replicas drop it: its checks fail at once, its heartbeat goes stale after 3 s.
        for (index, executor) in executors.enumerated() {
            try await waitUntil("replica \(index) drops the dead worker") { executor.workerAddresses.known.isEmpty }
            XCTAssertTrue(
                logs[index].warnings.contains { $0.contains("dropped: its registration is stale or gone") }, "\(logs[index].warnings)")
        }
        // The next job runs locally without trying the worker.
        let fallbacks = executors[1].fallbackCount
        let (afterDrop, afterDropImage) = try await run(try Self.spec(seed: 21), on: engines[1])
        jobs.append(afterDrop)
        XCTAssertLessThanOrEqual(largestDifference(afterDropImage, reference), 1)
        XCTAssertEqual(executors[1].fallbackCount, fallbacks, "a dropped worker is not tried")

        // It comes back (registered again, on a new port): used again.
        let revived = try await RegisteredTestWorker(id: "worker-host", registry: workerStore, deregisterOnStop: true)
        try await waitUntil("the worker is used again") { executors[1].workerAddresses.healthy == [revived.address] }
        let (again, againImage) = try await run(try Self.spec(seed: 21), on: engines[1])
        jobs.append(again)
        XCTAssertGreaterThanOrEqual(revived.server.callCount, 4)
        XCTAssertLessThanOrEqual(largestDifference(againImage, reference), 1)
        try await running.stop()
        await revived.stop()

        // No job lost or run twice.
        XCTAssertEqual(jobs.map(\.attempts), [1, 1, 1, 1, 1])
        let counts = try await engines[0].counts()
        XCTAssertEqual(counts, [.succeeded: 5])
    }

    /// A clean shutdown deletes the worker's row: replicas drop it at their next check, without waiting for staleness.
    func testACleanShutdownDeregisters() async throws {
        let (url, schema) = try await PostgresTestDatabase.freshURL()
        schemas.append(schema)
        let store = try await PostgresTestDatabase.store(url, replica: "replica")
        let worker = try await RegisteredTestWorker(id: "w1", registry: store, deregisterOnStop: true)
        var options = Self.executorOptions
        options.staleAfter = .seconds(600)
        let logs = LogLines()
        let executor = try RemoteControlNetExecutor(workers: [], registry: store, options: options, logger: logs.logger)
        defer { executor.close() }
        try await waitUntil("discovered") { executor.workerAddresses.healthy == [worker.address] }
        // A heartbeat moves the row's timestamp forward.
        let first = try await store.workers(role: "controlnet", within: 600).first?.heartbeatAt
        try await Task.sleep(for: .milliseconds(500))
        let later = try await store.workers(role: "controlnet", within: 600).first?.heartbeatAt
        XCTAssertGreaterThan(try XCTUnwrap(later), try XCTUnwrap(first))
        // Other roles do not see it.
        let others = try await store.workers(role: "unet-branch", within: 600)
        XCTAssertEqual(others, [])
        await worker.stop()
        let rows = try await store.workers(role: "controlnet", within: 600)
        XCTAssertEqual(rows, [], "the row is gone after a clean shutdown")
        try await waitUntil("dropped", seconds: 5) { executor.workerAddresses.known.isEmpty }
    }
}

/// Runs an action when the worker receives a given call number (once).
actor KillSwitch {
    private var at: Int?
    private var action: (@Sendable () async -> Void)?

    func arm(at number: Int, _ action: @escaping @Sendable () async -> Void) {
        at = number
        self.action = action
    }

    func fire(at number: Int) async {
        guard let at, number >= at, let action else { return }
        self.action = nil
        // Not awaited here: stopping the server waits for this call, which is in flight.
        Task { await action() }
    }
}
