import Compute
import Foundation
import XCTest

/// The dispatched SIMD kernels' instruction-set variants (AVX-512, AVX2 + FMA, baseline) agree with each other within a
/// few float ulps on the same inputs (odd lengths, so every vector tail runs), the conversions bit for bit, and fused
/// attention matches a double-precision reference on shapes with ragged blocks and causal masks.
final class SIMDKernelVariantTests: XCTestCase {
    private var variants: [Kernels.Variant] {
        [ProcessorFeatures.InstructionSet.baseline, .avx2, .avx512].compactMap { Kernels.variant($0) }
    }

    private func random(_ count: Int, scale: Float = 4, seed: UInt64) -> [Float] {
        var state = seed
        return (0..<count).map { _ in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return scale * (Float(Int64(bitPattern: state) >> 40) / Float(1 << 23))
        }
    }

    /// |a - b| <= relative * max(|a|, |b|) + absolute, elementwise.
    private func assertAgree(
        _ a: [Float], _ b: [Float], relative: Float = 4e-6, absolute: Float = 1e-7, _ label: String,
        file: StaticString = #filePath, line: UInt = #line
    ) {
        XCTAssertEqual(a.count, b.count, label, file: file, line: line)
        var worst: (Int, Float) = (0, 0)
        for i in 0..<min(a.count, b.count) {
            let excess = abs(a[i] - b[i]) - (relative * max(abs(a[i]), abs(b[i])) + absolute)
            if !(excess <= 0) && (worst.1 <= 0 || !(excess <= worst.1)) { worst = (i, excess.isNaN ? .infinity : excess) }
        }
        if worst.1 > 0 {
            XCTFail("\(label): element \(worst.0): \(a[worst.0]) vs \(b[worst.0])", file: file, line: line)
        }
    }

    func testTheProcessorsWidestVariantsExist() {
        let names = variants.map(\.name)
        XCTAssertEqual(names.first, "baseline")
        #if arch(x86_64)
        let best = ProcessorFeatures.current.instructionSet
        XCTAssertEqual(names.contains("avx2"), best >= .avx2)
        XCTAssertEqual(names.contains("avx512"), best >= .avx512)
        #endif
        print("SIMD kernel variants on this processor: \(names)")
    }

    func testElementwiseVariantsAgree() {
        let x = random(1000 + 13, scale: 12, seed: 1) + [0, -0.0, 1e-30, -1e-30, 80, -80, 100, -100]
        let reference = variants[0]
        for variant in variants.dropFirst() {
            for function in Kernels.Variant.Unary.allCases {
                assertAgree(
                    variant.unary(function, x, alpha: 1.702), reference.unary(function, x, alpha: 1.702),
                    "\(function) \(variant.name) vs baseline")
            }
        }
        // And against libm, so the shared numerics are right too.
        for variant in variants {
            let e = variant.unary(.exp, x)
            for (i, v) in x.enumerated() where abs(v) < 80 {
                XCTAssertEqual(e[i], Foundation.exp(v), accuracy: 3e-7 * Foundation.exp(v), "exp(\(v)) \(variant.name)")
            }
            let t = variant.unary(.tanh, x)
            for (i, v) in x.enumerated() { XCTAssertEqual(t[i], Foundation.tanh(v), accuracy: 3e-7, "tanh(\(v)) \(variant.name)") }
        }
    }

