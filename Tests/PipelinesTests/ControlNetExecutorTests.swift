import Compute
import Foundation
import Imaging
import Models
import ParityTesting
@testable import Pipelines
import Samplers
import Weights
import XCTest

/// ControlNet executors (issue 12): ControlNet-as-a-Service in process (`ControlNetService`) runs a step's
/// ControlNets on its own worker threads while the UNet computes its down and mid blocks, and gives the sequential
/// executor's latents (≤ 1e-4) with one and two ControlNets, guidance, guess mode and start/end windows, with and
/// without latent parallelism, on SD 1.x and SDXL.
final class ControlNetExecutorTests: XCTestCase {
    static let models = Golden.fixturesDirectory.appendingPathComponent("models")
    static let tolerance: Float = 1e-4

    private func controlnet(_ name: String) throws -> ControlNetModel {
        let folder = try ComponentFolder(Self.models.appendingPathComponent(name))
        return try ControlNetModel(configData: try folder.configData, weights: try folder.weights())
    }

    private func drawing(_ size: Int, every stride: Int) -> RGBImage {
        var pixels = [UInt8](repeating: 0, count: size * size * 3)
        for i in Swift.stride(from: 0, to: pixels.count, by: stride) { pixels[i] = 255 }
        return RGBImage(width: size, height: size, pixels: pixels)
    }

    /// Final latents of `request` with each executor and latent-parallel setting, all against sequential + off.
    private func assertExecutorsAgree(
        _ pipeline: DiffusionPipeline, _ request: GenerationRequest, file: StaticString = #filePath, line: UInt = #line
    ) throws {
        let service = ControlNetService(workers: 2, threadsPerWorker: 1, unetThreads: 2)
        let pool = ComputePool(threadCount: 2)
        defer { pool.shutDown() }
        func run(_ executor: any ControlNetExecutor, _ branches: DiffusionPipeline.BranchParallelism) throws -> Tensor {
            pipeline.controlNetExecutor = executor
            pipeline.branchParallelism = branches
            return try ComputePool.run(on: pool) { try pipeline.generate(request).latents }
        }
        let reference = try run(SequentialControlNetExecutor(), .off)
        let sequentialBranches = try run(SequentialControlNetExecutor(), .on)
        XCTAssertLessThan(sequentialBranches.maxAbsDifference(reference), Self.tolerance, "sequential, branches on", file: file, line: line)
        for branches in [DiffusionPipeline.BranchParallelism.off, .on] {
            let concurrent = try run(service, branches)
            let difference = concurrent.maxAbsDifference(reference)
            print("[parity] \(service.name), latent parallelism \(branches): max abs difference \(difference)")
            XCTAssertLessThan(difference, Self.tolerance, "\(service.name), \(branches)", file: file, line: line)
        }
        // The ControlNets matter: without them the latents differ (the comparison above is not vacuous).
        var plain = request
        plain.controls = []
        pipeline.controlNetExecutor = SequentialControlNetExecutor()
        let without = try ComputePool.run(on: pool) { try pipeline.generate(plain).latents }
        XCTAssertGreaterThan(without.maxAbsDifference(reference), 1e-3, "ControlNets must change the result", file: file, line: line)
    }

    func testSD1OneAndTwoControlNetsWithGuidanceGuessModeAndWindows() throws {
        let pipeline = DiffusionPipeline(model: try StableDiffusionModel(folder: Self.models.appendingPathComponent("sd1")))
        var request = GenerationRequest(
            prompt: "a red circle", negativePrompt: "blue", width: 32, height: 32, steps: 4, sampler: .dpmPlusPlus2M, seed: 9, decode: false)
        request.controls = [ControlInput(model: try controlnet("sd1-controlnet"), image: drawing(32, every: 7), scale: 0.8, start: 0, end: 1)]
        try assertExecutorsAgree(pipeline, request)
        // Two ControlNets: the second in guess mode and active only in the middle of the schedule.
        request.controls.append(
            ControlInput(model: try controlnet("sd1-controlnet-b"), image: drawing(32, every: 5), scale: 1.2, start: 0.25, end: 0.75, guessMode: true))
        try assertExecutorsAgree(pipeline, request)
        // Without guidance (one branch).
        request.guidanceScale = 1
        try assertExecutorsAgree(pipeline, request)
    }

