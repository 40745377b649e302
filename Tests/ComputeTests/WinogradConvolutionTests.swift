import CKernels
@testable import Compute
import Foundation
import ParityTesting
import XCTest

/// Winograd F(4x4, 3x3) (`WinogradConvolution`) against a double-precision direct convolution: output sizes that
/// are not multiples of the 4 x 4 tile, every padding the engine uses (none, 1, asymmetric, 2), virtual upsampling,
/// bias, accumulation, channel counts that do not fill a vector, batches; every instruction set's transforms; pools of
/// 1, 2 and 3 threads; and tiles in several chunks and output channels in several blocks.
final class WinogradConvolutionTests: ConvolutionPathTestCase {
    private struct Case {
        var input: [Int]
        var outChannels: Int
        var padding = Padding2D.uniform(1)
        var upsample = 1
        var accumulate = false
        var bias = true
    }

    private let cases: [Case] = [
        Case(input: [1, 9, 11, 20], outChannels: 24),
        Case(input: [2, 8, 8, 32], outChannels: 64),
        Case(input: [3, 7, 5, 8], outChannels: 40, padding: Padding2D(top: 0, bottom: 1, left: 1, right: 0)),
        Case(input: [1, 6, 5, 16], outChannels: 32, upsample: 2),
        Case(input: [2, 10, 6, 12], outChannels: 18, accumulate: true),
        Case(input: [2, 4, 4, 8], outChannels: 16, padding: .none, accumulate: true, bias: false),
        Case(input: [1, 3, 3, 5], outChannels: 3, padding: .none),
        Case(input: [1, 5, 7, 17], outChannels: 33, padding: .uniform(2), upsample: 3),
        Case(input: [1, 8, 8, 320], outChannels: 40),
    ]

    private struct Operands {
        let x: Tensor, kernel: Tensor, bias: Tensor?, target: Tensor?
        let outHeight: Int, outWidth: Int
    }

    private func operands(_ c: Case, seed: UInt64) -> Operands {
        let outHeight = c.input[1] * c.upsample + c.padding.top + c.padding.bottom - 2
        let outWidth = c.input[2] * c.upsample + c.padding.left + c.padding.right - 2
        return Operands(
            x: seededTensor(c.input, seed: seed), kernel: seededTensor([c.outChannels, 3, 3, c.input[3]], seed: seed + 1),
            bias: c.bias ? seededTensor([c.outChannels], seed: seed + 2) : nil,
            target: c.accumulate ? seededTensor([c.input[0], outHeight, outWidth, c.outChannels], seed: seed + 3) : nil,
            outHeight: outHeight, outWidth: outWidth)
    }

    /// The direct convolution in double precision, and the sum of |terms| of each output (the error scale).
    private func reference(_ c: Case, _ o: Operands) -> (values: [Double], magnitudes: [Double]) {
        let (batch, height, width, inChannels) = (c.input[0], c.input[1] * c.upsample, c.input[2] * c.upsample, c.input[3])
        let x = o.x.scalars, w = o.kernel.scalars, b = o.bias?.scalars, t = o.target?.scalars
        var values: [Double] = [], magnitudes: [Double] = []
        for n in 0..<batch {
            for oy in 0..<o.outHeight {
                for ox in 0..<o.outWidth {
                    for oc in 0..<c.outChannels {
                        var sum = Double(b?[oc] ?? 0), magnitude = abs(sum)
                        for kh in 0..<3 {
                            let iy = oy + kh - c.padding.top
                            guard iy >= 0 && iy < height else { continue }
                            for kw in 0..<3 {
                                let ix = ox + kw - c.padding.left
                                guard ix >= 0 && ix < width else { continue }
                                let pixel = ((n * c.input[1] + iy / c.upsample) * c.input[2] + ix / c.upsample) * inChannels
                                for ic in 0..<inChannels {
                                    let term = Double(x[pixel + ic]) * Double(w[((oc * 3 + kh) * 3 + kw) * inChannels + ic])
                                    sum += term
                                    magnitude += abs(term)
                                }
                            }
                        }
                        let index = ((n * o.outHeight + oy) * o.outWidth + ox) * c.outChannels + oc
                        if let t { sum += Double(t[index]); magnitude += abs(Double(t[index])) }
                        values.append(sum)
                        magnitudes.append(magnitude)
                    }
                }
            }
        }
        return (values, magnitudes)
    }

