import Adapters
import Foundation
import Logging
import ParityTesting
import Pipelines
import XCTest

@testable import Serving

/// The adapter schedule (bounded asynchronous LoRA loading) against the real denoising loop on the tiny SD 1.x
/// fixture: its deadline is never exceeded, a slow loader lands exactly at step K, and LoRAs loaded synchronously
/// give the same latents as patching them directly.
final class AdapterScheduleTests: XCTestCase {
    static let models = Golden.fixturesDirectory.appendingPathComponent("models")

    private func setUp() throws -> (DiffusionPipeline, GenerationRequest, LoRAApplication) {
        let pipeline = DiffusionPipeline(model: try StableDiffusionModel(contentsOf: Self.models.appendingPathComponent("sd1")))
        let network = try LoRANetwork.load(contentsOf: Self.models.appendingPathComponent("sd1-lora.safetensors"))
        let lora = LoRAApplication(try LoRAKeyMap.resolve(network, targets: pipeline.model.loraTargets), weight: 0.8)
        let request = GenerationRequest(
            prompt: "a red circle", negativePrompt: "", width: 32, height: 32, steps: 8, sampler: .euler, seed: 9, decode: false)
        return (pipeline, request, lora)
    }

    /// A loader slower than the whole run: the loop waits at step K, and the LoRA lands there, recorded.
    func testASlowLoaderLandsAtTheDeadlineStep() throws {
        let (pipeline, request, lora) = try setUp()
        let loader = ComputeThread(name: "slow-lora-loader")
        for deadline in [1, 3, 5] {
            let schedule = AdapterSchedule(deadlineStep: deadline, loadingOn: loader) {
                Thread.sleep(forTimeInterval: 0.4)
                return [lora]
            }
            var stepsBeforeLanding = 0
            let hooks = GenerationHooks(beforeStep: { _, _ in if schedule.landedStep == nil { stepsBeforeLanding += 1 } })
            let result = try pipeline.generate(request, loraSchedule: schedule, hooks: hooks)
            XCTAssertEqual(schedule.landedStep, deadline, "landed at \(String(describing: schedule.landedStep)), deadline \(deadline)")
            XCTAssertEqual(result.loraPatchStep, deadline)
            XCTAssertEqual(stepsBeforeLanding, deadline + 1, "steps 0...K-1 ran on the base weights, the patch came before step K")
            XCTAssertGreaterThan(schedule.waitedSeconds, 0.05, "the loop must block at the deadline for a slow loader")
        }
    }

    /// Whatever the loader's speed, the LoRA never lands after step K (a deadline beyond the schedule means the
    /// last step).
    func testTheDeadlineIsNeverExceeded() throws {
        let (pipeline, request, lora) = try setUp()
        let loader = ComputeThread(name: "lora-loader")
        for (delay, deadline) in [(0.0, 2), (0.002, 2), (0.02, 4), (0.2, 4), (0.05, 0), (0.3, 50)] {
            let schedule = AdapterSchedule(deadlineStep: deadline, loadingOn: loader) {
                Thread.sleep(forTimeInterval: delay)
                return [lora]
            }
            _ = try pipeline.generate(request, loraSchedule: schedule)
            let landed = try XCTUnwrap(schedule.landedStep, "delay \(delay): never landed")
            XCTAssertLessThanOrEqual(landed, min(deadline, request.steps - 1), "delay \(delay), deadline \(deadline)")
        }
    }

    /// Synchronous LoRAs (cached, or deadline 0) go through the schedule as `upfront` and give bit for bit the
    /// latents of patching them directly; the weights are restored after the job.
    func testSynchronousLoRAsGiveTheSameLatentsAsBefore() throws {
        let (pipeline, request, lora) = try setUp()
        let direct = try pipeline.generate(request, loras: [lora])
        let library = LoRALibrary(capacityBytes: 1 << 30)
        let path = Self.models.appendingPathComponent("sd1-lora.safetensors").path
        let input = EngineRequest.LoRA(name: "sd1-lora", path: path, unetWeight: 0.8, textEncoderWeight: 0.8)
        for deadline in [0, 4] {
            var cached: [Bool] = []
            // Deadline 0: loaded before denoising. Deadline 4: the file is cached by the first round, so it is upfront too.
            let schedule = try AdapterSchedule(
                admitting: [input], modelKey: "sd1", targets: pipeline.model.loraTargets, library: library, deadlineStep: deadline,
                cached: &cached)
            XCTAssertEqual(cached, [deadline != 0])
            XCTAssertFalse(schedule.isPending)
            let result = try pipeline.generate(request, loras: schedule.upfront, loraSchedule: nil)
            XCTAssertTrue(result.latents.isBitwiseEqual(to: direct.latents), "deadline \(deadline)")
        }
        // Not cached and a deadline: loading starts in the background at admission.
        var cached: [Bool] = []
        let fresh = try AdapterSchedule(
            admitting: [input], modelKey: "sd1", targets: pipeline.model.loraTargets, library: LoRALibrary(capacityBytes: 1 << 30),
            deadlineStep: 3, cached: &cached)
        XCTAssertEqual(cached, [false])
        XCTAssertTrue(fresh.isPending && fresh.upfront.isEmpty)
        let late = try pipeline.generate(request, loraSchedule: fresh)
        XCTAssertLessThanOrEqual(try XCTUnwrap(fresh.landedStep), 3)
        XCTAssertEqual(late.loraPatchStep, fresh.landedStep)
        let base = try pipeline.generate(request)
        XCTAssertTrue(try pipeline.generate(request).latents.isBitwiseEqual(to: base.latents), "weights restored after the job")
    }