    /// SDXL (pooled text embeddings and time ids reach the ControlNet): one ControlNet, then two (the second in guess
    /// mode and active only in the middle of the schedule), then without guidance.
    func testSDXLOneAndTwoControlNetsWithGuidanceGuessModeAndWindows() throws {
        let config = try FixtureModels.sdxlControlNetConfig()
        let first = try ControlNetModel(configData: config, weights: RandomWeights(seed: 11))
        let second = try ControlNetModel(configData: config, weights: RandomWeights(seed: 12))
        let pipeline = DiffusionPipeline(model: try StableDiffusionModel(folder: Self.models.appendingPathComponent("sdxl")))
        var request = GenerationRequest(
            prompt: "a blue square", negativePrompt: "red", width: 32, height: 32, steps: 4, sampler: .euler, seed: 3, decode: false)
        request.controls = [ControlInput(model: first, image: drawing(32, every: 3), scale: 1, start: 0, end: 1)]
        try assertExecutorsAgree(pipeline, request)
        request.controls.append(
            ControlInput(model: second, image: drawing(32, every: 5), scale: 0.7, start: 0.25, end: 0.75, guessMode: true))
        try assertExecutorsAgree(pipeline, request)
        request.guidanceScale = 1
        try assertExecutorsAgree(pipeline, request)
    }

    /// With the service, the denoising steps run on its UNet pool (the cores the worker leaves), while prompt encoding and
    /// the decode run on the caller's pool, every core: the worker sits idle then.
    func testOnlyTheStepsRunOnTheServicesUNetPool() throws {
        let pipeline = DiffusionPipeline(model: try StableDiffusionModel(folder: Self.models.appendingPathComponent("sd1")))
        var request = GenerationRequest(prompt: "a red circle", negativePrompt: "", width: 32, height: 32, steps: 3, sampler: .euler, seed: 9)
        request.controls = [ControlInput(model: try controlnet("sd1-controlnet"), image: drawing(32, every: 7), scale: 1)]
        let service = ControlNetService(workers: 1, threadsPerWorker: 1, unetThreads: 1)
        let callers = ComputePool(threadCount: 2)
        defer { callers.shutDown() }
        pipeline.controlNetExecutor = service
        var stepPools: [ObjectIdentifier] = [], stagePools: [String: ObjectIdentifier] = [:]
        let hooks = GenerationHooks(
            stage: { stage in stagePools[stage.rawValue] = ObjectIdentifier(ComputePool.current) },
            beforeStep: { _, _ in stepPools.append(ObjectIdentifier(ComputePool.current)) })
        let result = try ComputePool.run(on: callers) { try pipeline.generate(request, hooks: hooks) }
        XCTAssertEqual(result.images.count, 1)
        XCTAssertEqual(stepPools, Array(repeating: ObjectIdentifier(service.unetPool), count: 3))
        XCTAssertEqual(stagePools["encode_prompt"], ObjectIdentifier(callers))
        XCTAssertEqual(stagePools["decode"], ObjectIdentifier(callers))
        // Side-by-side guidance branches are decided for the pool the steps run on: not on the service's one thread,
        // though the caller's pool has two.
        ComputePool.run(on: callers) {
            pipeline.branchParallelism = .automatic
            XCTAssertFalse(pipeline.latentParallelism(guided: true, latentPositions: 4 * 4).splits(on: pipeline.denoisingPool), "one UNet thread: one batch-2 call")
            pipeline.controlNetExecutor = SequentialControlNetExecutor()
            XCTAssertTrue(pipeline.latentParallelism(guided: true, latentPositions: 4 * 4).splits(on: pipeline.denoisingPool), "two threads: the branches side by side")
        }
    }

