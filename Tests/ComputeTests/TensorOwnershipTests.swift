import Compute
import ParityTesting
import XCTest

/// `Tensor.isUniquelyOwned` and the in-place forms built on it: a layer may overwrite a tensor only when no other
/// tensor shares its memory and the memory is the tensor's own; given up with `consume`, a tensor arrives unshared.
final class TensorOwnershipTests: XCTestCase {
    private func owned(_ x: consuming Tensor) -> Bool { x.isUniquelyOwned() }

    func testOnlyAnUnsharedAllocatedTensorIsUniquelyOwned() {
        var fresh = seededTensor([2, 3], seed: 1)
        XCTAssertTrue(fresh.isUniquelyOwned())
        let view = fresh.reshaped([6])
        XCTAssertFalse(fresh.isUniquelyOwned(), "a reshaped view shares the memory")
        XCTAssertEqual(view.count, 6)

        let kept = seededTensor([4], seed: 2)
        XCTAssertFalse(owned(kept), "the caller still holds it")
        XCTAssertEqual(kept.count, 4)
        var given = seededTensor([4], seed: 2)
        XCTAssertTrue(given.isUniquelyOwned())
        let givenIsOwned = owned(consume given)  // not inside XCTAssert's autoclosure: a closure must not consume
        XCTAssertTrue(givenIsOwned, "given up with consume")

        let backing = seededTensor([8], seed: 3)
        let pointer = backing.withUnsafeMutableBufferPointer { $0.baseAddress! }
        var borrowed = Tensor(shape: [8], storage: TensorStorage(borrowing: pointer, count: 8, owner: backing.storage))
        XCTAssertFalse(borrowed.isUniquelyOwned(), "memory another object owns (a mapped file) is never overwritten")
    }

    func testGroupNormAndChannelAdditionInPlaceMatchTheirCopies() {
        let x = seededTensor([2, 3, 5, 8], seed: 4)
        let weight = seededTensor([8], seed: 5), bias = seededTensor([8], seed: 6)
        let copied = groupNorm(x, groups: 4, weight: weight, bias: bias, epsilon: 1e-5, fusedSiLU: true)
        let target = x.copy()
        let inPlace = groupNorm(target, groups: 4, weight: weight, bias: bias, epsilon: 1e-5, fusedSiLU: true, into: target)
        XCTAssertTrue(inPlace.isBitwiseEqual(to: copied))
        XCTAssertTrue(target.isBitwiseEqual(to: copied), "written over its input")

        let values = seededTensor([2, 8], seed: 7)
        let expected = x + values.reshaped([2, 1, 1, 8])
        let kept = x.copy()
        XCTAssertTrue(addPerSampleChannels(kept, values).isBitwiseEqual(to: expected))
        XCTAssertTrue(kept.isBitwiseEqual(to: x), "a tensor the caller keeps is not written")
        let given = x.copy()
        let address = given.withUnsafeBufferPointer { $0.baseAddress }
        let sum = addPerSampleChannels(consume given, values)
        XCTAssertTrue(sum.isBitwiseEqual(to: expected))
        XCTAssertEqual(sum.withUnsafeBufferPointer { $0.baseAddress }, address, "a tensor given up is reused")
        let one = seededTensor([1, 8], seed: 12)
        XCTAssertTrue(addPerSampleChannels(x, one).isBitwiseEqual(to: x + one.reshaped([1, 1, 1, 8])), "[1, C] for every sample")
    }

    func testConvolutionAccumulatesIntoATensor() {
        let x = seededTensor([1, 6, 5, 3], seed: 8)
        let kernel = seededTensor([4, 3, 3, 3], seed: 9), bias = seededTensor([4], seed: 10)
        let residual = seededTensor([1, 6, 5, 4], seed: 11)
        let expected = residual + conv2d(x, weight: kernel, bias: bias, padding: .uniform(1))
        let target = residual.copy()
        let y = conv2d(x, weight: .fp32(kernel), bias: bias, padding: .uniform(1), accumulatingInto: target)
        XCTAssertEqual(y.withUnsafeBufferPointer { $0.baseAddress }, target.withUnsafeBufferPointer { $0.baseAddress })
        XCTAssertLessThan(y.maxAbsDifference(expected), 1e-5)
    }
}
