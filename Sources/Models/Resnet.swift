import Compute

/// diffusers `ResnetBlock2D` (pre-norm, SiLU, additive time embedding).
public final class ResnetBlock2D: @unchecked Sendable {
    let norm1: GroupNorm
    let conv1: Conv2D
    let timeEmbeddingProjection: Linear?
    let norm2: GroupNorm
    let conv2: Conv2D
    let shortcut: Conv2D?
    let outputScaleFactor: Float

    public init(
        _ loader: ModuleLoader, inChannels: Int, outChannels: Int, timeEmbeddingChannels: Int?, groups: Int,
        epsilon: Float, outputScaleFactor: Float = 1
    ) throws {
        norm1 = try loader.groupNorm("norm1", groups: groups, channels: inChannels, epsilon: epsilon)
        conv1 = try loader.conv2d("conv1", in: inChannels, out: outChannels, kernel: 3)
        timeEmbeddingProjection = try timeEmbeddingChannels.map {
            try loader.linear("time_emb_proj", in: $0, out: outChannels)
        }
        norm2 = try loader.groupNorm("norm2", groups: groups, channels: outChannels, epsilon: epsilon)
        conv2 = try loader.conv2d("conv2", in: outChannels, out: outChannels, kernel: 3)
        shortcut =
            inChannels != outChannels
            ? try loader.conv2d("conv_shortcut", in: inChannels, out: outChannels, kernel: 1) : nil
        self.outputScaleFactor = outputScaleFactor
    }

    /// `x` is `[N, H, W, C]`; `timeEmbedding` is `[N, T]` (already through the UNet's time MLP).
    ///
    /// Memory: a caller that gives its input up (`block(consume h, ...)`, or a temporary such as a concatenation) lets the
    /// block reuse it. With a shortcut convolution the input is normalised in place once the shortcut has read it;
    /// without one the input is the residual, and the second convolution adds itself into it. The block's own
    /// intermediates are normalised in place too, so the block allocates only the first convolution's output (and the
    /// shortcut's). A caller that keeps its input gets the same result, bitwise: the block then copies the residual.
    public func callAsFunction(_ x: consuming Tensor, timeEmbedding: Tensor?) -> Tensor {
        var residual: Tensor
        if let shortcut { residual = shortcut(x) } else { residual = copy x }
        var h = conv1(Self.normalizedSiLU(norm1, consume x))
        if let timeEmbeddingProjection, let timeEmbedding {
            let t = timeEmbeddingProjection(silu(timeEmbedding))
            h = addPerSampleChannels(consume h, t)
        }
        if !residual.isUniquelyOwned() { residual = residual.copy() }
        let sum = conv2(Self.normalizedSiLU(norm2, consume h), accumulatingInto: residual)
        return outputScaleFactor == 1 ? sum : sum * (1 / outputScaleFactor)
    }

    /// GroupNorm + SiLU of `x`, written over `x` when nothing else holds it.
    private static func normalizedSiLU(_ norm: GroupNorm, _ x: consuming Tensor) -> Tensor {
        x.isUniquelyOwned() ? norm(x, fusedSiLU: true, into: x) : norm(x, fusedSiLU: true)
    }
}

/// diffusers `Downsample2D` with a convolution: stride-2 3x3 conv. With `padding: 0` (the VAE encoder) the
/// input is first padded by one pixel on the right and bottom only.
public final class Downsample2D: @unchecked Sendable {
    let conv: Conv2D

    public init(_ loader: ModuleLoader, channels: Int, outChannels: Int? = nil, padding: Int) throws {
        let pad = padding == 0 ? Padding2D(top: 0, bottom: 1, left: 0, right: 1) : .uniform(padding)
        conv = try loader.conv2d("conv", in: channels, out: outChannels ?? channels, kernel: 3, stride: 2, padding: pad)
    }

    public func callAsFunction(_ x: Tensor) -> Tensor { conv(x) }
}

/// diffusers `Upsample2D` with a convolution: nearest-neighbour 2x (or to `size`), then a 3x3 conv.
public final class Upsample2D: @unchecked Sendable {
    let conv: Conv2D

    public init(_ loader: ModuleLoader, channels: Int, outChannels: Int? = nil) throws {
        conv = try loader.conv2d("conv", in: channels, out: outChannels ?? channels, kernel: 3)
    }

    /// `size` forces the output height and width (when the matching skip tensor has an odd size).
    public func callAsFunction(_ x: Tensor, size: (height: Int, width: Int)? = nil) -> Tensor {
        if let size, size.height != x.shape[1] * 2 || size.width != x.shape[2] * 2 {
            return conv(resizeNearest(x, height: size.height, width: size.width))
        }
        return conv(x, upsample: 2)
    }
}
