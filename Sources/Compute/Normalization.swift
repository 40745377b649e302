/// Group normalisation (channels-last, optionally fused with SiLU) and layer normalisation.

/// GroupNorm over a channels-last tensor `[N, ..., C]`: statistics per (sample, group of C/groups
/// channels) over all positions, then the per-channel affine transform, then SiLU when `fusedSiLU`.
public func groupNorm(
    _ x: Tensor, groups: Int, weight: Tensor?, bias: Tensor?, epsilon: Float, fusedSiLU: Bool = false
) -> Tensor {
    precondition(x.rank >= 2, "groupNorm needs [N, ..., C], got \(x.shape)")
    let batch = x.shape[0]
    let channels = x.shape[x.rank - 1]
    precondition(groups > 0 && channels % groups == 0, "\(channels) channels do not split into \(groups) groups")
    let positions = x.count / max(batch * channels, 1)
    let groupSize = channels / groups
    let out = Tensor(uninitializedShape: x.shape)
    let pool = ComputePool.current
    let chunkPositions = max(64, positions / max(1, pool.threadCount * 2))
    let chunks = (positions + chunkPositions - 1) / chunkPositions
    let src = x.storage.base, dst = out.storage.base

    // Pass 1: per-channel sums per (sample, chunk); pass 2: squared deviations from the group means.
    var sums = [Double](repeating: 0, count: batch * chunks * channels)
    sums.withUnsafeMutableBufferPointer { partial in
        let partialBase = partial.baseAddress!
        pool.parallelFor(batch * chunks) { item in
            let (n, chunk) = item.quotientAndRemainder(dividingBy: chunks)
            let start = chunk * chunkPositions, end = min(positions, start + chunkPositions)
            accumulateChannels(src + (n * positions + start) * channels, end - start, channels, into: partialBase + item * channels) { $0 }
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
                accumulateSquaredDeviations(
                    src + (n * positions + start) * channels, end - start, channels,
                    mean: meanBase + n * channels, into: partialBase + item * channels)
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
                scaleShiftRows(
                    src + offset, dst + offset, rows: end - start, width: channels,
                    scale: scaleBase + n * channels, shift: shiftBase + n * channels, fusedSiLU: fusedSiLU)
            }
        }
    }
    return out
}

/// Adds, per channel, `transform(x)` over `rows` rows of `width` channels into `accumulator` (Double),
/// summing blocks of rows in Float first for speed.
@inline(__always)
func accumulateChannels(
    _ source: UnsafePointer<Float>, _ rows: Int, _ width: Int, into accumulator: UnsafeMutablePointer<Double>,
    _ transform: (Float8) -> Float8
) {
    let block = 32
    let blockSums = UnsafeMutablePointer<Float>.allocate(capacity: width)
    defer { blockSums.deallocate() }
    var row = 0
    while row < rows {
        let end = min(rows, row + block)
        blockSums.update(repeating: 0, count: width)
        let vectors = width / 8
        let rawSums = UnsafeMutableRawPointer(blockSums)
        for r in row..<end {
            let line = UnsafeRawPointer(source + r * width)
            for v in 0..<vectors {
                let value = transform(line.loadUnaligned(fromByteOffset: v * 32, as: Float8.self))
                rawSums.storeBytes(
                    of: rawSums.loadUnaligned(fromByteOffset: v * 32, as: Float8.self) + value,
                    toByteOffset: v * 32, as: Float8.self)
            }
            for c in (vectors * 8)..<width { blockSums[c] += scalarApply(source[r * width + c], transform) }
        }
        for c in 0..<width { accumulator[c] += Double(blockSums[c]) }
        row = end
    }
}

