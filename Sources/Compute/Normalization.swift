/// Group normalisation (channels-last, optionally fused with SiLU) and layer normalisation; the per-row loops are the
/// dispatched SIMD kernels of `Kernels`.

/// GroupNorm over a channels-last tensor `[N, ..., C]`: statistics per (sample, group of C/groups
/// channels) over all positions, then the per-channel affine transform, then SiLU when `fusedSiLU`.
///
/// `output` (the same shape as `x`, and it may be `x` itself) receives the result instead of a new tensor: a block that
/// owns its input normalises it in place (`ResnetBlock2D`). The result is bitwise the same either way.
public func groupNorm(
    _ x: Tensor, groups: Int, weight: Tensor?, bias: Tensor?, epsilon: Float, fusedSiLU: Bool = false, into output: Tensor? = nil
) -> Tensor {
    precondition(x.rank >= 2, "groupNorm needs [N, ..., C], got \(x.shape)")
    let batch = x.shape[0]
    let channels = x.shape[x.rank - 1]
    precondition(groups > 0 && channels % groups == 0, "\(channels) channels do not split into \(groups) groups")
    let positions = x.count / max(batch * channels, 1)
    let groupSize = channels / groups
    if let output { precondition(output.shape == x.shape, "groupNorm output \(output.shape) does not match input \(x.shape)") }
    let out = output ?? Tensor(uninitializedShape: x.shape)
    let pool = ComputePool.current
    let chunkPositions = max(64, positions / max(1, pool.threadCount * 2))
    let chunks = (positions + chunkPositions - 1) / chunkPositions
    let src = x.storage.base, dst = out.storage.base
    let kernels = Kernels.current

    // Pass 1: per-channel sums per (sample, chunk); pass 2: squared deviations from the group means.
    var sums = [Double](repeating: 0, count: batch * chunks * channels)
    sums.withUnsafeMutableBufferPointer { partial in
        let partialBase = partial.baseAddress!
        pool.parallelFor(batch * chunks) { item in
            let (n, chunk) = item.quotientAndRemainder(dividingBy: chunks)
            let start = chunk * chunkPositions, end = min(positions, start + chunkPositions)
            kernels.channelSums!(src + (n * positions + start) * channels, end - start, channels, partialBase + item * channels)
        }
    }
    var means = [Float](repeating: 0, count: batch * groups)
    for n in 0..<batch {
        for g in 0..<groups {
            var total = 0.0
            for chunk in 0..<chunks {
                for c in (g * groupSize)..<((g + 1) * groupSize) { total += sums[(n * chunks + chunk) * channels + c] }
            }
            means[n * groups + g] = Float(total / Double(positions * groupSize))
        }
    }
    // Per-channel mean (its group's mean) for the deviation pass.
    var channelMeans = [Float](repeating: 0, count: batch * channels)
    for n in 0..<batch {
        for c in 0..<channels { channelMeans[n * channels + c] = means[n * groups + c / groupSize] }
    }
    var deviations = [Double](repeating: 0, count: batch * chunks * channels)
    channelMeans.withUnsafeBufferPointer { meanBuffer in
        deviations.withUnsafeMutableBufferPointer { partial in
            let partialBase = partial.baseAddress!, meanBase = meanBuffer.baseAddress!
            pool.parallelFor(batch * chunks) { item in
                let (n, chunk) = item.quotientAndRemainder(dividingBy: chunks)
                let start = chunk * chunkPositions, end = min(positions, start + chunkPositions)
                kernels.channelSquaredDeviations!(
                    src + (n * positions + start) * channels, end - start, channels, meanBase + n * channels,
                    partialBase + item * channels)
            }
        }
    }
    // Fold mean, inverse standard deviation and the affine parameters into one scale and shift per channel.
    var scales = [Float](repeating: 0, count: batch * channels)
    var shifts = [Float](repeating: 0, count: batch * channels)
    let gamma = weight?.scalars, beta = bias?.scalars
    for n in 0..<batch {
        for g in 0..<groups {
            var total = 0.0
            for chunk in 0..<chunks {
                for c in (g * groupSize)..<((g + 1) * groupSize) { total += deviations[(n * chunks + chunk) * channels + c] }
            }
            let variance = total / Double(positions * groupSize)
            let inverseStd = Float(1 / (variance + Double(epsilon)).squareRoot())
            let mean = means[n * groups + g]
            for c in (g * groupSize)..<((g + 1) * groupSize) {
                let scale = inverseStd * (gamma?[c] ?? 1)
                scales[n * channels + c] = scale
                shifts[n * channels + c] = (beta?[c] ?? 0) - mean * scale
            }
        }
    }
    scales.withUnsafeBufferPointer { scaleBuffer in
        shifts.withUnsafeBufferPointer { shiftBuffer in
            let scaleBase = scaleBuffer.baseAddress!, shiftBase = shiftBuffer.baseAddress!
            pool.parallelFor(batch * chunks) { item in
                let (n, chunk) = item.quotientAndRemainder(dividingBy: chunks)
                let start = chunk * chunkPositions, end = min(positions, start + chunkPositions)
                let offset = (n * positions + start) * channels
                kernels.scaleShiftRows!(
                    src + offset, dst + offset, end - start, channels, scaleBase + n * channels, shiftBase + n * channels,
                    fusedSiLU ? 1 : 0)
            }
        }
    }
    return out
}

/// LayerNorm over the last axis, with optional elementwise affine parameters.
public func layerNorm(_ x: Tensor, weight: Tensor?, bias: Tensor?, epsilon: Float) -> Tensor {
    let width = x.shape.last ?? 1
    let rows = x.count / max(width, 1)
    if let weight { precondition(weight.count == width, "layerNorm weight has \(weight.count) elements, expected \(width)") }
    if let bias { precondition(bias.count == width, "layerNorm bias has \(bias.count) elements, expected \(width)") }
    let out = Tensor(uninitializedShape: x.shape)
    let src = x.storage.base, dst = out.storage.base
    let gamma: UnsafePointer<Float>? = weight.map { UnsafePointer($0.storage.base) }
    let beta: UnsafePointer<Float>? = bias.map { UnsafePointer($0.storage.base) }
    let kernel = Kernels.current.layerNormRows!
    ComputePool.current.parallelRanges(rows, minimumChunk: max(1, 8192 / max(width, 1))) { range in
        kernel(src + range.lowerBound * width, dst + range.lowerBound * width, range.count, width, gamma, beta, epsilon)
    }
    withExtendedLifetime((weight, bias)) {}
    return out
}