    func testRowKernelVariantsAgree() {
        let (rows, width) = (7, 37)
        var x = random(rows * width, scale: 6, seed: 2)
        for c in 0..<width { x[3 * width + c] = -.infinity }  // a fully masked row gives zeros
        x[5 * width + 4] = -.infinity
        let reference = variants[0]
        let expectedSoftmax = reference.softmax(x, rows: rows, width: width)
        XCTAssertEqual(Array(expectedSoftmax[(3 * width)..<(4 * width)]), [Float](repeating: 0, count: width))
        for r in [0, 5] {
            XCTAssertEqual(expectedSoftmax[(r * width)..<((r + 1) * width)].reduce(0, +), 1, accuracy: 1e-6)
        }
        let finite = random(rows * 2 * width, scale: 4, seed: 3)
        let scale = random(width, scale: 2, seed: 4), shift = random(width, scale: 1, seed: 5)
        let mean = random(width, scale: 1, seed: 6)
        for variant in variants.dropFirst() {
            let label = "\(variant.name) vs baseline"
            assertAgree(variant.softmax(x, rows: rows, width: width), expectedSoftmax, "softmax \(label)")
            assertAgree(variant.geglu(finite, rows: rows, half: width), reference.geglu(finite, rows: rows, half: width), "geglu \(label)")
            for silu in [false, true] {
                assertAgree(
                    variant.scaleShift(finite, rows: 2 * rows, width: width, scale: scale, shift: shift, silu: silu),
                    reference.scaleShift(finite, rows: 2 * rows, width: width, scale: scale, shift: shift, silu: silu),
                    "scale-shift silu \(silu) \(label)")
            }
            assertAgree(
                variant.layerNorm(finite, rows: 2 * rows, width: width, gamma: scale, beta: shift, epsilon: 1e-5),
                reference.layerNorm(finite, rows: 2 * rows, width: width, gamma: scale, beta: shift, epsilon: 1e-5),
                relative: 1e-5, absolute: 1e-6, "layer norm \(label)")
            // Statistics: 80 rows, so the float blocks of 32 rows and their tail both run.
            let many = random(80 * width, scale: 3, seed: 7)
            let sums = variant.channelSums(many, rows: 80, width: width), expectedSums = reference.channelSums(many, rows: 80, width: width)
            let deviations = variant.channelSquaredDeviations(many, rows: 80, width: width, mean: mean)
            let expectedDeviations = reference.channelSquaredDeviations(many, rows: 80, width: width, mean: mean)
            for c in 0..<width {
                XCTAssertEqual(sums[c], expectedSums[c], accuracy: 1e-4, "channel sums \(label)")
                XCTAssertEqual(deviations[c], expectedDeviations[c], accuracy: 1e-4, "squared deviations \(label)")
            }
        }
    }

    func testConversionsAreExactOnEveryVariant() {
        let all = (0...UInt16.max).map { $0 }
        let reference = variants[0].halfToFloat(all)
        XCTAssertEqual(reference[0x3C00], 1)
        XCTAssertEqual(reference[0xC000], -2)
        XCTAssertEqual(reference[0x0001], Float(sign: .plus, exponent: -24, significand: 1), "smallest subnormal")
        XCTAssertEqual(reference[0x7BFF], 65504)
        XCTAssertEqual(reference[0x7C00], .infinity)
        XCTAssertTrue(reference[0x7E00].isNaN)
        XCTAssertEqual(reference[0x8000].bitPattern, (-0.0 as Float).bitPattern)
        let bfloat = variants[0].bfloat16ToFloat(all)
        XCTAssertEqual(bfloat[0x3F80], 1)
        XCTAssertEqual(bfloat[0xFF80], -.infinity)
        for variant in variants.dropFirst() {
            XCTAssertEqual(variant.halfToFloat(all).map(\.bitPattern), reference.map(\.bitPattern), "fp16 \(variant.name)")
            XCTAssertEqual(variant.bfloat16ToFloat(all).map(\.bitPattern), bfloat.map(\.bitPattern), "bf16 \(variant.name)")
            // An odd count at an odd offset: the unaligned vector loads and the tails.
            let odd = Array(all[1001..<1078])
            XCTAssertEqual(variant.halfToFloat(odd).map(\.bitPattern), reference[1001..<1078].map(\.bitPattern))
        }
    }