@inline(__always)
func accumulateSquaredDeviations(
    _ source: UnsafePointer<Float>, _ rows: Int, _ width: Int, mean: UnsafePointer<Float>,
    into accumulator: UnsafeMutablePointer<Double>
) {
    let block = 32
    let blockSums = UnsafeMutablePointer<Float>.allocate(capacity: width)
    defer { blockSums.deallocate() }
    let vectors = width / 8
    let rawSums = UnsafeMutableRawPointer(blockSums), rawMean = UnsafeRawPointer(mean)
    var row = 0
    while row < rows {
        let end = min(rows, row + block)
        blockSums.update(repeating: 0, count: width)
        for r in row..<end {
            let line = UnsafeRawPointer(source + r * width)
            for v in 0..<vectors {
                let d = line.loadUnaligned(fromByteOffset: v * 32, as: Float8.self)
                    - rawMean.loadUnaligned(fromByteOffset: v * 32, as: Float8.self)
                rawSums.storeBytes(
                    of: rawSums.loadUnaligned(fromByteOffset: v * 32, as: Float8.self) + d * d,
                    toByteOffset: v * 32, as: Float8.self)
            }
            for c in (vectors * 8)..<width {
                let d = source[r * width + c] - mean[c]
                blockSums[c] += d * d
            }
        }
        for c in 0..<width { accumulator[c] += Double(blockSums[c]) }
        row = end
    }
}

/// `out[r, c] = x[r, c] * scale[c] + shift[c]` (then SiLU when fused).
@inline(__always)
func scaleShiftRows(
    _ source: UnsafePointer<Float>, _ destination: UnsafeMutablePointer<Float>, rows: Int, width: Int,
    scale: UnsafePointer<Float>, shift: UnsafePointer<Float>, fusedSiLU: Bool
) {
    let vectors = width / 8
    let rawScale = UnsafeRawPointer(scale), rawShift = UnsafeRawPointer(shift)
    for r in 0..<rows {
        let line = UnsafeRawPointer(source + r * width)
        let target = UnsafeMutableRawPointer(destination + r * width)
        for v in 0..<vectors {
            var y = line.loadUnaligned(fromByteOffset: v * 32, as: Float8.self)
                * rawScale.loadUnaligned(fromByteOffset: v * 32, as: Float8.self)
                + rawShift.loadUnaligned(fromByteOffset: v * 32, as: Float8.self)
            if fusedSiLU { y = y * vsigmoid(y) }
            target.storeBytes(of: y, toByteOffset: v * 32, as: Float8.self)
        }
        for c in (vectors * 8)..<width {
            var y = source[r * width + c] * scale[c] + shift[c]
            if fusedSiLU { y = scalarApply(y) { $0 * vsigmoid($0) } }
            destination[r * width + c] = y
        }
    }
}

/// LayerNorm over the last axis, with optional elementwise affine parameters.
public func layerNorm(_ x: Tensor, weight: Tensor?, bias: Tensor?, epsilon: Float) -> Tensor {
    let width = x.shape.last ?? 1
    let rows = x.count / max(width, 1)
    let out = Tensor(uninitializedShape: x.shape)
    let src = x.storage.base, dst = out.storage.base
    let ones = Tensor(shape: [width], repeating: 1), zeros = Tensor(shape: [width], repeating: 0)
    let gamma = (weight ?? ones).storage.base, beta = (bias ?? zeros).storage.base
    ComputePool.current.parallelRanges(rows, minimumChunk: max(1, 8192 / max(width, 1))) { range in
        for row in range {
            let line = src + row * width
            var sum: Double = 0
            for i in 0..<width { sum += Double(line[i]) }
            let mean = Float(sum / Double(width))
            var squares: Double = 0
            for i in 0..<width {
                let d = line[i] - mean
                squares += Double(d * d)
            }
            let inverseStd = Float(1 / (squares / Double(width) + Double(epsilon)).squareRoot())
            let target = dst + row * width
            for i in 0..<width { target[i] = (line[i] - mean) * inverseStd * gamma[i] + beta[i] }
        }
    }
    withExtendedLifetime((ones, zeros, weight, bias)) {}
    return out
}
