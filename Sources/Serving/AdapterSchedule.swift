import Adapters
import Foundation
import Pipelines

/// Bounded asynchronous LoRA loading (the paper's BAL) for one job, in one place.
///
/// - **Admission** (`init(admitting:...)`, when the job starts): LoRAs whose files are parsed and cached already,
///   or all of them when the deadline is step 0, are resolved now and patched before denoising (`upfront`); otherwise
///   they start loading on the `LoRALibrary`'s loader thread while denoising starts on the base weights.
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
        let resolve = { @Sendable () throws -> [LoRAApplication] in
            try loras.map { lora in
                LoRAApplication(
                    try library.resolve(path: lora.path, modelKey: modelKey, targets: targets), unetWeight: lora.unetWeight,
                    textEncoderWeight: lora.textEncoderWeight)
            }
        }
        if loras.isEmpty || deadlineStep == 0 || (cached.allSatisfy({ $0 }) && landing == .whenReady) {
            upfront = try resolve()
            pending = nil
        } else {
            upfront = []
            pending = PendingLoRAs.start(on: library.loader, resolve)
        }
    }

    /// A schedule whose LoRAs come from `load`, run on `thread` (tests: a slow loader).
    public init(
        deadlineStep: Int, landing: LoRALanding = .whenReady, loadingOn thread: ComputeThread,
        _ load: @escaping @Sendable () throws -> [LoRAApplication]
    ) {
        self.deadlineStep = deadlineStep
        self.landing = landing
        upfront = []
        pending = PendingLoRAs.start(on: thread, load)
    }

    /// True when LoRAs are loading in the background (the loop must ask at each boundary).
    public var isPending: Bool { pending != nil }

    /// The step the background LoRAs were patched in before; nil before they land (or with none).
    public var landedStep: Int? { lock.withLock { landed } }

    /// Seconds the loop waited for the LoRAs at the deadline.
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
final class PendingLoRAs: @unchecked Sendable {
    private let condition = NSCondition()
    private var result: Result<[LoRAApplication], Error>?

    /// Runs `load` on `thread` and keeps its outcome.
    static func start(on thread: ComputeThread, _ load: @escaping @Sendable () throws -> [LoRAApplication]) -> PendingLoRAs {
        let pending = PendingLoRAs()
        thread.submit { pending.finish(Result { try load() }) }
        return pending
    }

    func finish(_ value: Result<[LoRAApplication], Error>) {
        condition.lock()
        result = value
        condition.broadcast()
        condition.unlock()
    }

    func poll() throws -> [LoRAApplication]? {
        condition.lock()
        defer { condition.unlock() }
        return try result?.get()
    }

    func wait() throws -> [LoRAApplication] {
        condition.lock()
        while result == nil { condition.wait() }
        defer { condition.unlock() }
        return try result!.get()
    }
}