    /// Attention in double precision, straight from the definition.
    private func referenceAttention(
        _ q: [Float], _ k: [Float], _ v: [Float], queries: Int, keys: Int, heads: Int, dim: Int, causal: Bool
    ) -> [Float] {
        let features = heads * dim
        var out = [Float](repeating: 0, count: queries * features)
        let scale = 1 / Double(dim).squareRoot()
        for h in 0..<heads {
            for i in 0..<queries {
                let visible = causal ? min(keys, i + 1) : keys
                var scores = (0..<visible).map { j in
                    (0..<dim).reduce(0.0) { $0 + Double(q[i * features + h * dim + $1]) * Double(k[j * features + h * dim + $1]) } * scale
                }
                let top = scores.max() ?? 0
                scores = scores.map { Foundation.exp($0 - top) }
                let total = scores.reduce(0, +)
                for d in 0..<dim {
                    let sum = (0..<visible).reduce(0.0) { $0 + scores[$1] * Double(v[$1 * features + h * dim + d]) }
                    out[i * features + h * dim + d] = Float(sum / total)
                }
            }
        }
        return out
    }

    /// `attention` hands the kernel its (batch, head, row block) items in claimed runs of consecutive blocks, on a pool
    /// of two threads: every output is bitwise what the dispatched kernel gives item by item, for cross- and causal
    /// self-attention shapes with several blocks per head and a ragged last block.
    func testPooledAttentionEqualsTheKernelItemByItem() throws {
        let variant = try XCTUnwrap(Kernels.variant(Kernels.selection.instructionSet))
        let pool = ComputePool(threadCount: 2)
        defer { pool.shutDown() }
        for shape in [(queries: 1000, keys: 77, heads: 3, dim: 40, causal: false), (queries: 700, keys: 700, heads: 2, dim: 24, causal: true)] {
            let features = shape.heads * shape.dim
            let q = random(shape.queries * features, scale: 2, seed: 21), k = random(shape.keys * features, scale: 2, seed: 22)
            let v = random(shape.keys * features, scale: 1, seed: 23)
            let expected = variant.attention(
                query: q, key: k, value: v, queries: shape.queries, keys: shape.keys, heads: shape.heads, headDim: shape.dim,
                causal: shape.causal)
            let pooled = ComputePool.run(on: pool) {
                attention(
                    query: Tensor(shape: [1, shape.queries, features], values: q), key: Tensor(shape: [1, shape.keys, features], values: k),
                    value: Tensor(shape: [1, shape.keys, features], values: v), heads: shape.heads, causal: shape.causal)
            }
            XCTAssertEqual(pooled.scalars, expected, "\(shape)")
        }
    }

    func testAttentionVariantsMatchADoublePrecisionReference() {
        // Ragged everything: rows not a multiple of a block, keys past one key block (96) with a partial last tile,
        // head dims that are not multiples of the value tile, causal masks across key blocks.
        let shapes: [(queries: Int, keys: Int, heads: Int, dim: Int, causal: Bool)] = [
            (70, 77, 2, 40, false), (150, 150, 2, 13, true), (33, 200, 1, 64, false), (77, 77, 3, 7, true), (5, 1, 1, 3, false),
        ]
        for shape in shapes {
            let features = shape.heads * shape.dim
            let q = random(shape.queries * features, scale: 2, seed: 11), k = random(shape.keys * features, scale: 2, seed: 12)
            let v = random(shape.keys * features, scale: 1, seed: 13)
            let expected = referenceAttention(
                q, k, v, queries: shape.queries, keys: shape.keys, heads: shape.heads, dim: shape.dim, causal: shape.causal)
            for variant in variants {
                let y = variant.attention(
                    query: q, key: k, value: v, queries: shape.queries, keys: shape.keys, heads: shape.heads, headDim: shape.dim,
                    causal: shape.causal)
                assertAgree(y, expected, relative: 0, absolute: 2e-6, "attention \(shape) \(variant.name)")
            }
        }
    }
}