    private func winograd(
        _ c: Case, _ o: Operands, pool: ComputePool, table: sd_kernel_table = Kernels.current, limit: Int = WinogradConvolution.transformFloats,
        kernel: LayerWeight? = nil
    ) -> [Float] {
        let output = o.target.map { Tensor(shape: $0.shape, values: $0.scalars) } ?? Tensor.zeros([c.input[0], o.outHeight, o.outWidth, c.outChannels])
        let geometry = ConvGeometry(
            height: c.input[1] * c.upsample, width: c.input[2] * c.upsample, inChannels: c.input[3], outHeight: o.outHeight,
            outWidth: o.outWidth, kernelHeight: 3, kernelWidth: 3, stride: 1, padding: c.padding, upsample: c.upsample)
        WinogradConvolution.run(
            o.x.storage.base, batch: c.input[0], geometry: geometry, kernel: kernel ?? .fp32(o.kernel), bias: o.bias?.storage.base,
            accumulate: o.target != nil, into: output.storage.base, pool: pool, table: table, limit: limit)
        return output.scalars
    }

    /// Worst |error| / (sum of |terms|) over the outputs: about 1e-6 for F(4x4, 3x3) in fp32 on these values.
    private func worstRelativeError(_ candidate: [Float], _ expected: (values: [Double], magnitudes: [Double])) -> Double {
        precondition(candidate.count == expected.values.count)
        var worst = 0.0
        for i in candidate.indices {
            worst = max(worst, abs(Double(candidate[i]) - expected.values[i]) / max(expected.magnitudes[i], 1e-30))
        }
        return worst
    }

    func testEveryInstructionSetMatchesTheDirectConvolution() {
        let variants = [ProcessorFeatures.InstructionSet.baseline, .avx2, .avx512].compactMap { Kernels.variant($0) }
        XCTAssertGreaterThanOrEqual(variants.count, 1)
        for threads in [1, 2, 3] {
            let pool = ComputePool(threadCount: threads)
            defer { pool.shutDown() }
            for (index, c) in cases.enumerated() {
                let o = operands(c, seed: UInt64(200 + index * 10))
                let expected = reference(c, o)
                for variant in variants {
                    let error = worstRelativeError(winograd(c, o, pool: pool, table: variant.table), expected)
                    XCTAssertLessThan(error, 2e-5, "case \(index), \(variant.name), \(threads) threads")
                }
            }
        }
    }

    /// A bf16 kernel is widened exactly in the kernel transform: the result is bitwise the fp32 path's on the widened
    /// weights, for every instruction set (vector and partial-vector loads), and conv2d takes the path for bf16 layers.
    func testABF16KernelGivesTheFP32ResultOfItsValues() {
        let pool = ComputePool(threadCount: 2)
        defer { pool.shutDown() }
        for (index, c) in [cases[1], cases[2], cases[7]].enumerated() {
            let o = operands(c, seed: UInt64(300 + index))
            let bf16 = LayerWeight.make(o.kernel, precision: .bf16)
            let widened = Operands(x: o.x, kernel: bf16.fp32Values, bias: o.bias, target: o.target, outHeight: o.outHeight, outWidth: o.outWidth)
            for variant in [ProcessorFeatures.InstructionSet.baseline, .avx2, .avx512].compactMap({ Kernels.variant($0) }) {
                XCTAssertEqual(
                    winograd(c, o, pool: pool, table: variant.table, kernel: bf16), winograd(c, widened, pool: pool, table: variant.table),
                    "case \(index), \(variant.name)")
                // Output channels in blocks: each block's kernel rows start at their own offset in the bf16 matrix.
                let limit = 36 * c.input[3] * 16
                XCTAssertEqual(
                    winograd(c, o, pool: pool, table: variant.table, limit: limit, kernel: bf16),
                    winograd(c, widened, pool: pool, table: variant.table, limit: limit), "case \(index), \(variant.name), blocks")
            }
        }
        ConvolutionPaths.setMode(.automatic)
        let before = WinogradConvolution.completedRuns
        let x = seededTensor([1, 16, 16, 32], seed: 1), w = LayerWeight.make(seededTensor([32, 3, 3, 32], seed: 2), precision: .bf16)
        _ = conv2d(x, weight: w, bias: nil, padding: .uniform(1))
        XCTAssertEqual(WinogradConvolution.completedRuns - before, 1)
    }

    /// Tiles in chunks and output channels in blocks (a tiny transform limit) give the result of one chunk.
    func testChunksAndBlocksGiveTheWholeResult() {
        let pool = ComputePool(threadCount: 2)
        defer { pool.shutDown() }
        let c = Case(input: [2, 29, 30, 24], outChannels: 70, accumulate: true)
        let o = operands(c, seed: 11)
        let limit = 36 * 24 * 40
        let plan = WinogradConvolution.Plan(tiles: 2 * 8 * 8, inChannels: 24, outChannels: 70, limit: limit)
        XCTAssertLessThan(plan.blockChannels, 70)
        XCTAssertLessThan(plan.chunkTiles, plan.tiles)
        let whole = winograd(c, o, pool: pool)
        let pieces = winograd(c, o, pool: pool, limit: limit)
        // The same operations per output, but GEMMs of other shapes: a back end may pick another kernel, so not bitwise.
        XCTAssertLessThan(zip(pieces, whole).map { abs($0 - $1) }.max() ?? 1, 1e-5, "chunks and blocks against one chunk")
        XCTAssertLessThan(worstRelativeError(pieces, reference(c, o)), 2e-5)
    }

