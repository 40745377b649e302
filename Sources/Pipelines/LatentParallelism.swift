import Compute
import Foundation
import Models

/// Latent parallelism (SwiftDiffusion, §4.3) as its own part of the step: with classifier-free guidance the
/// unconditional and the conditional branch run at the same time, one per pool thread, each op single-threaded,
/// instead of one batch-2 UNet call whose every op is split over the threads. The branches meet only at the
/// guidance combine, so the per-op fork/join of a split batch disappears; on small latents that is most of the
/// cost. Results equal the batched call up to float rounding (the same ops on the same rows).
///
/// The denoising loop (`DenoisingSteps`) gives each step's UNet halves to `downAndMid` and `up`; when the branches
/// do not split (no guidance, `.off`, or a pool that is not two threads wide under `.automatic`) they are the
/// batched UNet calls.
struct LatentParallelism {
    let unet: UNet2DConditionModel
    let mode: DiffusionPipeline.BranchParallelism
    let guided: Bool
    /// True when this request's steps run the two branches side by side on the pool the steps run on. Each half of a
    /// step decides again for the pool it runs on (a ControlNet service may lend it more threads).
    let splitsBranches: Bool

    init(unet: UNet2DConditionModel, mode: DiffusionPipeline.BranchParallelism, guided: Bool, pool: ComputePool = .current) {
        self.unet = unet
        self.mode = mode
        self.guided = guided
        splitsBranches = Self.splits(mode: mode, guided: guided, pool: pool)
    }

    private static func splits(mode: DiffusionPipeline.BranchParallelism, guided: Bool, pool: ComputePool) -> Bool {
        switch (guided, mode) {
        case (false, _), (_, .off): false
        case (true, .on): pool.threadCount >= 2
        case (true, .automatic): pool.threadCount == 2
        }
    }

    /// The UNet's first half: one batched call, or two batch-1 down paths side by side.
    func downAndMid(_ input: Tensor, timesteps: [Float], conditioning: UNetConditioning) throws -> [UNet2DConditionModel.DownPath] {
        guard Self.splits(mode: mode, guided: guided, pool: .current) else {
            return [try unet.downAndMid(input, timesteps: timesteps, conditioning: conditioning)]
        }
        let inputs = chunk(input, 2, axis: 0)
        let conditionings = [Self.half(conditioning, 0), Self.half(conditioning, 1)]
        var outputs: [Result<UNet2DConditionModel.DownPath, any Error>?] = [nil, nil]
        outputs.withUnsafeMutableBufferPointer { results in
            ComputePool.current.parallelFor(2) { branch in
                results[branch] = Result { try unet.downAndMid(inputs[branch], timesteps: timesteps, conditioning: conditionings[branch]) }
            }
        }
        return [try outputs[0]!.get(), try outputs[1]!.get()]
    }

    /// The UNet's second half with the summed ControlNet residuals; split, each branch gets its half of them and the
    /// result is the same `[uncond; cond]` batch as the batched call.
    ///
    /// A batched down path splits here too when the up blocks get a wider pool than the steps (a ControlNet service
    /// lending its idle workers' cores): the branches then run side by side from the batched down path's halves.
    func up(_ down: [UNet2DConditionModel.DownPath], conditioning: UNetConditioning, control: ControlResiduals?) throws -> Tensor {
        let down = down.count == 1 && Self.splits(mode: mode, guided: guided, pool: .current) ? [Self.half(down[0], 0), Self.half(down[0], 1)] : down
        guard down.count == 2 else { return try unet.up(down[0], conditioning: conditioning, control: control) }
        // Halves are cut on this thread, before the branches start.
        let conditionings = [Self.half(conditioning, 0), Self.half(conditioning, 1)]
        let controls = [0, 1].map { branch in
            control.map { ControlResiduals(down: $0.down.map { Self.half($0, branch) }, mid: Self.half($0.mid, branch)) }
        }
        var outputs: [Result<Tensor, any Error>?] = [nil, nil]
        outputs.withUnsafeMutableBufferPointer { results in
            ComputePool.current.parallelFor(2) { branch in
                results[branch] = Result { try unet.up(down[branch], conditioning: conditionings[branch], control: controls[branch]) }
            }
        }
        return concat([try outputs[0]!.get(), try outputs[1]!.get()], axis: 0)
    }

    /// The halves of a batch-2 guidance tensor, or of every tensor of a conditioning, for one branch.
    static func half(_ tensor: Tensor, _ branch: Int) -> Tensor { chunk(tensor, 2, axis: 0)[branch] }

    static func half(_ down: UNet2DConditionModel.DownPath, _ branch: Int) -> UNet2DConditionModel.DownPath {
        UNet2DConditionModel.DownPath(sample: half(down.sample, branch), skips: down.skips.map { half($0, branch) }, timeEmbedding: half(down.timeEmbedding, branch))
    }

    static func half(_ conditioning: UNetConditioning, _ branch: Int) -> UNetConditioning {
        UNetConditioning(
            context: half(conditioning.context, branch), textEmbeds: conditioning.textEmbeds.map { half($0, branch) },
            timeIds: conditioning.timeIds.map { half($0, branch) }, timestepCondition: conditioning.timestepCondition.map { half($0, branch) })
    }
}
