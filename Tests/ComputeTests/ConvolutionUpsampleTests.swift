import Compute
import ParityTesting
import Foundation
import XCTest

/// `conv2d(..., upsample:)`: the convolution of the nearest-neighbour upsampled input, computed from the input itself.
/// It must give exactly what upsampling first and convolving gives (the same panels reach the same GEMM), for fp32
/// and bf16 kernels, padded and strided, and for a 1x1 kernel (which cannot take the direct GEMM path then).
final class ConvolutionUpsampleTests: XCTestCase {
    private func random(_ shape: [Int], seed: UInt64) -> Tensor { seededTensor(shape, seed: seed) }

    func testUpsampledConvolutionEqualsUpsampleThenConvolve() {
        let x = random([2, 5, 7, 12], seed: 11)
        let bias = random([10], seed: 12)
        let cases: [(kernel: Int, stride: Int, padding: Padding2D)] = [
            (3, 1, .uniform(1)), (3, 2, .uniform(1)), (3, 1, .none), (1, 1, .none), (3, 1, Padding2D(top: 0, bottom: 1, left: 2, right: 0)),
        ]
        for precision in [ComputePrecision.fp32, .bf16] {
            for (kernelSize, stride, padding) in cases {
                let kernel = LayerWeight.make(channelsLastKernel(random([10, 12, kernelSize, kernelSize], seed: 13)), precision: precision)
                for factor in [2, 3] {
                    let reference = conv2d(upsampleNearest(x, factor: factor), weight: kernel, bias: bias, stride: stride, padding: padding)
                    let fused = conv2d(x, weight: kernel, bias: bias, stride: stride, padding: padding, upsample: factor)
                    XCTAssertEqual(fused.shape, reference.shape)
                    XCTAssertEqual(
                        fused.scalars, reference.scalars,
                        "\(precision) kernel \(kernelSize) stride \(stride) padding \(padding) factor \(factor)")
                }
            }
        }
    }
}
