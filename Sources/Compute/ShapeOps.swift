#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Data movement: permute, concatenate, slice, upsample, embedding lookup.

/// Reorders axes: output axis i is input axis `axes[i]`.
public func permute(_ x: Tensor, _ axes: [Int]) -> Tensor {
    precondition(axes.count == x.rank && Set(axes) == Set(0..<x.rank), "invalid permutation \(axes) for rank \(x.rank)")
    let outShape = axes.map { x.shape[$0] }
    let out = Tensor(uninitializedShape: outShape)
    if x.count == 0 { return out }
    var inStrides = [Int](repeating: 1, count: x.rank)
    for i in stride(from: x.rank - 2, through: 0, by: -1) { inStrides[i] = inStrides[i + 1] * x.shape[i + 1] }
    let strides = axes.map { inStrides[$0] }
    // Walk the output in order; the innermost output axis reads with stride `strides.last`.
    let inner = outShape.last ?? 1
    let innerStride = strides.last ?? 1
    let outer = x.count / max(inner, 1)
    let src = x.storage.base, dst = out.storage.base
    ComputePool.current.parallelRanges(outer, minimumChunk: max(1, 16384 / max(inner, 1))) { range in
        var index = [Int](repeating: 0, count: outShape.count)
        for row in range {
            var rest = row
            var offset = 0
            for axis in stride(from: outShape.count - 2, through: 0, by: -1) {
                index[axis] = rest % outShape[axis]
                rest /= outShape[axis]
                offset += index[axis] * strides[axis]
            }
            let target = dst + row * inner
            if innerStride == 1 {
                target.update(from: src + offset, count: inner)
            } else {
                for i in 0..<inner { target[i] = src[offset + i * innerStride] }
            }
        }
    }
    return out
}

/// `[N, C, H, W]` -> `[N, H, W, C]`
public func nchwToNHWC(_ x: Tensor) -> Tensor { permute(x, [0, 2, 3, 1]) }
/// `[N, H, W, C]` -> `[N, C, H, W]`
public func nhwcToNCHW(_ x: Tensor) -> Tensor { permute(x, [0, 3, 1, 2]) }

/// Joins tensors along `axis`; all other dimensions must agree.
public func concat(_ tensors: [Tensor], axis: Int) -> Tensor {
    precondition(!tensors.isEmpty, "concat of nothing")
    let rank = tensors[0].rank
    let axis = axis < 0 ? axis + rank : axis
    for t in tensors {
        precondition(t.rank == rank, "concat rank mismatch")
        for d in 0..<rank where d != axis {
            precondition(t.shape[d] == tensors[0].shape[d], "concat shapes differ off axis \(axis): \(tensors.map(\.shape))")
        }
    }
    var shape = tensors[0].shape
    shape[axis] = tensors.reduce(0) { $0 + $1.shape[axis] }
    let out = Tensor(uninitializedShape: shape)
    let outer = shape[..<axis].reduce(1, *)
    let innerOf = { (t: Tensor) in t.shape[axis...].reduce(1, *) }
    let outRow = innerOf(out)
    let pieces = tensors.map { ($0.storage.base, innerOf($0)) }
    let dst = out.storage.base
    ComputePool.current.parallelRanges(outer, minimumChunk: max(1, 16384 / max(outRow, 1))) { range in
        for o in range {
            var target = dst + o * outRow
            for (base, width) in pieces {
                target.update(from: base + o * width, count: width)
                target += width
            }
        }
    }
    withExtendedLifetime(tensors) {}
    return out
}

/// Elements `range` along `axis`.
public func slice(_ x: Tensor, axis: Int, _ range: Range<Int>) -> Tensor {
    let axis = axis < 0 ? axis + x.rank : axis
    precondition(range.lowerBound >= 0 && range.upperBound <= x.shape[axis], "slice \(range) out of bounds for axis \(axis) of \(x.shape)")
    var shape = x.shape
    shape[axis] = range.count
    let out = Tensor(uninitializedShape: shape)
    let outer = x.shape[..<axis].reduce(1, *)
    let innerSize = x.shape[(axis + 1)...].reduce(1, *)
    let src = x.storage.base, dst = out.storage.base
    let rowIn = x.shape[axis] * innerSize, rowOut = range.count * innerSize
    for o in 0..<outer {
        (dst + o * rowOut).update(from: src + o * rowIn + range.lowerBound * innerSize, count: rowOut)
    }
    return out
}

