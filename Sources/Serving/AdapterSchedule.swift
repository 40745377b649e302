import Adapters
import Foundation
import Pipelines

/// Bounded asynchronous LoRA loading (the paper's BAL) for one job, in one place.
///
/// - **Admission** (`init(admitting:...)`, when the job starts): LoRAs whose files are parsed and cached already,
///   or all of them when the deadline is step 0, are resolved now (several side by side on the loader threads) and
///   patched before denoising (`upfront`); otherwise they start loading on the `LoRALibrary`'s loader threads while
///   denoising starts on the base weights.
/// - **Step boundaries** (`lorasToPatch(beforeStep:of:)`, asked by the denoising loop, `DenoisingSteps`): the LoRAs
///   are handed over at the first boundary after they are ready, and never later than `deadlineStep` (step K):
///   there the loop waits for them. Text-encoder LoRAs re-encode the prompt at that boundary (the loop does it).
/// - **Landing** (`landed(atStep:)`): the step they were patched in before is recorded (`landedStep`, the job's
///   `lora_patch_step`), with the time the loop waited at the deadline (`waitedSeconds`).
/// - **Held to the deadline** (`landing: .atDeadline`, the BAL quality study's worst case, `bench bal`): the LoRAs load
///   in the background as always but are handed over exactly at step K, as if their loading had taken until the
///   deadline: deterministic, whatever the timing.
/// - **Restore**: the pipeline restores the weights bitwise when the job ends (also on failure or cancellation),
///   upfront and scheduled LoRAs alike (`DiffusionPipeline.generate`'s patcher reset).
public final class AdapterSchedule: LoRAStepSchedule, @unchecked Sendable {
    /// The latest step (0-based) before which background LoRAs are patched in (clamped to the last step).
    public let deadlineStep: Int
    /// LoRAs patched before denoising.
    public let upfront: [LoRAApplication]
    /// When background LoRAs are handed over.
    public let landing: LoRALanding
    private let pending: PendingLoRAs?
    private let lock = NSLock()
    private var landed: Int?
    private var waited: Double = 0

    /// Admits a job's LoRAs (see the type's description). `cached` learns, per LoRA, whether its file was cached.
    init(
        admitting loras: [EngineRequest.LoRA], modelKey: String, targets: LoRATargets, library: LoRALibrary, deadlineStep: Int,
        landing: LoRALanding = .whenReady, cached: inout [Bool]
    ) throws {
        self.deadlineStep = deadlineStep
        self.landing = landing
        cached = loras.map { library.isCached($0.path) }
        // One load per LoRA, so the loop can take one over while it waits at the deadline (`PendingLoRAs.wait`).
        let loads = loras.map { lora in
            { @Sendable () throws -> [LoRAApplication] in
                [
                    LoRAApplication(
                        try library.resolve(path: lora.path, modelKey: modelKey, targets: targets), unetWeight: lora.unetWeight,
                        textEncoderWeight: lora.textEncoderWeight)
                ]
            }
        }
        if loras.isEmpty || deadlineStep == 0 || (cached.allSatisfy({ $0 }) && landing == .whenReady) {
            // Several LoRAs load side by side: on the loaders and on this thread, which waits for them anyway.
            let sideBySide = loads.count > 1 && !cached.allSatisfy({ $0 })
            upfront = sideBySide ? try PendingLoRAs.start(on: library.loaders, loads).wait() : try loads.flatMap { try $0() }
            pending = nil
        } else {
            upfront = []
            pending = PendingLoRAs.start(on: library.loaders, loads)
        }
    }

    /// A schedule whose LoRAs come from `load`, run on `thread` (tests: a slow loader).
    public convenience init(
        deadlineStep: Int, landing: LoRALanding = .whenReady, loadingOn thread: ComputeThread,
        _ load: @escaping @Sendable () throws -> [LoRAApplication]
    ) {
        self.init(deadlineStep: deadlineStep, landing: landing, loadingOn: [thread], loads: [load])
    }

