import Compute
import Foundation
import Models

/// Where and when a denoising step's ControlNets run (SwiftDiffusion §4.1, ControlNet-as-a-Service).
///
/// A step needs the ControlNets' residuals only in the UNet's up blocks, so the ControlNets can run while the
/// UNet computes its time embedding, down blocks and mid block; the critical path becomes
/// `max(T_down+mid, T_controlnets) + T_up`. An executor gets the step's ControlNet calls and the two halves of
/// the UNet call and decides how they meet. Every executor gives the same numbers (the same ops on the same
/// inputs; residuals summed in request order).
public protocol ControlNetExecutor: AnyObject, Sendable {
    /// Runs one step: each of `controls` gives one ControlNet's scaled residuals; `downAndMid` is the UNet's first
    /// half; `up` finishes the UNet with the summed residuals (nil when no ControlNet is active this step).
    func step<Down>(
        controls: [@Sendable () throws -> ControlResiduals], downAndMid: () throws -> Down,
        up: (Down, ControlResiduals?) throws -> Tensor
    ) throws -> Tensor

    /// Runs one step from described ControlNet calls (what the denoising loop gives): the same as
    /// `step(controls:...)` for executors that run the calls in this process; an executor in other processes
    /// (`RemoteControlNetExecutor`) sends the calls' inputs over the wire instead.
    func step<Down>(
        calls: [ControlNetCall], downAndMid: () throws -> Down, up: (Down, ControlResiduals?) throws -> Tensor
    ) throws -> Tensor

    /// A name for logs and benchmarks ("sequential", "concurrent x1", ...).
    var name: String { get }

    /// The pool the denoising steps run on with this executor, or nil for the caller's. An executor whose ControlNets
    /// take cores of their own during the steps gives the UNet the rest; the stages before and after (prompt encoding,
    /// the VAE decode) still get every core of the caller's pool, when the ControlNet cores are idle.
    var denoisingPool: ComputePool? { get }
}

extension ControlNetExecutor {
    public var denoisingPool: ComputePool? { nil }

    public func step<Down>(
        calls: [ControlNetCall], downAndMid: () throws -> Down, up: (Down, ControlResiduals?) throws -> Tensor
    ) throws -> Tensor {
        let controls = calls.map { call -> @Sendable () throws -> ControlResiduals in { try call() } }
        return try step(controls: controls, downAndMid: downAndMid, up: up)
    }
}

/// One ControlNet call of one denoising step, with its inputs: callable here (`call()`), or sent elsewhere by an
/// executor that runs ControlNets in other processes (which then finishes the result with `finish`).
public struct ControlNetCall: Sendable {
    public let model: ControlNetModel
    /// The ControlNet's id in the model repository (what a remote worker loads); nil when the model has none.
    public let modelID: String?
    /// Identifies the generation (one per `generate` call): a remote worker caches the control image under it.
    public let generationID: UUID
    /// The ControlNet's position in the request.
    public let controlIndex: Int
    /// The model input (NHWC), timesteps and text conditioning the ControlNet sees.
    public let sample: Tensor
    public let timesteps: [Float]
    public let conditioning: UNetConditioning
    /// The control image NHWC in [0, 1], batched to `sample`.
    public let controlImage: Tensor
    public let scaling: ControlNetModel.Scaling
    /// Guess mode with guidance: the ControlNet sees only the conditional batch; `finish` gives the unconditional
    /// half zeros.
    public let conditionalOnly: Bool

    public init(
        model: ControlNetModel, modelID: String?, generationID: UUID, controlIndex: Int, sample: Tensor, timesteps: [Float],
        conditioning: UNetConditioning, controlImage: Tensor, scaling: ControlNetModel.Scaling, conditionalOnly: Bool
    ) {
        self.model = model
        self.modelID = modelID
        self.generationID = generationID
        self.controlIndex = controlIndex
        self.sample = sample
        self.timesteps = timesteps
        self.conditioning = conditioning
        self.controlImage = controlImage
        self.scaling = scaling
        self.conditionalOnly = conditionalOnly
    }

    /// Told the seconds of every computation of this call in this process (the pipeline's `controlnet` timing).
    var onComputed: (@Sendable (Double) -> Void)?

    /// The same call, reporting the seconds each computation here takes to `report`.
    func timed(_ report: @escaping @Sendable (Double) -> Void) -> ControlNetCall {
        var copy = self
        copy.onComputed = report
        return copy
    }

    /// The scaled residuals, computed here.
    public func callAsFunction() throws -> ControlResiduals {
        let start = DispatchTime.now().uptimeNanoseconds
        defer { onComputed?(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9) }
        return finish(try model(sample, timesteps: timesteps, conditioning: conditioning, controlImage: controlImage, scaling: scaling))
    }

    /// The residuals the step adds, from the ControlNet's output for `sample` (computed here or elsewhere).
    public func finish(_ residuals: ControlResiduals) -> ControlResiduals {
        guard conditionalOnly else { return residuals }
        return ControlResiduals(
            down: residuals.down.map { concat([Tensor.zeros($0.shape), $0], axis: 0) },
            mid: concat([Tensor.zeros(residuals.mid.shape), residuals.mid], axis: 0))
    }
}