    /// The loop waiting at the deadline runs the loads the loader has not started itself (the loader is busy here), in
    /// request order: it lands at step K without the loader, with the latents of the same LoRAs handed over at step K by
    /// a free loader; a failing load fails the request and leaves the weights restored.
    func testTheWaitingLoopRunsTheLoadsTheLoaderHasNotStarted() throws {
        let (pipeline, request, lora) = try setUp()
        let other = LoRAApplication(lora.lora, weight: -0.3)
        let base = try pipeline.generate(request)
        // The same LoRAs from a free loader, handed over at step 2.
        let held = AdapterSchedule(deadlineStep: 2, landing: .atDeadline, loadingOn: ComputeThread(name: "lora-loader")) { [lora, other] }
        let reference = try pipeline.generate(request, loraSchedule: held)
        // A loader busy until the run is over (another job's prefetch, say).
        let loader = ComputeThread(name: "busy-lora-loader")
        let gate = DispatchSemaphore(value: 0)
        loader.submit { gate.wait() }
        defer { gate.signal() }
        let loopThread = pthread_self()
        let ranOnTheLoop = Counter()
        let loads: [@Sendable () throws -> [LoRAApplication]] = [lora, other].map { application in
            { if pthread_equal(pthread_self(), loopThread) != 0 { ranOnTheLoop.increment() }; return [application] }
        }
        let schedule = AdapterSchedule(deadlineStep: 2, loadingOn: [loader], loads: loads)
        let result = try pipeline.generate(request, loraSchedule: schedule)
        XCTAssertEqual(schedule.landedStep, 2)
        XCTAssertEqual(ranOnTheLoop.value, 2, "the loop ran both loads itself (the loader never got to them)")
        XCTAssertTrue(result.latents.isBitwiseEqual(to: reference.latents), "the LoRAs in request order, landed at step 2")

        struct Broken: Error {}
        let failing = AdapterSchedule(deadlineStep: 1, loadingOn: [loader], loads: [{ [lora] }, { throw Broken() }])
        XCTAssertThrowsError(try pipeline.generate(request, loraSchedule: failing)) { XCTAssertTrue($0 is Broken) }
        XCTAssertTrue(try pipeline.generate(request).latents.isBitwiseEqual(to: base.latents), "weights restored after the failure")
    }

    /// With two loader threads, two LoRAs load at the same time, one on each (each load waits until the other has
    /// started), and land in request order: the image equals one loader's, both held to step 3.
    func testTwoLoadersLoadTwoLoRAsAtOnce() throws {
        let (pipeline, request, lora) = try setUp()
        let other = LoRAApplication(lora.lora, weight: -0.5)
        let single = AdapterSchedule(
            deadlineStep: 3, landing: .atDeadline, loadingOn: [ComputeThread(name: "one-loader")], loads: [{ [lora] }, { [other] }])
        let reference = try pipeline.generate(request, loraSchedule: single)
        let started = DispatchGroup()
        started.enter()
        started.enter()
        let overlapped = Counter()
        let ranOn = ThreadNames()
        let loads: [@Sendable () throws -> [LoRAApplication]] = [lora, other].map { application in
            {
                ranOn.recordCurrentThread()
                started.leave()
                if started.wait(timeout: .now() + 10) == .success { overlapped.increment() }
                return [application]
            }
        }
        let schedule = AdapterSchedule(
            deadlineStep: 3, landing: .atDeadline, loadingOn: [ComputeThread(name: "loader-a"), ComputeThread(name: "loader-b")], loads: loads)
        let result = try pipeline.generate(request, loraSchedule: schedule)
        XCTAssertEqual(ranOn.names, ["loader-a", "loader-b"], "one load on each loader, none on the loop")
        XCTAssertEqual(overlapped.value, 2, "both loads were running at once")
        XCTAssertEqual(single.landedStep, 3)
        XCTAssertEqual(schedule.landedStep, 3)
        XCTAssertTrue(result.latents.isBitwiseEqual(to: reference.latents), "the LoRAs in request order")
    }