    /// The service really overlaps: a ControlNet call that waits for the UNet's down path to start, and a down
    /// path that waits for the ControlNet call to start, both finish only if they run at the same time.
    func testTheServiceRunsControlNetsBesideTheDownPath() throws {
        let service = ControlNetService(workers: 1, threadsPerWorker: 1, unetThreads: 1)
        let controlStarted = DispatchSemaphore(value: 0), downStarted = DispatchSemaphore(value: 0)
        let residuals = ControlResiduals(down: [Tensor(shape: [1], values: [2])], mid: Tensor(shape: [1], values: [3]))
        let output = try service.step(
            controls: [{
                controlStarted.signal()
                guard downStarted.wait(timeout: .now() + 10) == .success else { throw GenerationError.invalidRequest("not concurrent") }
                return residuals
            }],
            downAndMid: { () throws -> Int in
                downStarted.signal()
                guard controlStarted.wait(timeout: .now() + 10) == .success else { throw GenerationError.invalidRequest("not concurrent") }
                return 40
            },
            up: { down, control in Tensor(shape: [1], values: [Float(down) + (control?.mid.scalars[0] ?? 0)]) })
        XCTAssertEqual(output.scalars, [43])
    }

    /// With `pinCores`, the UNet's threads get the first cores and the worker the next one.
    func testPinnedServicePlacesTheWorkerOnItsOwnCore() throws {
        let service = ControlNetService(workers: 1, threadsPerWorker: 1, unetThreads: 1, pinCores: true)
        XCTAssertEqual(service.unetCores, [0])
        let seen = ControlResidualsBox()
        let controlStarted = DispatchSemaphore(value: 0)
        _ = try service.step(
            controls: [{
                seen.cores = CorePinning.currentThreadCores()
                controlStarted.signal()
                return ControlResiduals(down: [], mid: Tensor(shape: [1], values: [0]))
            }],
            // The down path waits for the worker to take the call (else this thread would take it once done).
            downAndMid: { controlStarted.wait(timeout: .now() + 10) }, up: { _, _ in Tensor(shape: [1], values: [0]) })
        XCTAssertEqual(seen.cores, [1])
    }

    private final class ControlResidualsBox: @unchecked Sendable {
        var cores: [Int] = []
        var threads: [pthread_t] = []
    }

    /// Work-conserving: with every worker idle, the up blocks (and steps without ControlNets, and LoRA patches) run on
    /// the UNet's threads plus the workers' cores; with lending off, on the UNet's pool alone.
    func testIdleWorkerCoresAreLentToTheUpBlocks() throws {
        let residuals = ControlResiduals(down: [], mid: Tensor(shape: [1], values: [0]))
        for lends in [true, false] {
            let service = ControlNetService(workers: 1, threadsPerWorker: 1, unetThreads: 1, lendsIdleCores: lends)
            XCTAssertEqual(service.lentPool.threadCount, 2)
            var upPools: [ObjectIdentifier] = [], downPools: [ObjectIdentifier] = []
            try ComputePool.run(on: service.unetPool) {
                for controls in [[{ residuals }], []] as [[@Sendable () throws -> ControlResiduals]] {
                    _ = try service.step(
                        controls: controls, downAndMid: { downPools.append(ObjectIdentifier(ComputePool.current)) },
                        up: { _, _ in
                            upPools.append(ObjectIdentifier(ComputePool.current))
                            return Tensor(shape: [1], values: [0])
                        })
                }
            }
            let expected = ObjectIdentifier(lends ? service.lentPool : service.unetPool)
            XCTAssertEqual(upPools, [expected, expected], "lends \(lends)")
            // The down path beside a ControlNet stays on the UNet's threads; without ControlNets it may have them all.
            XCTAssertEqual(downPools, [ObjectIdentifier(service.unetPool), expected], "lends \(lends)")
            // Other work of the loop (a LoRA patch at a step boundary) gets the idle cores too.
            let patchPool = ComputePool.run(on: service.unetPool) { service.onIdleCores { ObjectIdentifier(ComputePool.current) } }
            XCTAssertEqual(patchPool, expected, "lends \(lends)")
        }
    }

