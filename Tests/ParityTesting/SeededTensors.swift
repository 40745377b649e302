import Compute

/// A tensor of `shape` with values in [-1, 1) from a 64-bit LCG seeded with `seed`: the same values on every machine.
public func seededTensor(_ shape: [Int], seed: UInt64) -> Tensor {
    var state = seed
    return Tensor(shape: shape) { buffer in
        for i in buffer.indices {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            buffer[i] = Float(state >> 40) / Float(1 << 24) * 2 - 1
        }
    }
}