/// Today's behaviour and the baseline: the ControlNets one after another on the caller's threads, then the UNet.
public final class SequentialControlNetExecutor: ControlNetExecutor {
    public init() {}

    public var name: String { "sequential" }

    public func step<Down>(
        controls: [@Sendable () throws -> ControlResiduals], downAndMid: () throws -> Down,
        up: (Down, ControlResiduals?) throws -> Tensor
    ) throws -> Tensor {
        let residuals = try controls.map { try $0() }
        return try up(try downAndMid(), ControlResiduals.sum(residuals))
    }
}

/// ControlNet-as-a-Service in one process: ControlNet workers on threads (cores) of their own, shared by every
/// request and every loaded base model, run a step's ControlNets while the caller runs the UNet's down and mid
/// blocks; the residuals join before the up blocks. A request's ControlNets spread over the workers.
///
/// The caller's compute pool should leave the workers' cores free (e.g. on 2 cores: the UNet on a 1-thread pool,
/// one worker with 1 thread); `ControlNetService.unetPool` is such a pool.
public final class ControlNetService: ControlNetExecutor {
    /// Threads per worker (each worker binds a pool of this width).
    public let threadsPerWorker: Int
    private let workers: [Worker]
    /// The pool the UNet should run on beside the workers: the machine's cores minus the workers' threads.
    public let unetPool: ComputePool

    /// The denoising steps run on `unetPool`; prompt encoding and the decode keep the caller's cores.
    public var denoisingPool: ComputePool? { unetPool }

    /// The cores the UNet's threads are pinned to (the caller pins the thread that runs the UNet to the first), when
    /// the service pins.
    public let unetCores: [Int]?

    /// `workers` ControlNet workers of `threadsPerWorker` threads each; the UNet gets `unetThreads` threads. With
    /// `pinCores`, the UNet's threads get cores 0..<unetThreads and each worker the next `threadsPerWorker` cores.
    public init(workers: Int = 1, threadsPerWorker: Int = 1, unetThreads: Int? = nil, pinCores: Bool = false) {
        precondition(workers >= 1 && threadsPerWorker >= 1, "a ControlNet service needs at least one worker thread")
        self.threadsPerWorker = threadsPerWorker
        let unet = max(1, unetThreads ?? (ProcessInfo.processInfo.activeProcessorCount - workers * threadsPerWorker))
        unetCores = pinCores ? Array(0..<unet) : nil
        self.workers = (0..<workers).map { index in
            let first = unet + index * threadsPerWorker
            return Worker(name: "controlnet-\(index)", threads: threadsPerWorker, cores: pinCores ? Array(first..<(first + threadsPerWorker)) : nil)
        }
        unetPool = ComputePool(threadCount: unet, cores: unetCores)
    }

    deinit { unetPool.shutDown() }

    public var name: String { "concurrent x\(workers.count) (\(threadsPerWorker) thread\(threadsPerWorker == 1 ? "" : "s") each)" }

    public func step<Down>(
        controls: [@Sendable () throws -> ControlResiduals], downAndMid: () throws -> Down,
        up: (Down, ControlResiduals?) throws -> Tensor
    ) throws -> Tensor {
        guard !controls.isEmpty else { return try up(try downAndMid(), nil) }
        // ControlNet i goes to worker i mod n; each worker runs its share in order.
        let tickets = controls.enumerated().map { index, control in workers[index % workers.count].submit(control) }
        let down: Down
        do {
            down = try downAndMid()
        } catch {
            for ticket in tickets { _ = try? ticket.wait() }  // never leave a worker writing into a dead step
            throw error
        }
        let residuals = try tickets.map { try $0.wait() }
        return try up(down, ControlResiduals.sum(residuals))
    }

    /// One ControlNet worker: an OS thread with its own compute pool, running submitted calls in order.
    final class Worker: Sendable {
        private let thread: WorkerThread

        init(name: String, threads: Int, cores: [Int]?) {
            thread = WorkerThread(name: name, poolThreads: threads, cores: cores)
        }

        func submit(_ work: @escaping @Sendable () throws -> ControlResiduals) -> ControlResidualsTicket {
            let ticket = ControlResidualsTicket()
            thread.enqueue { ticket.fulfil(Result { try work() }) }
            return ticket
        }
    }

}

/// The residuals of one ControlNet call handed to another thread or process, once they are there.
public final class ControlResidualsTicket: @unchecked Sendable {
    private let condition = NSCondition()
    private var result: Result<ControlResiduals, any Error>?

    public init() {}

    public func fulfil(_ value: Result<ControlResiduals, any Error>) {
        condition.lock()
        result = value
        condition.broadcast()
        condition.unlock()
    }

    /// Waits for the result.
    public func wait() throws -> ControlResiduals {
        condition.lock()
        defer { condition.unlock() }
        while result == nil { condition.wait() }
        return try result!.get()
    }

    /// The result, or nil if none came within `timeout`.
    public func wait(timeout: Duration) -> Result<ControlResiduals, any Error>? {
        let seconds = Double(timeout.components.seconds) + Double(timeout.components.attoseconds) * 1e-18
        let deadline = Date(timeIntervalSinceNow: seconds)
        condition.lock()
        defer { condition.unlock() }
        while result == nil, condition.wait(until: deadline) {}
        return result
    }
}
