/// Elementwise arithmetic with NumPy-style broadcasting.

/// The shape two operands broadcast to, or nil when they are incompatible.
public func broadcastShape(_ a: [Int], _ b: [Int]) -> [Int]? {
    let rank = max(a.count, b.count)
    var result = [Int](repeating: 1, count: rank)
    for i in 0..<rank {
        let da = i < rank - a.count ? 1 : a[i - (rank - a.count)]
        let db = i < rank - b.count ? 1 : b[i - (rank - b.count)]
        if da == db || db == 1 {
            result[i] = da
        } else if da == 1 {
            result[i] = db
        } else {
            return nil
        }
    }
    return result
}

public enum BinaryOperation: Sendable {
    case add, subtract, multiply, divide

    @inline(__always) func apply(_ x: Float8, _ y: Float8) -> Float8 {
        switch self {
        case .add: x + y
        case .subtract: x - y
        case .multiply: x * y
        case .divide: x / y
        }
    }

    @inline(__always) func apply(_ x: Float, _ y: Float) -> Float {
        switch self {
        case .add: x + y
        case .subtract: x - y
        case .multiply: x * y
        case .divide: x / y
        }
    }
}

/// `op(a, b)` broadcasting both operands.
public func elementwise(_ a: Tensor, _ b: Tensor, _ operation: BinaryOperation) -> Tensor {
    guard let shape = broadcastShape(a.shape, b.shape) else {
        preconditionFailure("shapes \(a.shape) and \(b.shape) do not broadcast")
    }
    let out = Tensor(uninitializedShape: shape)
    let pa = a.storage.base, pb = b.storage.base, po = out.storage.base
    if a.shape == b.shape {
        binaryContiguous(pa, pb, po, out.count, operation)
        return out
    }
    // Describe each operand by strides over the output shape (0 along broadcast axes), then walk the
    // output in runs of its innermost axis.
    let stridesA = broadcastStrides(a.shape, to: shape)
    let stridesB = broadcastStrides(b.shape, to: shape)
    let inner = shape.last ?? 1
    let outer = out.count / max(inner, 1)
    let innerStrideA = stridesA.last ?? 0, innerStrideB = stridesB.last ?? 0
    ComputePool.current.parallelRanges(outer, minimumChunk: max(1, 32768 / max(inner, 1))) { rows in
        var index = [Int](repeating: 0, count: shape.count)
        for row in rows {
            // Decompose `row` into the outer multi-index.
            var rest = row
            for axis in stride(from: shape.count - 2, through: 0, by: -1) {
                index[axis] = rest % shape[axis]
                rest /= shape[axis]
            }
            var offsetA = 0, offsetB = 0
            for axis in 0..<(shape.count - 1) {
                offsetA += index[axis] * stridesA[axis]
                offsetB += index[axis] * stridesB[axis]
            }
            let dst = po + row * inner
            if innerStrideA == 1 && innerStrideB == 1 {
                binaryContiguousSerial(pa + offsetA, pb + offsetB, dst, inner, operation)
            } else if innerStrideA == 1 {
                let scalar = pb[offsetB]
                for i in 0..<inner { dst[i] = operation.apply(pa[offsetA + i], scalar) }
            } else if innerStrideB == 1 {
                let scalar = pa[offsetA]
                for i in 0..<inner { dst[i] = operation.apply(scalar, pb[offsetB + i]) }
            } else {
                let result = operation.apply(pa[offsetA], pb[offsetB])
                for i in 0..<inner { dst[i] = result }
            }
        }
    }
    return out
}

/// Strides of `shape` viewed inside the larger `target` shape (right-aligned), 0 on broadcast axes.
func broadcastStrides(_ shape: [Int], to target: [Int]) -> [Int] {
    var strides = [Int](repeating: 0, count: target.count)
    var running = 1
    for i in stride(from: shape.count - 1, through: 0, by: -1) {
        let axis = i + target.count - shape.count
        strides[axis] = shape[i] == 1 ? 0 : running
        running *= shape[i]
    }
    return strides
}

@inline(__always)
func binaryContiguousSerial(
    _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, _ count: Int,
    _ operation: BinaryOperation
) {
    let vectors = count / 8
    let ra = UnsafeRawPointer(a), rb = UnsafeRawPointer(b), ro = UnsafeMutableRawPointer(out)
    switch operation {
    case .add:
        for i in 0..<vectors {
            ro.storeBytes(
                of: ra.loadUnaligned(fromByteOffset: i * 32, as: Float8.self) + rb.loadUnaligned(fromByteOffset: i * 32, as: Float8.self),
                toByteOffset: i * 32, as: Float8.self)
        }
    case .subtract:
        for i in 0..<vectors {
            ro.storeBytes(
                of: ra.loadUnaligned(fromByteOffset: i * 32, as: Float8.self) - rb.loadUnaligned(fromByteOffset: i * 32, as: Float8.self),
                toByteOffset: i * 32, as: Float8.self)
        }
    case .multiply:
        for i in 0..<vectors {
            ro.storeBytes(
                of: ra.loadUnaligned(fromByteOffset: i * 32, as: Float8.self) * rb.loadUnaligned(fromByteOffset: i * 32, as: Float8.self),
                toByteOffset: i * 32, as: Float8.self)
        }
    case .divide:
        for i in 0..<vectors {
            ro.storeBytes(
                of: ra.loadUnaligned(fromByteOffset: i * 32, as: Float8.self) / rb.loadUnaligned(fromByteOffset: i * 32, as: Float8.self),
                toByteOffset: i * 32, as: Float8.self)
        }
    }
    for i in (vectors * 8)..<count { out[i] = operation.apply(a[i], b[i]) }
}

