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

    /// Runs work of the denoising loop that is neither UNet nor ControlNet (a LoRA patch at a step boundary) on every
    /// core the executor's ControlNets leave idle now; else on the caller's pool.
    func onIdleCores<R>(_ body: () throws -> R) rethrows -> R
}

extension ControlNetExecutor {
    public var denoisingPool: ComputePool? { nil }

    public func onIdleCores<R>(_ body: () throws -> R) rethrows -> R { try body() }

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

    /// The call as two calls on the halves of its batch (with guidance: the unconditional and the conditional
    /// branch), or nil when the batch does not split (one sample, or guess mode's conditional batch alone).
    func halves() -> [ControlNetCall]? {
        let batch = sample.shape[0]
        guard !conditionalOnly, batch >= 2, batch % 2 == 0 else { return nil }
        return [0, 1].map { part in
            var half = ControlNetCall(
                model: model, modelID: modelID, generationID: generationID, controlIndex: controlIndex, sample: LatentParallelism.half(sample, part),
                timesteps: timesteps.count == batch ? Array(timesteps[(part * batch / 2)..<((part + 1) * batch / 2)]) : timesteps,
                conditioning: LatentParallelism.half(conditioning, part),
                controlImage: controlImage.shape[0] == batch ? LatentParallelism.half(controlImage, part) : controlImage,
                scaling: scaling, conditionalOnly: false)
            half.onComputed = onComputed
            return half
        }
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
///
/// The service is work-conserving: no core waits while there is work it could take.
/// - A step's ControlNet calls go to one queue that every worker takes from. Once the caller has finished the down
///   and mid blocks, it takes the calls no worker has started (several ControlNets, or workers busy with other
///   requests).
/// - With `lendsIdleCores`, when no worker has work (every ControlNet of the step is done and no other request has
///   queued any), the up blocks, and steps without ControlNets, run on `lentPool`: the UNet's threads plus the
///   workers' cores. On 2 cores a single request then gets both cores for the up blocks instead of leaving the
///   worker's core idle, while the ControlNet still overlaps the down and mid blocks.
public final class ControlNetService: ControlNetExecutor {
    /// Threads per worker (each worker binds a pool of this width).
    public let threadsPerWorker: Int
    /// How many worker threads take ControlNet calls.
    public let workerCount: Int
    private let queue = CallQueue()
    private let workers: [WorkerThread]
    /// The pool the UNet should run on beside the workers: the machine's cores minus the workers' threads.
    public let unetPool: ComputePool
    /// The UNet's threads and the workers' together: the up blocks and steps without ControlNets run on it when the
    /// workers are idle (`lendsIdleCores`).
    public let lentPool: ComputePool
    /// Whether idle workers' cores join the UNet (see the type's documentation); false keeps the UNet on `unetPool`
    /// throughout (the paper's placement, which `bench controlnet` measures).
    public let lendsIdleCores: Bool

    /// The denoising steps run on `unetPool`; prompt encoding and the decode keep the caller's cores.
    public var denoisingPool: ComputePool? { unetPool }

    /// The cores the UNet's threads are pinned to (the caller pins the thread that runs the UNet to the first), when
    /// the service pins.
    public let unetCores: [Int]?

    /// `workers` ControlNet workers of `threadsPerWorker` threads each; the UNet gets `unetThreads` threads. With
    /// `pinCores`, the UNet's threads get cores 0..<unetThreads and each worker the next `threadsPerWorker` cores.
    public init(workers: Int = 1, threadsPerWorker: Int = 1, unetThreads: Int? = nil, pinCores: Bool = false, lendsIdleCores: Bool = true) {
        precondition(workers >= 1 && threadsPerWorker >= 1, "a ControlNet service needs at least one worker thread")
        self.threadsPerWorker = threadsPerWorker
        self.workerCount = workers
        self.lendsIdleCores = lendsIdleCores
        let unet = max(1, unetThreads ?? (ProcessInfo.processInfo.activeProcessorCount - workers * threadsPerWorker))
        let total = unet + workers * threadsPerWorker
        unetCores = pinCores ? Array(0..<unet) : nil
        let queue = self.queue
        self.workers = (0..<workers).map { index in
            let first = unet + index * threadsPerWorker
            let thread = WorkerThread(
                name: "controlnet-\(index)", poolThreads: threadsPerWorker, cores: pinCores ? Array(first..<(first + threadsPerWorker)) : nil)
            thread.enqueue { queue.serve() }
            return thread
        }
        unetPool = ComputePool(threadCount: unet, cores: unetCores)
        lentPool = ComputePool(threadCount: total, cores: pinCores ? Array(0..<total) : nil)
    }

    deinit {
        queue.stop()
        unetPool.shutDown()
        lentPool.shutDown()
    }

    public var name: String {
        "concurrent x\(workerCount) (\(threadsPerWorker) thread\(threadsPerWorker == 1 ? "" : "s") each\(lendsIdleCores ? ", idle cores lent" : ""))"
    }

    public func step<Down>(
        controls: [@Sendable () throws -> ControlResiduals], downAndMid: () throws -> Down,
        up: (Down, ControlResiduals?) throws -> Tensor
    ) throws -> Tensor {
        try run(controls, downAndMid: downAndMid, up: up, combine: ControlResiduals.sum)
    }

    /// The loop's calls, each guided call cut into its two guidance branches (two calls of half the batch, the same
    /// rows): a worker and the step's own thread can then share one ControlNet, which matters where a ControlNet
    /// costs more than the UNet's down and mid blocks.
    public func step<Down>(
        calls: [ControlNetCall], downAndMid: () throws -> Down, up: (Down, ControlResiduals?) throws -> Tensor
    ) throws -> Tensor {
        let parts = calls.map { $0.halves() ?? [$0] }
        let controls = parts.joined().map { call -> @Sendable () throws -> ControlResiduals in { try call() } }
        return try run(controls, downAndMid: downAndMid, up: up) { residuals in
            var rest = residuals[...]
            return ControlResiduals.sum(
                parts.map { part in
                    defer { rest = rest.dropFirst(part.count) }
                    return part.count == 1 ? rest.first! : ControlResiduals.concatenated(Array(rest.prefix(part.count)))
                })
        }
    }

    private func run<Down>(
        _ controls: [@Sendable () throws -> ControlResiduals], downAndMid: () throws -> Down, up: (Down, ControlResiduals?) throws -> Tensor,
        combine: ([ControlResiduals]) -> ControlResiduals?
    ) throws -> Tensor {
        guard !controls.isEmpty else { return try onIdleCores { try up(try downAndMid(), nil) } }
        let batch = queue.submit(controls)
        let down: Down
        do {
            down = try downAndMid()
        } catch {
            queue.withdraw(batch)  // never leave a worker writing into a dead step
            throw error
        }
        queue.help(with: batch)
        let residuals = combine(try queue.results(of: batch))
        return try onIdleCores { try up(down, residuals) }
    }

    /// Runs `body` on `lentPool` when lending and no worker has work, else on the caller's pool.
    public func onIdleCores<R>(_ body: () throws -> R) rethrows -> R {
        guard lendsIdleCores, queue.isIdle else { return try body() }
        return try ComputePool.run(on: lentPool, body)
    }

    /// One step's ControlNet calls and their results, filled by whoever runs them.
    final class Batch: @unchecked Sendable {
        let controls: [@Sendable () throws -> ControlResiduals]
        var results: [Result<ControlResiduals, any Error>?]
        var next = 0
        var unfinished: Int

        init(_ controls: [@Sendable () throws -> ControlResiduals]) {
            self.controls = controls
            results = Array(repeating: nil, count: controls.count)
            unfinished = controls.count
        }
    }

    /// The calls waiting for a worker, shared by every worker and every step. One lock guards the queue, the
    /// batches' bookkeeping and the count of busy workers, so a step that sees its results also sees the worker
    /// that made them idle again.
    final class CallQueue: @unchecked Sendable {
        private let condition = NSCondition()
        private var waiting: [Batch] = []
        private var busy = 0
        private var stopped = false

        func submit(_ controls: [@Sendable () throws -> ControlResiduals]) -> Batch {
            let batch = Batch(controls)
            condition.lock()
            waiting.append(batch)
            condition.broadcast()
            condition.unlock()
            return batch
        }

        /// No call waits and no worker runs one.
        var isIdle: Bool {
            condition.lock()
            defer { condition.unlock() }
            return waiting.isEmpty && busy == 0
        }

        /// Takes the next call of `only` (or of the oldest batch); call with the lock held.
        private func take(from only: Batch?) -> (Batch, Int)? {
            let position: Int?
            if let only { position = waiting.firstIndex { $0 === only } } else { position = waiting.isEmpty ? nil : 0 }
            guard let position else { return nil }
            let batch = waiting[position]
            let index = batch.next
            batch.next += 1
            if batch.next == batch.controls.count { waiting.remove(at: position) }
            return (batch, index)
        }

        /// Runs one call without the lock and records its result; a worker is counted idle again in the same
        /// critical section.
        private func run(_ batch: Batch, _ index: Int, releasingWorker: Bool) {
            let result = Result { try batch.controls[index]() }
            condition.lock()
            batch.results[index] = result
            batch.unfinished -= 1
            if releasingWorker { busy -= 1 }
            condition.broadcast()
            condition.unlock()
        }

        /// A worker's loop: runs calls as they come, until `stop()`.
        func serve() {
            condition.lock()
            while true {
                while waiting.isEmpty && !stopped { condition.wait() }
                if stopped { break }
                guard let (batch, index) = take(from: nil) else { continue }
                busy += 1
                condition.unlock()
                run(batch, index, releasingWorker: true)
                condition.lock()
            }
            condition.unlock()
        }

        /// The step's own thread runs the calls of `batch` no worker has started.
        func help(with batch: Batch) {
            while true {
                condition.lock()
                let call = take(from: batch)
                condition.unlock()
                guard let (batch, index) = call else { return }
                run(batch, index, releasingWorker: false)
            }
        }

        /// Drops the calls of `batch` no worker has started and waits for those that run.
        func withdraw(_ batch: Batch) {
            condition.lock()
            if let position = waiting.firstIndex(where: { $0 === batch }) {
                waiting.remove(at: position)
                batch.unfinished -= batch.controls.count - batch.next
                batch.next = batch.controls.count
            }
            while batch.unfinished > 0 { condition.wait() }
            condition.unlock()
        }

        /// Waits for every call of `batch`; the residuals in call order, or the first call's error in that order.
        func results(of batch: Batch) throws -> [ControlResiduals] {
            condition.lock()
            while batch.unfinished > 0 { condition.wait() }
            let results = batch.results
            condition.unlock()
            return try results.map { try $0!.get() }
        }

        func stop() {
            condition.lock()
            stopped = true
            condition.broadcast()
            condition.unlock()
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
