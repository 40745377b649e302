import CDNNLMatmul
@testable import Compute
import Foundation
import ParityTesting
import XCTest

/// fp32 convolutions through oneDNN's brgemm convolution (`OneDNNConvolution`) against the engine's im2col + GEMM:
/// whole images and bands of rows on pools of 1, 2 and 3 threads, strides, asymmetric padding, virtual upsampling,
/// bias, accumulation, and output channels that do not fill oneDNN's weight blocks. Where this processor's oneDNN
/// has no brgemm convolution (AVX2, or `SWIFTDIFFUSION_ISA` below AVX-512), the test checks that conv2d falls back
/// to im2col with bitwise the same result.
final class OneDNNConvolutionTests: ConvolutionPathTestCase {
    private struct Case {
        var input: [Int]
        var outChannels: Int
        var kernel: (Int, Int)
        var stride = 1
        var padding = Padding2D.uniform(1)
        var upsample = 1
        var accumulate = false
        var bias = true
        /// oneDNN prefers another implementation for this small shape (then conv2d keeps im2col).
        var oneDNNMayRefuse = false
    }

    private let cases: [Case] = [
        Case(input: [1, 9, 11, 20], outChannels: 24, kernel: (3, 3)),
        Case(input: [2, 8, 8, 32], outChannels: 64, kernel: (3, 3), stride: 2),
        Case(input: [3, 7, 5, 8], outChannels: 40, kernel: (3, 3), stride: 2, padding: Padding2D(top: 0, bottom: 1, left: 1, right: 0)),
        Case(input: [1, 6, 5, 16], outChannels: 32, kernel: (3, 3), upsample: 2),
        Case(input: [2, 10, 6, 12], outChannels: 18, kernel: (3, 3), accumulate: true),
        Case(input: [1, 12, 9, 4], outChannels: 33, kernel: (5, 3), padding: Padding2D(top: 2, bottom: 2, left: 1, right: 1), bias: false,
            oneDNNMayRefuse: true),
        Case(input: [2, 4, 4, 8], outChannels: 16, kernel: (3, 3), padding: .none, accumulate: true, bias: false),
        Case(input: [1, 8, 8, 320], outChannels: 40, kernel: (3, 3)),
    ]

    private func convolve(_ c: Case, mode: ConvolutionPaths.Mode, seed: UInt64) -> Tensor {
        ConvolutionPaths.setMode(mode)
        let x = seededTensor(c.input, seed: seed)
        let kernel = seededTensor([c.outChannels, c.kernel.0, c.kernel.1, c.input[3]], seed: seed + 1)
        let bias = c.bias ? seededTensor([c.outChannels], seed: seed + 2) : nil
        let outHeight = (c.input[1] * c.upsample + c.padding.top + c.padding.bottom - c.kernel.0) / c.stride + 1
        let outWidth = (c.input[2] * c.upsample + c.padding.left + c.padding.right - c.kernel.1) / c.stride + 1
        let target = c.accumulate ? seededTensor([c.input[0], outHeight, outWidth, c.outChannels], seed: seed + 3) : nil
        return conv2d(x, weight: .fp32(kernel), bias: bias, stride: c.stride, padding: c.padding, upsample: c.upsample, accumulatingInto: target)
    }

    func testOneDNNConvolutionMatchesIm2colOnEveryShape() {
        let oneDNNHasIt = String(cString: sd_dnnl_effective_isa()).hasPrefix("avx512")
        XCTAssertEqual(OneDNNConvolution.available, oneDNNHasIt, "oneDNN \(String(cString: sd_dnnl_effective_isa()))")
        print("convolution: \(OneDNNConvolution.summary)")
        for threads in [1, 2, 3] {
            let pool = ComputePool(threadCount: threads)
            defer { pool.shutDown() }
            ComputePool.run(on: pool) {
                for (index, c) in cases.enumerated() {
                    let seed = UInt64(100 + index * 10)
                    let reference = convolve(c, mode: .im2col, seed: seed)
                    let runsBefore = OneDNNConvolution.completedRuns
                    let candidate = convolve(c, mode: .oneDNN, seed: seed)
                    let ran = OneDNNConvolution.completedRuns - runsBefore
                    if !c.oneDNNMayRefuse { XCTAssertEqual(ran, oneDNNHasIt ? 1 : 0, "case \(index): oneDNN ran") }
                    XCTAssertEqual(candidate.shape, reference.shape)
                    if ran == 1 {
                        let depth = Float(c.kernel.0 * c.kernel.1 * c.input[3])
                        assertClose(candidate, reference, tolerance: 2e-6 * depth, "case \(index) on \(threads) threads")
                    } else {
                        XCTAssertEqual(candidate.scalars, reference.scalars, "case \(index): the fallback is im2col itself")
                        XCTAssertEqual(ran, 0)
                    }
                }
            }
        }
    }

    /// The result does not depend on how the images are split into bands (1, 2 or 3 threads): each band reads its
    /// own input rows and pads only at the image's edges.
    func testBandsGiveTheSameResultAsWholeImages() {
        let c = Case(input: [1, 13, 7, 16], outChannels: 32, kernel: (3, 3), stride: 2)
        var results: [[Float]] = []
        for threads in [1, 2, 3] {
            let pool = ComputePool(threadCount: threads)
            defer { pool.shutDown() }
            results.append(ComputePool.run(on: pool) { convolve(c, mode: .oneDNN, seed: 7).scalars })
        }
        let whole = results[0]
        for banded in results.dropFirst() {
            XCTAssertEqual(banded.count, whole.count)
            let worst = zip(banded, whole).map { abs($0 - $1) }.max() ?? 0
            XCTAssertLessThan(worst, 1e-4)
        }
    }

    func testAutomaticModeStartsAtTheMeasuredSize() {
        ConvolutionPaths.setMode(.automatic)
        XCTAssertFalse(OneDNNConvolution.wanted(positions: OneDNNConvolution.minimumPositions - 1))
        XCTAssertEqual(OneDNNConvolution.wanted(positions: OneDNNConvolution.minimumPositions), OneDNNConvolution.available)
        ConvolutionPaths.setMode(.im2col)
        XCTAssertFalse(OneDNNConvolution.wanted(positions: 1 << 20))
    }

    /// The fp32 GEMM back ends agree on a linear layer (oneDNN's matmul where it runs AVX-512, OpenBLAS otherwise).
    func testFP32BackEndsAgree() {
        let original = GEMM.fp32Backend
        defer { GEMM.setFP32Backend(original) }
        let x = seededTensor([37, 96], seed: 3), weight = seededTensor([70, 96], seed: 4), bias = seededTensor([70], seed: 5)
        GEMM.setFP32Backend(.openBLAS)
        let reference = linear(x, weight: weight, bias: bias)
        GEMM.setFP32Backend(.oneDNN)
        assertClose(linear(x, weight: weight, bias: bias), reference, tolerance: 2e-5, "oneDNN fp32 matmul")
    }
}