    /// `.atDeadline` (the BAL quality study's worst case): LoRAs that are ready at once, or whose file is cached,
    /// still land exactly at step K (clamped to the last step), and the image equals a slow loader's at the same K.
    func testHeldLoRAsLandExactlyAtTheDeadline() throws {
        let (pipeline, request, lora) = try setUp()
        let loader = ComputeThread(name: "held-lora-loader")
        for deadline in [1, 4, 7, 30] {
            let held = AdapterSchedule(deadlineStep: deadline, landing: .atDeadline, loadingOn: loader) { [lora] }
            let heldResult = try pipeline.generate(request, loraSchedule: held)
            XCTAssertEqual(held.landedStep, min(deadline, request.steps - 1), "deadline \(deadline)")
            let slow = AdapterSchedule(deadlineStep: deadline, loadingOn: loader) {
                Thread.sleep(forTimeInterval: 0.3)
                return [lora]
            }
            let slowResult = try pipeline.generate(request, loraSchedule: slow)
            XCTAssertEqual(slow.landedStep, held.landedStep)
            XCTAssertTrue(heldResult.latents.isBitwiseEqual(to: slowResult.latents), "deadline \(deadline)")
        }
        // A cached file is held too (not patched up front); deadline 0 is synchronous.
        let library = LoRALibrary(capacityBytes: 1 << 30)
        let path = Self.models.appendingPathComponent("sd1-lora.safetensors").path
        let input = EngineRequest.LoRA(name: "sd1-lora", path: path, unetWeight: 0.8, textEncoderWeight: 0.8)
        _ = try library.network(at: path)
        XCTAssertTrue(library.isCached(path))
        for (deadline, pending) in [(3, true), (0, false)] {
            var cached: [Bool] = []
            let schedule = try AdapterSchedule(
                admitting: [input], modelKey: "sd1", targets: pipeline.model.loraTargets, library: library, deadlineStep: deadline,
                landing: .atDeadline, cached: &cached)
            XCTAssertEqual(schedule.isPending, pending)
            _ = try pipeline.generate(request, loras: schedule.upfront, loraSchedule: schedule.isPending ? schedule : nil)
            XCTAssertEqual(schedule.landedStep, pending ? deadline : nil)
        }
    }
}

/// How `ImageEngine.prepare` turns the configured deadline fraction into a step.
final class DeadlineStepTests: XCTestCase {
    func testANonzeroFractionLeavesAtLeastOneStepOfOverlap() throws {
        func deadline(fraction: Double, steps: Int, explicit: Int? = nil) throws -> Int {
            var configuration = EngineConfiguration()
            configuration.loraDeadlineFraction = fraction
            var logger = Logger(label: "deadline-test")
            logger.logLevel = .critical
            let engine = ImageEngine(repository: ServingFixtures.repository(), configuration: configuration, logger: logger)
            var spec = ServingFixtures.spec(steps: steps, loras: [LoRASpec(name: "sd1-lora")])
            spec.loraDeadlineStep = explicit
            return try engine.prepare(spec).loraDeadlineStep
        }
        XCTAssertEqual(try deadline(fraction: 0.05, steps: 20), 1)
        XCTAssertEqual(try deadline(fraction: 0.05, steps: 10), 1, "5 % of 10 steps rounds down to 0, which would be synchronous")
        XCTAssertEqual(try deadline(fraction: 0.05, steps: 40), 2)
        XCTAssertEqual(try deadline(fraction: 0.4, steps: 10), 4)
        XCTAssertEqual(try deadline(fraction: 0, steps: 20), 0, "a zero fraction is synchronous loading")
        XCTAssertEqual(try deadline(fraction: 0.05, steps: 20, explicit: 0), 0, "a request's own deadline step wins")
    }
}

/// A count bumped from any thread.
final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0
    func increment() { lock.withLock { count += 1 } }
    var value: Int { lock.withLock { count } }
}

/// The kernel's names of the threads that called `recordCurrentThread` (the names `WorkerThread` sets).
private final class ThreadNames: @unchecked Sendable {
    private let lock = NSLock()
    private var recorded: [String] = []

    func recordCurrentThread() {
        let name = (try? String(contentsOfFile: "/proc/thread-self/comm", encoding: .utf8)) ?? "?"
        lock.withLock { recorded.append(name.trimmingCharacters(in: .whitespacesAndNewlines)) }
    }

    var names: Set<String> { lock.withLock { Set(recorded) } }
}