    /// Work-conserving: when the worker is busy with another request, the step's own thread runs its ControlNets
    /// once its down path is done, and keeps the UNet's pool for the up blocks (the worker's core is not idle).
    func testTheStepRunsItsOwnControlNetsWhileTheWorkerIsBusy() throws {
        let service = ControlNetService(workers: 1, threadsPerWorker: 1, unetThreads: 1)
        let release = DispatchSemaphore(value: 0), blocking = DispatchSemaphore(value: 0), otherDone = DispatchSemaphore(value: 0)
        let workerHasIt = DispatchSemaphore(value: 0)
        let residuals = ControlResiduals(down: [], mid: Tensor(shape: [1], values: [5]))
        // Another request's step: its ControlNet holds the worker until released (its down path waits until the
        // worker has the call, else its own thread would take it).
        Thread.detachNewThread {
            _ = try? service.step(
                controls: [{
                    blocking.signal()
                    workerHasIt.signal()
                    _ = release.wait(timeout: .now() + 30)
                    return residuals
                }],
                downAndMid: { workerHasIt.wait(timeout: .now() + 10) }, up: { _, _ in Tensor(shape: [1], values: [0]) })
            otherDone.signal()
        }
        XCTAssertEqual(blocking.wait(timeout: .now() + 10), .success)
        let seen = ControlResidualsBox()
        let caller = pthread_self()
        var upPool: ObjectIdentifier?
        let output = try ComputePool.run(on: service.unetPool) {
            try service.step(
                controls: [{
                    seen.threads.append(pthread_self())
                    return residuals
                }],
                downAndMid: { 1 },
                up: { down, control in
                    upPool = ObjectIdentifier(ComputePool.current)
                    return Tensor(shape: [1], values: [Float(down) + control!.mid.scalars[0]])
                })
        }
        XCTAssertEqual(output.scalars, [6])
        XCTAssertEqual(seen.threads.count, 1)
        XCTAssertTrue(seen.threads.allSatisfy { pthread_equal($0, caller) != 0 }, "the step's thread ran its ControlNet")
        XCTAssertEqual(upPool, ObjectIdentifier(service.unetPool), "a busy worker's core is not lent")
        release.signal()
        XCTAssertEqual(otherDone.wait(timeout: .now() + 10), .success)
    }

    /// Several ControlNets of one step spread over the workers and are summed in request order; a failing
    /// ControlNet fails the step with its error.
    func testResidualsAreSummedInOrderAndErrorsPropagate() throws {
        let service = ControlNetService(workers: 2, threadsPerWorker: 1, unetThreads: 1)
        func constant(_ value: Float) -> @Sendable () throws -> ControlResiduals {
            { ControlResiduals(down: [Tensor(shape: [2], values: [value, -value])], mid: Tensor(shape: [1], values: [value])) }
        }
        let sequential = SequentialControlNetExecutor()
        for executor in [service, sequential] as [any ControlNetExecutor] {
            let output = try executor.step(
                controls: [constant(1), constant(10), constant(100)], downAndMid: { 0 },
                up: { _, control in control!.down[0] })
            XCTAssertEqual(output.scalars, [111, -111], executor.name)
            XCTAssertThrowsError(
                try executor.step(
                    controls: [constant(1), { throw GenerationError.invalidRequest("broken ControlNet") }], downAndMid: { 0 },
                    up: { _, _ in Tensor(shape: [1], values: [0]) })
            ) { error in
                XCTAssertEqual("\(error)".contains("broken ControlNet"), true, "\(error)")
            }
        }
    }
}
