/// The MT19937 engine exactly as PyTorch's CPU generator runs it (`at::mt19937`, ATen/core/MT19937RNGEngine.h).
///
/// torch seeds it with the low 32 bits of the 64-bit seed (so `manual_seed(2**32 + 5)` draws what
/// `manual_seed(5)` draws) and regenerates the whole 624-word state when it runs out.
struct MersenneTwister: Sendable {
    private static let stateSize = 624
    private static let shift = 397

    private var state: [UInt32]
    private var next = 0
    private var left = 1

    init(seed: UInt64) {
        var state = [UInt32](repeating: 0, count: Self.stateSize)
        state[0] = UInt32(truncatingIfNeeded: seed)
        for j in 1..<Self.stateSize {
            state[j] = 1_812_433_253 &* (state[j - 1] ^ (state[j - 1] >> 30)) &+ UInt32(j)
        }
        self.state = state
    }

    /// The next 32 random bits (torch's `CPUGeneratorImpl::random()`).
    mutating func nextUInt32() -> UInt32 {
        left -= 1
        if left == 0 { regenerate() }
        var y = state[next]
        next += 1
        y ^= y >> 11
        y ^= (y << 7) & 0x9d2c_5680
        y ^= (y << 15) & 0xefc6_0000
        y ^= y >> 18
        return y
    }

    /// The next 64 random bits (torch's `random64()`: the first draw is the high word).
    mutating func nextUInt64() -> UInt64 {
        let high = UInt64(nextUInt32())
        let low = UInt64(nextUInt32())
        return (high << 32) | low
    }

    private mutating func regenerate() {
        let n = Self.stateSize
        left = n
        next = 0
        state.withUnsafeMutableBufferPointer { s in
            for i in 0..<n {
                let u = s[i], v = s[(i + 1) % n]
                let mixed = (u & 0x8000_0000) | (v & 0x7fff_ffff)
                s[i] = s[(i + Self.shift) % n] ^ (mixed >> 1) ^ ((v & 1) != 0 ? 0x9908_b0df : 0)
            }
        }
    }
}