    func testPlansStayWithinTheLimit() {
        for (tiles, inChannels, outChannels) in [(512, 960, 320), (128, 1280, 1280), (8192, 128, 128), (128, 1920, 640), (1, 4, 4)] {
            let plan = WinogradConvolution.Plan(tiles: tiles, inChannels: inChannels, outChannels: outChannels)
            let limit = WinogradConvolution.transformFloats
            XCTAssertLessThanOrEqual(36 * inChannels * plan.blockChannels, limit + 36 * inChannels * 15, "U for \(inChannels) -> \(outChannels)")
            XCTAssertLessThanOrEqual(36 * plan.chunkTiles * max(inChannels, plan.blockChannels), max(limit, 36 * 32 * max(inChannels, plan.blockChannels)))
            XCTAssertGreaterThan(plan.blockChannels, 0)
            XCTAssertGreaterThan(plan.chunkTiles, 0)
            XCTAssertLessThanOrEqual(plan.chunkTiles, tiles)
        }
    }

    /// conv2d takes the path: in `winograd` mode for any 3x3 stride-1 layer, in `automatic` from the measured size, never
    /// for a stride-2 or 1x1 layer or in `im2col` / `onednn` mode.
    func testConv2dChoosesWinogradWhereItApplies() {
        func runs(_ mode: ConvolutionPaths.Mode, input: [Int], outChannels: Int, kernel: Int = 3, stride: Int = 1) -> Int {
            ConvolutionPaths.setMode(mode)
            let before = WinogradConvolution.completedRuns
            let x = seededTensor(input, seed: 1), w = seededTensor([outChannels, kernel, kernel, input[3]], seed: 2)
            _ = conv2d(x, weight: w, bias: nil, stride: stride, padding: .uniform(kernel / 2))
            return WinogradConvolution.completedRuns - before
        }
        XCTAssertEqual(runs(.winograd, input: [1, 4, 4, 3], outChannels: 2), 1)
        XCTAssertEqual(runs(.winograd, input: [0, 4, 4, 3], outChannels: 2), 0, "an empty batch has no tiles")
        XCTAssertEqual(runs(.winograd, input: [1, 8, 8, 8], outChannels: 8, stride: 2), 0)
        XCTAssertEqual(runs(.winograd, input: [1, 8, 8, 8], outChannels: 8, kernel: 1), 0)
        XCTAssertEqual(runs(.automatic, input: [1, 16, 16, 32], outChannels: 32), 1)
        XCTAssertEqual(runs(.automatic, input: [1, 15, 15, 32], outChannels: 32), 0, "225 positions")
        XCTAssertEqual(runs(.automatic, input: [1, 16, 16, 4], outChannels: 32), 0, "4 input channels")
        XCTAssertEqual(runs(.im2col, input: [1, 16, 16, 32], outChannels: 32), 0)
        XCTAssertEqual(runs(.oneDNN, input: [1, 16, 16, 32], outChannels: 32), 0)
    }
}

extension WinogradConvolutionTests {
    /// An image's result does not depend on the batch it comes in or on the pool's thread count (guidance branches run
    /// as one batch or side by side): within 1e-5 (GEMMs of another M may run another back-end kernel).
    func testAnImagesResultDoesNotDependOnItsBatchOrThePool() {
        for (size, channels) in [(16, 32), (8, 64), (32, 16)] {
            let c = Case(input: [2, size, size, channels], outChannels: channels)
            let o = operands(c, seed: 31)
            let half = size * size * channels
            var results: [[Float]] = []
            for threads in [1, 2] {
                let pool = ComputePool(threadCount: threads)
                defer { pool.shutDown() }
                results.append(winograd(c, o, pool: pool))
                for image in 0..<2 {
                    let single = Case(input: [1, size, size, channels], outChannels: channels)
                    let x = Tensor(shape: [1, size, size, channels], values: Array(o.x.scalars[(image * half)..<((image + 1) * half)]))
                    let one = Operands(x: x, kernel: o.kernel, bias: o.bias, target: nil, outHeight: size, outWidth: size)
                    let y = winograd(single, one, pool: pool)
                    let batched = Array(results[0][(image * half)..<((image + 1) * half)])
                    XCTAssertLessThan(
                        zip(y, batched).map { abs($0 - $1) }.max() ?? 1, 1e-5, "image \(image) alone, \(size)x\(size)x\(channels), \(threads) threads")
                }
            }
            XCTAssertLessThan(zip(results[0], results[1]).map { abs($0 - $1) }.max() ?? 1, 1e-5, "1 and 2 threads")
        }
    }
}
