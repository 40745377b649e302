import Compute
import Foundation
import ParityTesting
import XCTest

/// The bf16 GEMM path (oneDNN matmul, bf16 operands, fp32 accumulation): it must equal an fp32 GEMM of the
/// bf16-rounded operands up to fp32 summation order, and differ from the fp32 GEMM of the unrounded operands by
/// about bf16's rounding (2^-9 relative per operand). Runs on every processor: oneDNN computes bf16 products on
/// processors without bf16 instructions too (emulated); only the user-facing `--precision bf16` is refused there.
final class BF16Tests: ConvolutionPathTestCase {
    private func random(_ shape: [Int], seed: UInt64) -> Tensor { seededTensor(shape, seed: seed) }

    /// Rounds every element to bf16 (round to nearest even) and back, in Swift, independently of the C shim.
    private func roundedToBF16(_ x: Tensor) -> Tensor {
        Tensor(shape: x.shape, values: x.scalars.map { value in
            let bits = value.bitPattern
            let rounded = (bits &+ 0x7fff &+ ((bits >> 16) & 1)) & 0xffff_0000
            return Float(bitPattern: rounded)
        })
    }

    func testConversionRoundsToNearestEven() {
        let values: [Float] = [1, 1 + 1.0 / 256, 1 + 1.0 / 128 + 1.0 / 256, -3.140625, 65504, 1e-30, 0, -0]
        let tensor = Tensor(shape: [values.count], values: values)
        let widened = LayerWeight.make(tensor.reshaped([1, values.count]), precision: .bf16).fp32Values
        // 1 + 2^-8 is a tie between 1 and 1 + 2^-7: even is 1. 1 + 3 * 2^-8 ties up to 1 + 2^-6 (even mantissa).
        XCTAssertEqual(widened.scalars, [1, 1, 1 + 1.0 / 64, -3.140625, 65536, roundedToBF16(Tensor(shape: [1], values: [1e-30])).scalars[0], 0, -0])
        XCTAssertEqual(widened.scalars, roundedToBF16(tensor).scalars)
    }

    func testLinearEqualsFP32OfRoundedOperands() {
        for (rows, inFeatures, outFeatures) in [(77, 768, 768), (300, 320, 1280), (5, 40, 3)] {
            let x = random([rows, inFeatures], seed: 1), weight = random([outFeatures, inFeatures], seed: 2)
            let bias = random([outFeatures], seed: 3)
            let bf16 = linear(x, weight: LayerWeight.make(weight, precision: .bf16), bias: bias)
            let emulated = linear(roundedToBF16(x), weight: roundedToBF16(weight), bias: bias)
            let exact = linear(x, weight: weight, bias: bias)
            // Same products, fp32 sums in another order: a few fp32 ulps of sqrt(k)-sized sums.
            assertClose(bf16, emulated, tolerance: 2e-5 * Float(inFeatures).squareRoot(), "bf16 vs emulated \(rows)x\(outFeatures)x\(inFeatures)")
            // bf16 rounding of both operands: relative error up to 2^-8 per product, random signs: ~ 2^-8 sqrt(k / 3) / 2.
            let difference = zip(bf16.scalars, exact.scalars).map { abs($0 - $1) }.max()!
            XCTAssertGreaterThan(difference, 0, "the bf16 path must round (it is not running fp32)")
            XCTAssertLessThan(difference, 0.01 * Float(inFeatures).squareRoot(), "bf16 vs fp32 \(rows)x\(outFeatures)x\(inFeatures)")
        }
    }

    /// On the im2col path both operands are rounded to bf16; on the Winograd path only the kernel is (the activations
    /// stay fp32), so there it equals the fp32 convolution of the rounded kernel.
    func testConvolutionEqualsFP32OfRoundedOperands() {
        ConvolutionPaths.setMode(.im2col)
        defer { ConvolutionPaths.setMode(.winograd) }
        let x = random([2, 9, 7, 16], seed: 4)
        let kernel = channelsLastKernel(random([24, 16, 3, 3], seed: 5))
        let bias = random([24], seed: 6)
        for (stride, padding) in [(1, Padding2D.uniform(1)), (2, Padding2D(top: 0, bottom: 1, left: 0, right: 1))] {
            let bf16 = conv2d(x, weight: LayerWeight.make(kernel, precision: .bf16), bias: bias, stride: stride, padding: padding)
            let emulated = conv2d(roundedToBF16(x), weight: roundedToBF16(kernel), bias: bias, stride: stride, padding: padding)
            assertClose(bf16, emulated, tolerance: 1e-4, "bf16 conv stride \(stride)")
        }
        // 1x1: the direct GEMM path.
        let pointwise = channelsLastKernel(random([8, 16, 1, 1], seed: 7))
        assertClose(
            conv2d(x, weight: LayerWeight.make(pointwise, precision: .bf16), bias: nil),
            conv2d(roundedToBF16(x), weight: roundedToBF16(pointwise), bias: nil), tolerance: 1e-4, "bf16 1x1 conv")
        ConvolutionPaths.setMode(.winograd)
        let winograd = conv2d(x, weight: LayerWeight.make(kernel, precision: .bf16), bias: bias, padding: .uniform(1))
        assertClose(winograd, conv2d(x, weight: roundedToBF16(kernel), bias: bias, padding: .uniform(1)), tolerance: 1e-5, "bf16 conv on Winograd")
    }

    func testWeightsTakeHalfTheBytes() {
        let weight = random([64, 3, 3, 32], seed: 8)
        let stored = LayerWeight.make(weight, precision: .bf16)
        XCTAssertEqual(stored.byteCount * 2, LayerWeight.make(weight, precision: .fp32).byteCount)
        XCTAssertEqual(stored.shape, [64, 3, 3, 32])
        XCTAssertEqual(stored.precision, .bf16)
    }

    func testPrecisionRequests() throws {
        let with = ProcessorFeatures.Available(hasBF16: true, description: "test processor with bf16")
        let without = ProcessorFeatures.Available(hasBF16: false, description: "test processor without bf16")
        XCTAssertEqual(PrecisionRequest(name: "FP32"), .fp32)
        XCTAssertEqual(PrecisionRequest(name: "bf16"), .bf16)
        XCTAssertEqual(PrecisionRequest(name: "auto"), .auto)
        XCTAssertNil(PrecisionRequest(name: "fp16"))
        XCTAssertEqual(try PrecisionRequest.auto.resolve(features: with), .bf16)
        XCTAssertEqual(try PrecisionRequest.auto.resolve(features: without), .fp32)
        XCTAssertEqual(try PrecisionRequest.bf16.resolve(features: with), .bf16)
        XCTAssertEqual(try PrecisionRequest.fp32.resolve(features: with), .fp32)
        XCTAssertThrowsError(try PrecisionRequest.bf16.resolve(features: without)) { error in
            XCTAssertTrue("\(error)".contains("AVX512-BF16 or AMX"), "\(error)")
        }
    }
}
