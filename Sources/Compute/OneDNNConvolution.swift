import CDNNLMatmul
import Foundation
import Synchronization

/// fp32 convolutions through oneDNN's brgemm ("brgconv") direct convolution on channels-last activations, where
/// oneDNN has one for this processor (AVX-512 and up in oneDNN 2.6); elsewhere `conv2d` keeps im2col + GEMM.
///
/// oneDNN reads the kernel in its blocked layout Ohwi<B>o (output channels in blocks of B, innermost). The engine
/// keeps one fp32 copy of every weight in its own layout, which LoRA merging patches in place, so each call blocks
/// the kernel into the calling thread's scratch (one pass over the weights, split over the pool) instead of caching
/// a second copy that would double the convolution weights (2.2 GB on SD 1.5) and go stale under a merge. That pass
/// pays for itself from about a thousand output positions, hence `minimumPositions`.
///
/// The pool's threads each run a single-threaded primitive on whole images or on bands of output rows (a band reads
/// the input rows it needs; padding applies only at the image's own edges), so the result does not depend on how
/// the work is split. `ConvolutionPaths.mode` says where it runs.
public enum OneDNNConvolution {
    /// Fewest output positions at which `automatic` uses oneDNN. `bench ops --backends` on Zen 4 (3x3, batch 2, against
    /// im2col on the faster GEMM): 8192 positions 1.13-1.22x faster, 2048 1.12-1.41x, 512 0.97x, 128 0.84x.
    public static let minimumPositions = 1024

    /// Most floats a band of a virtually upsampled input may take in a thread's scratch.
    static let upsampledBandFloats = 1 << 22

    /// Whether the processor's oneDNN runs its brgemm convolution (checked once on an SD-sized 3x3 convolution).
    public static let available: Bool = {
        _ = GEMM.oneDNNConfigured
        let geometry: [Int64] = [16, 16, 64, 64, 3, 3, 1, 1, 1, 1, 1]
        return sd_dnnl_convolution_weight_block(geometry, 0, 1) > 0
    }()

    /// What `bench ops` and `generate --verbose` print.
    public static var summary: String {
        if !available { return "no oneDNN brgemm convolution here (oneDNN \(String(cString: sd_dnnl_version())))" }
        return "oneDNN brgemm, fp32, from \(minimumPositions) output positions"
    }

    /// Convolutions oneDNN has run in this process (tests check the path is taken).
    public static var completedRuns: Int { runs.load(ordering: .relaxed) }
    private static let runs = Atomic<Int>(0)

    static func wanted(positions: Int) -> Bool {
        switch ConvolutionPaths.mode {
        case .im2col: false
        case .automatic, .winograd: available && positions >= minimumPositions
        case .oneDNN: available
        }
    }

    /// Runs the convolution `geometry` of `batch` images from `source` into `destination` (adding to it when
    /// `accumulate`), or returns false without writing anything where oneDNN refuses one of its bands.
    static func run(
        _ source: UnsafePointer<Float>, batch: Int, geometry: ConvGeometry, kernel: Tensor, bias: UnsafePointer<Float>?,
        accumulate: Bool, into destination: UnsafeMutablePointer<Float>, pool: ComputePool
    ) -> Bool {
        let g = geometry, outChannels = kernel.shape[0]
        // Images x bands: a multiple of the thread count, so that every thread gets the same work.
        var bands = pool.threadCount / greatestCommonDivisor(batch, pool.threadCount)
        let rowFloats = g.width * g.inChannels
        if g.upsample > 1 {
            // Each band's upsampled input rows go through a thread's scratch: keep them bounded.
            let bandInputRows = { (bands: Int) in ((g.outHeight + bands - 1) / bands - 1) * g.stride + g.kernelHeight }
            while bands < g.outHeight && bandInputRows(bands) * rowFloats > upsampledBandFloats { bands += 1 }
        }
        bands = min(bands, g.outHeight)
        let plans = (0..<bands).map { band in BandPlan(geometry: g, outChannels: outChannels, rows: (g.outHeight * band / bands)..<(g.outHeight * (band + 1) / bands)) }
        let blocks = Set(plans.map { sd_dnnl_convolution_weight_block($0.key, accumulate ? 1 : 0, bias == nil ? 0 : 1) })
        guard blocks.count == 1, let block = blocks.first, block > 0 else { return false }

        let inner = g.kernelHeight * g.kernelWidth * g.inChannels
        let blockCount = (outChannels + Int(block) - 1) / Int(block)
        let blocked = ThreadBinding.weightScratch(count: blockCount * Int(block) * inner)
        pool.parallelRanges(blockCount) { range in
            sd_block_convolution_weights(
                kernel.storage.base, Int64(outChannels), Int64(inner), Int64(block), Int64(range.lowerBound), Int64(range.count), blocked)
        }
        let sourceImage = (g.height / g.upsample) * (g.width / g.upsample) * g.inChannels
        let outputImage = g.outHeight * g.outWidth * outChannels
        pool.parallelFor(batch * bands) { item in
            let (image, band) = item.quotientAndRemainder(dividingBy: bands)
            let plan = plans[band]
            let input: UnsafePointer<Float>
            let imageSource = source + image * sourceImage
            if g.upsample == 1 {
                input = imageSource + plan.inputRows.lowerBound * rowFloats
            } else {
                let scratch = ThreadBinding.scratch(count: plan.inputRows.count * rowFloats)
                g.upsampleRows(imageSource, rows: plan.inputRows, into: scratch)
                input = UnsafePointer(scratch)
            }
            let output = destination + image * outputImage + plan.outputRows.lowerBound * g.outWidth * outChannels
            let status = sd_dnnl_convolution(plan.key, accumulate ? 1 : 0, input, blocked, bias, output)
            precondition(status == 0, "oneDNN convolution \(plan.key) failed with status \(status) after accepting it")
        }
        runs.add(1, ordering: .relaxed)
        return true
    }

    /// One band of output rows: the input rows it reads and the padding at the image's edges it touches.
    struct BandPlan {
        let outputRows: Range<Int>
        let inputRows: Range<Int>
        /// sd_dnnl_convolution's geometry.
        let key: [Int64]

        init(geometry g: ConvGeometry, outChannels: Int, rows: Range<Int>) {
            outputRows = rows
            let first = rows.lowerBound * g.stride - g.padding.top
            let end = (rows.upperBound - 1) * g.stride - g.padding.top + g.kernelHeight
            let lower = max(0, first)
            inputRows = lower..<max(lower, min(g.height, end))
            key = [
                inputRows.count, g.width, g.inChannels, outChannels, g.kernelHeight, g.kernelWidth, g.stride,
                max(0, -first), max(0, end - g.height), g.padding.left, g.padding.right,
            ].map(Int64.init)
        }
    }

    private static func greatestCommonDivisor(_ a: Int, _ b: Int) -> Int { b == 0 ? max(a, 1) : greatestCommonDivisor(b, a % b) }
}

extension ConvGeometry {
    /// Rows `rows` of the nearest-neighbour upsampled image (as the convolution sees it) from its `source` image.
    func upsampleRows(_ source: UnsafePointer<Float>, rows: Range<Int>, into target: UnsafeMutablePointer<Float>) {
        let sourceWidth = width / upsample
        var out = target
        for y in rows {
            let sourceRow = source + (y / upsample) * sourceWidth * inChannels
            for x in 0..<width {
                out.update(from: sourceRow + (x / upsample) * inChannels, count: inChannels)
                out += inChannels
            }
        }
    }
}
