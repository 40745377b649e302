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
/// do not split (no guidance, `.off`, or under `.automatic` a pool that is not two threads wide or a UNet and latent
/// size for which it does not pay, `pays(weightBytes:latentPositions:)`) they are the batched UNet calls.
struct LatentParallelism {
    let unet: UNet2DConditionModel
    let mode: DiffusionPipeline.BranchParallelism
    let guided: Bool
    /// Under `.automatic`, whether side-by-side branches pay for this UNet at this latent size (`pays(weightBytes:latentPositions:)`).
    let pays: Bool

    /// `.automatic` runs the branches side by side for a UNet whose weights (as stored) take at most this many bytes, ...
    static let automaticWeightLimit = 64 << 20
    /// ... or for latents of at least this many positions (height x width), whatever the UNet's size.
    static let automaticLatentPositions = 2048

    /// Whether side-by-side branches pay under `.automatic`. Side by side, each branch reads every weight once per step,
    /// where the batched call reads it once for both; what they save is the fork and join of every op split over the
    /// threads, and ops that split unevenly. The second read costs little while the weights stay in cache (a small UNet,
    /// where the per-op fork and join is most of a step) or while each layer has enough positions to reuse every weight
    /// many times (large latents); it dominates a large UNet's small latents, whose deepest blocks hold a few positions.
    /// Measured on 2 threads (docs/benchmarks.md): the embedded UNet (13 MB fp32) at 16x16 latents runs 0.54x of the
    /// batched call side by side; the SD 1.5 UNet (3.4 GB fp32) on an Intel Xeon 1.10x at 16x16 and 32x32 latents, 0.94x
    /// at 48x48 and 0.90x at 64x64 (1.00-1.01x at 32x32 on AMD Zen 4 and Zen 5).
    static func pays(weightBytes: Int, latentPositions: Int) -> Bool {
        weightBytes <= automaticWeightLimit || latentPositions >= automaticLatentPositions
    }

    /// `weightBytes`: the UNet's weights as stored (`LayerRegistry.parameterBytes`).
    init(unet: UNet2DConditionModel, weightBytes: Int, mode: DiffusionPipeline.BranchParallelism, guided: Bool, latentPositions: Int) {
        self.unet = unet
        self.mode = mode
        self.guided = guided
        pays = mode == .automatic && Self.pays(weightBytes: weightBytes, latentPositions: latentPositions)
    }

    /// Whether the two branches run side by side on `pool`. Each half of a step decides for the pool it runs on (a
    /// ControlNet service may lend the up blocks more threads than the down path had).
    func splits(on pool: ComputePool) -> Bool {
        switch (guided, mode) {
        case (false, _), (_, .off): false
        case (true, .on): pool.threadCount >= 2
        case (true, .automatic): pays && pool.threadCount == 2
        }
    }

    /// Whether the branches run side by side on the calling thread's pool.
    private var splitsHere: Bool { splits(on: .current) }

    /// The UNet's first half: one batched call, or two batch-1 down paths side by side.
    func downAndMid(_ input: Tensor, timesteps: [Float], conditioning: UNetConditioning) throws -> [UNet2DConditionModel.DownPath] {
        guard splitsHere else {
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
        let down = down.count == 1 && splitsHere ? [Self.half(down[0], 0), Self.half(down[0], 1)] : down
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
