import Compute
import ParityTesting
import XCTest

/// `StoredTensor`, the LoRA factors' storage: fp16 and bf16 kept narrow and widened exactly, the non-finite check in
/// every format, and the in-place channels-last reorder of a narrow kernel.
final class StoredTensorTests: XCTestCase {
    private func narrow(_ bits: [UInt16], _ format: StoredTensor.Format, shape: [Int]? = nil) -> StoredTensor {
        bits.withUnsafeBytes { StoredTensor(copying: $0, format: format, shape: shape ?? [bits.count]) }
    }

    private func wide(_ values: [Float], shape: [Int]? = nil) -> StoredTensor {
        values.withUnsafeBytes { StoredTensor(copying: $0, format: .float32, shape: shape ?? [values.count]) }
    }

    func testNarrowFormatsWidenExactly() {
        // binary16: 1, -2, the smallest subnormal, the largest finite, -0, 1/3 rounded.
        let half = narrow([0x3C00, 0xC000, 0x0001, 0x7BFF, 0x8000, 0x3555], .float16)
        let halfValues: [Float] = [1, -2, 5.9604645e-08, 65504, -0.0, 0.333251953125]
        // bfloat16: the top half of a Float's bits.
        let bfloatBits: [UInt16] = [0x3F80, 0xC000, 0x7F7F, 0x0001, 0x8000, 0x3EAB]
        let bfloat = narrow(bfloatBits, .bfloat16)
        let bfloatValues = bfloatBits.map { Float(bitPattern: UInt32($0) << 16) }
        for (tensor, values) in [(half, halfValues), (bfloat, bfloatValues)] {
            XCTAssertEqual(tensor.byteCount, 2 * values.count)
            XCTAssertEqual(tensor.float32().scalars.map(\.bitPattern), values.map(\.bitPattern), "\(tensor.format)")
            XCTAssertEqual((0..<values.count).map { tensor.element($0).bitPattern }, values.map(\.bitPattern), "\(tensor.format)")
            let widened = [Float](unsafeUninitializedCapacity: values.count) { buffer, count in
                tensor.widen(into: buffer.baseAddress!)
                count = values.count
            }
            XCTAssertEqual(widened.map(\.bitPattern), values.map(\.bitPattern), "\(tensor.format)")
        }
    }

    func testAnFP32TensorIsViewedNotCopied() {
        let tensor = seededTensor([3, 4], seed: 5)
        let stored = StoredTensor(tensor)
        XCTAssertEqual(stored.format, .float32)
        XCTAssertEqual(stored.byteCount, 48)
        XCTAssertEqual(stored.baseAddress, UnsafeRawPointer(tensor.storage.baseAddress))
        XCTAssertTrue(stored.float32().isBitwiseEqual(to: tensor))
        XCTAssertEqual(UnsafeRawPointer(stored.float32().storage.baseAddress), stored.baseAddress, "float32() of fp32 is a view")
        let reshaped = stored.reshaped([2, 6])
        XCTAssertEqual(reshaped.shape, [2, 6])
        XCTAssertEqual(reshaped.baseAddress, stored.baseAddress)
    }

    func testFirstNonFiniteFindsNaNAndInfinityInEveryFormat() {
        let count = 1000
        for index in [0, 17, count - 1] {
            // fp32: +inf, -inf, a NaN; the largest finite value is a number.
            for special: UInt32 in [0x7F80_0000, 0xFF80_0000, 0x7FC0_0001] {
                var values = (0..<count).map { Float($0 % 9) - 4 }
                values[index] = Float(bitPattern: special)
                XCTAssertEqual(wide(values).firstNonFinite(), index, "fp32 \(special) at \(index)")
            }
            for (format, specials, largest) in [
                (StoredTensor.Format.float16, [UInt16(0x7C00), 0xFC00, 0x7E00, 0xFC01], UInt16(0x7BFF)),
                (.bfloat16, [0x7F80, 0xFF80, 0x7FC0, 0xFF81], 0x7F7F),
            ] {
                for special in specials {
                    var bits = (0..<count).map { UInt16(truncatingIfNeeded: $0 * 37) & 0x3FFF }  // finite
                    bits[index] = special
                    XCTAssertEqual(narrow(bits, format).firstNonFinite(), index, "\(format) \(special) at \(index)")
                }
                var bits = [UInt16](repeating: largest, count: count)
                bits[index] = largest | 0x8000
                XCTAssertNil(narrow(bits, format).firstNonFinite(), "\(format): the largest finite values are numbers")
            }
        }
        var values = [Float](repeating: .greatestFiniteMagnitude, count: count)
        values[3] = -.greatestFiniteMagnitude
        XCTAssertNil(wide(values).firstNonFinite())
    }

    func testTheInPlaceReorderOfANarrowKernelIsThePermutation() {
        for shape in [[4, 3, 3, 3], [5, 7, 1, 1], [2, 9, 1, 3], [2, 1, 3, 3], [3, 0, 3, 3], [64, 40, 3, 3]] {
            let source = seededTensor(shape, seed: UInt64(shape.reduce(3, +)))
            // bf16: the top half of each value's bits; the reference is those values widened.
            let bits = source.scalars.map { UInt16($0.bitPattern >> 16) }
            let reference = Tensor(shape: shape, values: bits.map { Float(bitPattern: UInt32($0) << 16) })
            let kernel = narrow(bits, .bfloat16, shape: shape)
            let result = kernel.channelsLastKernelInPlace()
            XCTAssertEqual(result.shape, [shape[0], shape[2], shape[3], shape[1]])
            XCTAssertEqual(result.baseAddress, kernel.baseAddress, "\(shape): its own memory, reordered")
            XCTAssertTrue(result.float32().isBitwiseEqual(to: permute(reference, [0, 2, 3, 1])), "\(shape)")
            // fp32 the same way.
            let wideKernel = wide(source.scalars, shape: shape).channelsLastKernelInPlace()
            XCTAssertTrue(wideKernel.float32().isBitwiseEqual(to: permute(source, [0, 2, 3, 1])), "\(shape) fp32")
        }
    }
}
