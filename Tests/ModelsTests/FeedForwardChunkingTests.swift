import Compute
import Models
import Weights
import XCTest

/// `FeedForward` runs long inputs a chunk of rows at a time (diffusers' forward chunking): the result equals the
/// whole-input computation, and a chunk boundary inside the input (rows not a multiple of the chunk) is handled.
final class FeedForwardChunkingTests: XCTestCase {
    private func random(_ shape: [Int], seed: UInt64) -> Tensor {
        var state = seed
        return Tensor(shape: shape) { buffer in
            for i in buffer.indices {
                state = state &* 6364136223846793005 &+ 1442695040888963407
                buffer[i] = (Float(state >> 40) / Float(1 << 24) * 2 - 1) * 0.2
            }
        }
    }

    func testChunkedFeedForwardEqualsTheWholeInput() throws {
        let dim = 16, inner = 64
        let weights = InMemoryWeights([
            "net.0.proj.weight": random([2 * inner, dim], seed: 1), "net.0.proj.bias": random([2 * inner], seed: 2),
            "net.2.weight": random([dim, inner], seed: 3), "net.2.bias": random([dim], seed: 4),
        ])
        let block = try FeedForward(ModuleLoader(weights: weights), dim: dim, innerDim: inner)
        // 8 MiB of inner activation per chunk at 128 floats a row is 16384 rows: 40000 rows make three chunks, the last
        // one short.
        let x = random([2, 20000, dim], seed: 5)
        let y = block(x)
        XCTAssertEqual(y.shape, [2, 20000, dim])
        let projected = linear(x, weight: try weights.tensor("net.0.proj.weight"), bias: try weights.tensor("net.0.proj.bias"))
        let expected = linear(geglu(projected), weight: try weights.tensor("net.2.weight"), bias: try weights.tensor("net.2.bias"))
        XCTAssertLessThan(y.maxAbsDifference(expected), 1e-5)
    }
}
