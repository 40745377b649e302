import Compute

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A seeded random generator that reproduces PyTorch's CPU `torch.Generator().manual_seed(seed)` followed by
/// `torch.randn(..., generator=g, dtype=torch.float32)` / `torch.rand(...)` bit for bit, so the same seed
/// gives the same latents (and the same image) as diffusers on CPU.
///
/// The state carries on across calls exactly as torch's does: diffusers draws the initial latents, then
/// every ancestral step draws its noise from the same generator. A value type: copy it to fork the stream.
///
/// How torch samples (aten/src/ATen/native/cpu/DistributionTemplates.h, torch 2.x on x86-64):
/// - uniform float: `(random() & 0xFFFFFF) * 2^-24` (one 32-bit draw);
/// - `randn` with 16 or more elements: all uniforms first, then Box-Muller in blocks of 16 (element j and
///   j+8 of a block come from one pair); when the count is not a multiple of 16 the *last* 16 elements are
///   redrawn (16 more uniforms) and transformed again (`normal_fill_AVX2`);
/// - `randn` with fewer than 16 elements: per element, the double-precision Box-Muller of two 53-bit
///   uniforms, whose second value is cached in the generator for the next scalar draw.
public struct TorchGenerator: Sendable {
    /// The seed given to `manual_seed` (torch uses only its low 32 bits).
    public let seed: UInt64
    private var engine: MersenneTwister
    private var cachedNormal: Double?

    /// `torch.Generator().manual_seed(seed)`.
    public init(seed: UInt64) {
        self.seed = seed
        self.engine = MersenneTwister(seed: seed)
    }

    /// `manual_seed` with a signed seed (negative seeds are taken as their 64-bit two's complement, as torch does).
    public init(seed: Int) {
        self.init(seed: UInt64(bitPattern: Int64(seed)))
    }

    // MARK: Tensors

    /// `torch.randn(shape, generator=g, dtype=torch.float32)`: standard normal values in PyTorch's
    /// (row-major) order for `shape`, e.g. NCHW for latents.
    public mutating func randn(_ shape: [Int]) -> Tensor {
        let values = normalValues(count: shape.reduce(1, *))
        return Tensor(shape: shape, values: values)
    }

    /// Latent noise in the engine's NHWC layout, drawn exactly as torch draws the NCHW tensor
    /// `[batch, channels, height, width]` and then permuted (so it matches diffusers' latents element for element).
    public mutating func randnNHWC(batch: Int, channels: Int, height: Int, width: Int) -> Tensor {
        nchwToNHWC(randn([batch, channels, height, width]))
    }

    /// `torch.rand(shape, generator=g, dtype=torch.float32)`: uniform values in [0, 1).
    public mutating func rand(_ shape: [Int]) -> Tensor {
        let count = shape.reduce(1, *)
        var values = [Float](repeating: 0, count: count)
        for i in 0..<count { values[i] = nextUniformFloat() }
        return Tensor(shape: shape, values: values)
    }

    // MARK: Raw values

    /// `count` standard normal floats, drawn as `torch.randn(count)` draws them.
    public mutating func normalValues(count: Int) -> [Float] {
        guard count > 0 else { return [] }
        if count < 16 {
            var values = [Float](repeating: 0, count: count)
            for i in 0..<count { values[i] = Float(nextNormalDouble()) }
            return values
        }
        var data = [Float](repeating: 0, count: count)
        for i in 0..<count { data[i] = nextUniformFloat() }
        data.withUnsafeMutableBufferPointer { buffer in
            var start = 0
            while start < count - 15 {
                Self.boxMuller16(buffer, at: start)
                start += 16
            }
        }
        if count % 16 != 0 {
            // Recompute the last 16 values from fresh uniforms, as torch does.
            let start = count - 16
            for i in 0..<16 { data[start + i] = nextUniformFloat() }
            data.withUnsafeMutableBufferPointer { Self.boxMuller16($0, at: start) }
        }
        return data
    }

    /// One uniform float in [0, 1) (`at::uniform_real_distribution<float>(0, 1)`: 24 random bits).
    public mutating func nextUniformFloat() -> Float {
        Float(engine.nextUInt32() & 0xFF_FFFF) * Float(1.0 / 16_777_216.0)
    }

    /// One uniform double in [0, 1) (`at::uniform_real_distribution<double>(0, 1)`: 53 random bits).
    public mutating func nextUniformDouble() -> Double {
        Double(engine.nextUInt64() & ((1 << 53) - 1)) * (1.0 / 9_007_199_254_740_992.0)
    }

    /// One standard normal double (`at::normal_distribution<double>`), using and refilling the cached second value.
    public mutating func nextNormalDouble() -> Double {
        if let cached = cachedNormal {
            cachedNormal = nil
            return cached
        }
        let u1 = nextUniformDouble()
        let u2 = nextUniformDouble()
        let radius = (-2.0 * log1p(-u2)).squareRoot()
        let theta = 2.0 * Double.pi * u1
        cachedNormal = radius * sin(theta)
        return radius * cos(theta)
    }

    /// `normal_fill_16_AVX2`: turns 16 uniforms into 16 normals in place (pairs j and j+8).
    private static func boxMuller16(_ data: UnsafeMutableBufferPointer<Float>, at start: Int) {
        let twoPi = Float(2.0 * Double.pi)
        for j in start..<(start + 8) {
            let u1 = 1 - data[j]  // [0, 1) -> (0, 1] for the log
            let u2 = data[j + 8]
            let radius = (-2 * BoxMullerMath.log(u1)).squareRoot()
            let (s, c) = BoxMullerMath.sinCos(twoPi * u2)
            data[j] = radius * c
            data[j + 8] = radius * s
        }
    }
}
