import CKernels
import Synchronization

/// 3x3 stride-1 convolutions (fp32 or bf16 kernels, fp32 arithmetic) as Winograd F(4x4, 3x3) (Lavin & Gray, "Fast
/// Algorithms for Convolutional Neural Networks", 2016): each 4 x 4 block of output positions comes from a 6 x 6
/// input tile through 36 elementwise products where the direct form needs 144, and the products over input channels
/// are 36 GEMMs `M[xi] (tiles x out) = V[xi] (tiles x in) U[xi]^T` on the fp32 GEMM back end (`GEMM.serial`). The
/// transforms are the engine's SIMD kernels (`sd_kernel_table.winograd*`, per instruction set), so the path runs on
/// every processor.
///
/// Like `OneDNNConvolution`, the transformed kernel U (36 x out x in floats, 4x the kernel) is made per call from the
/// one copy of the weights that LoRA merging patches in place, never cached. Tiles go in chunks and output channels
/// in blocks so that U, V and M stay near `transformFloats` each (blocks round up to 16 channels and chunks hold at
/// least 32 tiles, so a wide layer can exceed it: 4.4 Mi floats for U of a 1280 -> 1280 layer); a chunk's three
/// phases (input transform, GEMMs, output transform) each run on the pool's threads. F(4x4, 3x3) in fp32 loses about
/// two decimal digits against the direct form on SD-sized layers (relative error ~1e-5; `WinogradConvolutionTests`
/// bounds it).
public enum WinogradConvolution {
    /// Fewest output positions (batch x height x width) at which `ConvolutionPaths.automatic` uses it, and fewest
    /// channels on either side (a narrower layer is all transform and no GEMM).
    public static let minimumPositions = 256
    public static let minimumChannels = 32

    /// Most floats each of the transformed kernel, input and product blocks of one call may take.
    static let transformFloats = 1 << 22

    /// Convolutions it has run in this process (tests check the path is taken).
    public static var completedRuns: Int { runs.load(ordering: .relaxed) }
    private static let runs = Atomic<Int>(0)

    /// Whether the convolution is one Winograd F(4x4, 3x3) computes: a 3x3 kernel at stride 1.
    static func applies(kernelHeight: Int, kernelWidth: Int, stride: Int) -> Bool {
        kernelHeight == 3 && kernelWidth == 3 && stride == 1
    }

    /// How one call is split: tiles in chunks of `chunkTiles`, output channels in blocks of `blockChannels`.
    struct Plan: Equatable {
        let tiles: Int, chunkTiles: Int, blockChannels: Int

        init(tiles: Int, inChannels: Int, outChannels: Int, limit: Int = WinogradConvolution.transformFloats) {
            self.tiles = tiles
            var block = outChannels
            if 36 * inChannels * outChannels > limit {
                let blocks = (36 * inChannels * outChannels + limit - 1) / limit
                block = min(outChannels, ((outChannels + blocks - 1) / blocks + 15) / 16 * 16)
            }
            blockChannels = block
            let widest = max(inChannels, block)
            let most = max(32, limit / (36 * widest))
            let chunks = (tiles + most - 1) / most
            chunkTiles = (tiles + chunks - 1) / chunks
        }
    }

    /// Runs the convolution `geometry` (a 3x3 stride-1 one) of `batch` images from `source` into `destination`,
    /// adding to it when `accumulate`. A bf16 kernel is widened exactly inside the kernel transform; everything after
    /// it is fp32, so the result is the fp32 convolution with the bf16-rounded weights. `table`: the kernels to use;
    /// `limit`: `transformFloats` (tests compare the instruction sets and splits).
    static func run(
        _ source: UnsafePointer<Float>, batch: Int, geometry g: ConvGeometry, kernel: LayerWeight, bias: UnsafePointer<Float>?,
        accumulate: Bool, into destination: UnsafeMutablePointer<Float>, pool: ComputePool, table: sd_kernel_table = Kernels.current,
        limit: Int = transformFloats
    ) {
        precondition(applies(kernelHeight: g.kernelHeight, kernelWidth: g.kernelWidth, stride: g.stride), "Winograd F(4x4, 3x3) needs a 3x3 stride-1 kernel")
        let inChannels = g.inChannels, outChannels = kernel.shape[0]
        var shape = sd_winograd_geometry(
            height: g.height, width: g.width, upsample: g.upsample, inChannels: inChannels, padTop: g.padding.top,
            padLeft: g.padding.left, outHeight: g.outHeight, outWidth: g.outWidth, outChannels: outChannels)
        let tiles = batch * ((g.outHeight + 3) / 4) * ((g.outWidth + 3) / 4)
        let plan = Plan(tiles: tiles, inChannels: inChannels, outChannels: outChannels, limit: limit)
        let blocks = stride(from: 0, to: outChannels, by: plan.blockChannels).map { $0..<min(outChannels, $0 + plan.blockChannels) }

        let uFloats = 36 * plan.blockChannels * inChannels
        let vFloats = 36 * plan.chunkTiles * inChannels
        let scratch = ThreadBinding.weightScratch(count: uFloats + vFloats + 36 * plan.chunkTiles * plan.blockChannels)
        let u = scratch, v = scratch + uFloats, m = scratch + uFloats + vFloats
        let (weights, bf16): (UnsafeRawPointer, Int32) =
            switch kernel {
            case .fp32(let tensor): (UnsafeRawPointer(tensor.storage.base), 0)
            case .bf16(let matrix, _): (UnsafeRawPointer(matrix.base), 1)
            }
        let elementBytes = bf16 == 1 ? 2 : 4
        withUnsafePointer(to: &shape) { shape in
            var transformedBlock: Range<Int>? = nil
            for chunkStart in stride(from: 0, to: tiles, by: plan.chunkTiles) {
                let chunk = min(plan.chunkTiles, tiles - chunkStart)
                pool.parallelRanges(chunk, minimumChunk: 8) { range in
                    table.winogradInput!(
                        source, shape, chunkStart + range.lowerBound, range.count, v + range.lowerBound * inChannels, chunk * inChannels)
                }
                for block in blocks {
                    if transformedBlock != block {
                        pool.parallelRanges(block.count, minimumChunk: 4) { range in
                            table.winogradKernel!(
                                weights + (block.lowerBound + range.lowerBound) * 9 * inChannels * elementBytes, bf16, range.count, inChannels,
                                u + range.lowerBound * inChannels, block.count * inChannels)
                        }
                        transformedBlock = block
                    }
                    pool.parallelFor(36) { xi in
                        GEMM.serial(
                            false, true, chunk, block.count, inChannels, 1, v + xi * chunk * inChannels, inChannels,
                            u + xi * block.count * inChannels, inChannels, 0, m + xi * chunk * block.count, block.count)
                    }
                    pool.parallelRanges(chunk, minimumChunk: 8) { range in
                        table.winogradOutput!(
                            m + range.lowerBound * block.count, chunk * block.count, block.count, shape, chunkStart + range.lowerBound,
                            range.count, block.lowerBound, block.count, bias, accumulate ? 1 : 0, destination)
                    }
                }
            }
        }
        withExtendedLifetime(kernel) {}
        runs.add(1, ordering: .relaxed)
    }
}