/// Splits `x` into `parts` equal chunks along `axis` (PyTorch `chunk`).
public func chunk(_ x: Tensor, _ parts: Int, axis: Int) -> [Tensor] {
    let axis = axis < 0 ? axis + x.rank : axis
    precondition(x.shape[axis] % parts == 0, "cannot split axis \(axis) of \(x.shape) into \(parts)")
    let size = x.shape[axis] / parts
    return (0..<parts).map { slice(x, axis: axis, ($0 * size)..<(($0 + 1) * size)) }
}

/// Nearest-neighbour upsampling of `[N, H, W, C]` by an integer factor.
public func upsampleNearest(_ x: Tensor, factor: Int = 2) -> Tensor {
    precondition(x.rank == 4, "upsampleNearest needs NHWC, got \(x.shape)")
    let (batch, height, width, channels) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
    let out = Tensor(uninitializedShape: [batch, height * factor, width * factor, channels])
    let src = x.storage.base, dst = out.storage.base
    let outWidth = width * factor
    ComputePool.current.parallelRanges(batch * height, minimumChunk: 4) { range in
        for row in range {
            let (n, y) = row.quotientAndRemainder(dividingBy: height)
            let firstOut = dst + ((n * height * factor + y * factor) * outWidth) * channels
            var target = firstOut
            for xIndex in 0..<width {
                let pixel = src + ((n * height + y) * width + xIndex) * channels
                for _ in 0..<factor {
                    target.update(from: pixel, count: channels)
                    target += channels
                }
            }
            for r in 1..<factor {
                (firstOut + r * outWidth * channels).update(from: firstOut, count: outWidth * channels)
            }
        }
    }
    return out
}

/// Rows of `table` `[vocabulary, dim]` picked by `ids`; returns `[ids.count, dim]`.
public func embedding(_ ids: [Int], table: Tensor) -> Tensor {
    precondition(table.rank == 2, "embedding table must be 2-D")
    let dim = table.shape[1]
    let out = Tensor(uninitializedShape: [ids.count, dim])
    for (row, id) in ids.enumerated() {
        precondition(id >= 0 && id < table.shape[0], "token id \(id) outside the vocabulary of \(table.shape[0])")
        (out.storage.base + row * dim).update(from: table.storage.base + id * dim, count: dim)
    }
    return out
}

/// diffusers' `get_timestep_embedding`: sinusoidal features of (possibly fractional) timesteps.
/// Returns `[timesteps.count, dim]`; `flipSinToCos` puts cosines first.
public func timestepEmbedding(
    _ timesteps: [Float], dim: Int, flipSinToCos: Bool, downscaleFreqShift: Float, scale: Float = 1,
    maxPeriod: Float = 10000
) -> Tensor {
    let half = dim / 2
    let exponentDenominator = Float(half) - downscaleFreqShift
    // Frequencies computed in Float32 like PyTorch: exp(-log(max_period) * arange(half) / (half - shift)).
    let frequencies: [Float] = (0..<half).map { i in
        expf(-logf(maxPeriod) * Float(i) / exponentDenominator)
    }
    return Tensor(shape: [timesteps.count, dim]) { buffer in
        for (row, t) in timesteps.enumerated() {
            let base = row * dim
            for i in 0..<half {
                let angle = scale * (t * frequencies[i])
                let (sinValue, cosValue) = (sinf(angle), cosf(angle))
                buffer[base + i] = flipSinToCos ? cosValue : sinValue
                buffer[base + half + i] = flipSinToCos ? sinValue : cosValue
            }
            if dim % 2 == 1 { buffer[base + dim - 1] = 0 }
        }
    }
}

/// Nearest-neighbour resize of `[N, H, W, C]` to any size, with PyTorch's `mode="nearest"` index rule
/// `source = floor(destination * in / out)`.
public func resizeNearest(_ x: Tensor, height outHeight: Int, width outWidth: Int) -> Tensor {
    precondition(x.rank == 4, "resizeNearest needs NHWC, got \(x.shape)")
    let (batch, height, width, channels) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
    let out = Tensor(uninitializedShape: [batch, outHeight, outWidth, channels])
    let src = x.storage.base, dst = out.storage.base
    let scaleY = Float(height) / Float(outHeight), scaleX = Float(width) / Float(outWidth)
    ComputePool.current.parallelRanges(batch * outHeight, minimumChunk: 4) { range in
        for row in range {
            let (n, y) = row.quotientAndRemainder(dividingBy: outHeight)
            let sy = min(height - 1, Int((Float(y) * scaleY).rounded(.down)))
            for xIndex in 0..<outWidth {
                let sx = min(width - 1, Int((Float(xIndex) * scaleX).rounded(.down)))
                (dst + ((n * outHeight + y) * outWidth + xIndex) * channels)
                    .update(from: src + ((n * height + sy) * width + sx) * channels, count: channels)
            }
        }
    }
    return out
}