func binaryContiguous(
    _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, _ count: Int,
    _ operation: BinaryOperation
) {
    ComputePool.current.parallelRanges(count, minimumChunk: 1 << 16) { range in
        binaryContiguousSerial(a + range.lowerBound, b + range.lowerBound, out + range.lowerBound, range.count, operation)
    }
}

/// Applies a vectorised function to every element.
@inlinable
public func map(_ x: Tensor, _ f: (Float8) -> Float8) -> Tensor {
    let out = Tensor(uninitializedShape: x.shape)
    let src = x.storage.base, dst = out.storage.base
    ComputePool.current.parallelRanges(x.count, minimumChunk: 1 << 15) { range in
        mapVectorized(src + range.lowerBound, dst + range.lowerBound, range.count, f)
    }
    return out
}

public func + (a: Tensor, b: Tensor) -> Tensor { elementwise(a, b, .add) }
public func - (a: Tensor, b: Tensor) -> Tensor { elementwise(a, b, .subtract) }
public func * (a: Tensor, b: Tensor) -> Tensor { elementwise(a, b, .multiply) }
public func / (a: Tensor, b: Tensor) -> Tensor { elementwise(a, b, .divide) }
public func * (a: Tensor, s: Float) -> Tensor { map(a) { $0 * s } }
public func * (s: Float, a: Tensor) -> Tensor { map(a) { $0 * s } }
public func + (a: Tensor, s: Float) -> Tensor { map(a) { $0 + s } }
public func - (a: Tensor, s: Float) -> Tensor { map(a) { $0 - s } }
public prefix func - (a: Tensor) -> Tensor { map(a) { -$0 } }

/// `alpha * a + beta * b` for same-shaped tensors in one pass (guidance, sampler updates).
public func linearCombination(_ a: Tensor, _ alpha: Float, _ b: Tensor, _ beta: Float) -> Tensor {
    precondition(a.shape == b.shape, "linearCombination needs equal shapes, got \(a.shape) and \(b.shape)")
    let out = Tensor(uninitializedShape: a.shape)
    let pa = a.storage.base, pb = b.storage.base, po = out.storage.base
    ComputePool.current.parallelRanges(a.count, minimumChunk: 1 << 15) { range in
        for i in range { po[i] = alpha * pa[i] + beta * pb[i] }
    }
    return out
}

/// `target += scale * source`, in place (LoRA patching, accumulation). Both must have equal element counts.
public func addInPlace(_ target: Tensor, _ source: Tensor, scale: Float = 1) {
    precondition(target.count == source.count, "addInPlace: \(target.shape) vs \(source.shape)")
    let dst = target.storage.base, src = source.storage.base
    ComputePool.current.parallelRanges(target.count, minimumChunk: 1 << 15) { range in
        for i in range { dst[i] += scale * src[i] }
    }
}

/// `x [N, ..., C] + values [N, C]` (or `[1, C]`, for every sample) broadcast over the positions (a time embedding added
/// to a feature map), written over `x` when nothing else holds it.
public func addPerSampleChannels(_ x: consuming Tensor, _ values: Tensor) -> Tensor {
    let (batch, channels) = (x.shape[0], x.shape[x.rank - 1])
    let shared = values.count == channels && batch != 1
    precondition(shared || values.count == batch * channels, "addPerSampleChannels: \(x.shape) + \(values.shape)")
    let out = x.isUniquelyOwned() ? x : x.copy()
    let positions = x.count / max(batch * channels, 1)
    for n in 0..<batch {
        addRows(
            out.storage.base + n * positions * channels, rows: positions, row: values.storage.base + (shared ? 0 : n * channels),
            width: channels)
    }
    return out
}

/// Copies `source`'s elements into `target` in place (restoring pristine weights).
public func copyInPlace(_ target: Tensor, from source: Tensor) {
    precondition(target.count == source.count, "copyInPlace: \(target.shape) vs \(source.shape)")
    target.storage.base.update(from: source.storage.base, count: target.count)
}

/// Clamps every element to `[lower, upper]`.
public func clamp(_ x: Tensor, _ lower: Float, _ upper: Float) -> Tensor {
    map(x) { v in
        var r = v
        r.replace(with: Float8(repeating: lower), where: r .< lower)
        r.replace(with: Float8(repeating: upper), where: r .> upper)
        return r
    }
}