    /// A schedule whose LoRAs come from `loads`, run in order on `threads`, each taking the next load nobody has started
    /// (and by the loop, for those not started when it waits at the deadline).
    init(
        deadlineStep: Int, landing: LoRALanding = .whenReady, loadingOn threads: [ComputeThread],
        loads: [@Sendable () throws -> [LoRAApplication]]
    ) {
        self.deadlineStep = deadlineStep
        self.landing = landing
        upfront = []
        pending = PendingLoRAs.start(on: threads, loads)
    }

    /// True when LoRAs are loading in the background (the loop must ask at each boundary).
    public var isPending: Bool { pending != nil }

    /// The step the background LoRAs were patched in before; nil before they land (or with none).
    public var landedStep: Int? { lock.withLock { landed } }

    /// Seconds the loop spent at the deadline getting the LoRAs: waiting for the loader, and running the loads it had not
    /// started.
    public var waitedSeconds: Double { lock.withLock { waited } }

    public func lorasToPatch(beforeStep step: Int, of total: Int) throws -> [LoRAApplication]? {
        guard let pending, landedStep == nil else { return nil }
        if step >= min(deadlineStep, total - 1) {
            let start = DispatchTime.now().uptimeNanoseconds
            let loras = try pending.wait()
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            lock.withLock { waited = seconds }
            return loras
        }
        return landing == .atDeadline ? nil : try pending.poll()
    }

    public func landed(atStep step: Int) {
        lock.withLock { landed = step }
    }
}

/// When an `AdapterSchedule` hands background LoRAs to the denoising loop.
public enum LoRALanding: String, Sendable {
    /// At the first step boundary after they are ready, by the deadline step at the latest (serving).
    case whenReady
    /// Exactly at the deadline step (clamped to the last step), even when they were ready earlier or cached: the worst
    /// case of bounded loading, made deterministic for the BAL quality study (`swiftdiffusion bench bal`).
    case atDeadline
}

/// LoRAs loading in the background: a one-shot result the schedule polls or waits for.
///
/// The loads (one per LoRA) run in order on the loader threads, each taking the next one nobody has started. A caller
/// that must wait for them (the loop at the deadline step) takes over the loads the loaders have not started and runs
/// them itself, so the core the waiting loop would leave idle loads LoRAs too; the result keeps the request's order
/// either way.
final class PendingLoRAs: @unchecked Sendable {
    private let condition = NSCondition()
    private let loads: [@Sendable () throws -> [LoRAApplication]]
    private var results: [Result<[LoRAApplication], Error>?]
    private var started = 0
    private var finished = 0

    private init(_ loads: [@Sendable () throws -> [LoRAApplication]]) {
        self.loads = loads
        results = Array(repeating: nil, count: loads.count)
    }

    /// Starts running `loads` on `threads` (no more of them than there are loads) and keeps their outcomes.
    static func start(on threads: [ComputeThread], _ loads: [@Sendable () throws -> [LoRAApplication]]) -> PendingLoRAs {
        let pending = PendingLoRAs(loads)
        for thread in threads.prefix(loads.count) { thread.submit { LoRALibrary.onLoader { while pending.runNext() {} } } }
        return pending
    }

    /// Runs the next load nobody has started, on the calling thread; false when every load has started.
    private func runNext() -> Bool {
        condition.lock()
        guard started < loads.count else {
            condition.unlock()
            return false
        }
        let index = started
        started += 1
        condition.unlock()
        let result = Result { try loads[index]() }
        condition.lock()
        results[index] = result
        finished += 1
        condition.broadcast()
        condition.unlock()
        return true
    }

    /// The LoRAs in request order, or the first load's error, once every load has finished (called with the lock held).
    private func outcome() throws -> [LoRAApplication] {
        try results.flatMap { try $0!.get() }
    }

    func poll() throws -> [LoRAApplication]? {
        condition.lock()
        defer { condition.unlock() }
        return finished == loads.count ? try outcome() : nil
    }

    func wait() throws -> [LoRAApplication] {
        while runNext() {}
        condition.lock()
        defer { condition.unlock() }
        while finished < loads.count { condition.wait() }
        return try outcome()
    }
}
