import Compute
import ParityTesting
import XCTest

/// `channelsLastKernel` (PyTorch `[out, in, kh, kw]` to the engine's `[out, kh, kw, in]`, what every conv weight goes
/// through) and `channelsLastKernelInPlace` (every LoRA conv factor, as it loads) against the general `permute`, and
/// `pytorchKernel` undoing it.
final class KernelLayoutTests: XCTestCase {
    func testChannelsLastKernelIsThePermutationOnAnyPool() {
        let shapes = [[4, 3, 3, 3], [64, 40, 3, 3], [5, 7, 1, 1], [2, 9, 1, 3], [1, 1, 1, 1], [3, 0, 3, 3], [300, 11, 2, 2]]
        for pool in [ComputePool(threadCount: 1), ComputePool(threadCount: 3)] {
            defer { pool.shutDown() }
            for shape in shapes {
                let kernel = seededTensor(shape, seed: UInt64(shape.reduce(0, +)))
                let result = ComputePool.run(on: pool) { channelsLastKernel(kernel) }
                XCTAssertEqual(result.shape, [shape[0], shape[2], shape[3], shape[1]])
                XCTAssertTrue(result.isBitwiseEqual(to: permute(kernel, [0, 2, 3, 1])), "\(shape), \(pool.threadCount) threads")
                XCTAssertFalse(result.storage === kernel.storage, "a copy, never the kernel's own storage")
                XCTAssertTrue(pytorchKernel(result).isBitwiseEqual(to: kernel), "\(shape)")
            }
        }
    }

    func testTheInPlaceReorderIsThePermutationInTheKernelsOwnStorage() {
        for shape in [[4, 3, 3, 3], [64, 40, 3, 3], [5, 7, 1, 1], [2, 9, 1, 3], [2, 1, 3, 3], [3, 0, 3, 3], [0, 4, 3, 3], [300, 11, 2, 2]] {
            let kernel = seededTensor(shape, seed: UInt64(shape.reduce(7, +)))
            let expected = permute(kernel, [0, 2, 3, 1])
            let result = channelsLastKernelInPlace(kernel)
            XCTAssertEqual(result.shape, [shape[0], shape[2], shape[3], shape[1]])
            XCTAssertTrue(result.isBitwiseEqual(to: expected), "\(shape)")
            XCTAssertTrue(result.storage === kernel.storage, "\(shape): the kernel's own storage, reordered")
        }
    }
}
