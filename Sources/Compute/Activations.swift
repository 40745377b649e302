/// Activation functions and softmax.

/// x * sigmoid(x)
public func silu(_ x: Tensor) -> Tensor {
    map(x) { v in v * vsigmoid(v) }
}

public enum GELUApproximation: String, Sendable, Codable {
    /// 0.5 x (1 + erf(x / sqrt 2)), PyTorch's default.
    case none
    /// 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
    case tanh
}

@inline(__always) func geluExact(_ v: Float8) -> Float8 {
    0.5 * v * (1 + verf(v * 0.70710678118654752))
}

@inline(__always) func geluTanh(_ v: Float8) -> Float8 {
    0.5 * v * (1 + vtanh(0.79788456080286536 * (v + 0.044715 * v * v * v)))
}

public func gelu(_ x: Tensor, approximation: GELUApproximation = .none) -> Tensor {
    switch approximation {
    case .none: map(x, geluExact)
    case .tanh: map(x, geluTanh)
    }
}

/// x * sigmoid(1.702 x), the activation of OpenAI's CLIP text encoder.
public func quickGELU(_ x: Tensor) -> Tensor {
    map(x) { v in v * vsigmoid(1.702 * v) }
}

/// GEGLU's gating: splits the last axis of `projected` into `(hidden, gate)` halves and returns
/// `hidden * gelu(gate)`, fused in one pass.
public func geglu(_ projected: Tensor) -> Tensor {
    let width = projected.shape.last ?? 0
    precondition(width % 2 == 0, "GEGLU needs an even last dimension, got \(projected.shape)")
    let half = width / 2
    let rows = projected.count / max(width, 1)
    let out = Tensor(uninitializedShape: Array(projected.shape.dropLast()) + [half])
    let src = projected.storage.base, dst = out.storage.base
    ComputePool.current.parallelRanges(rows, minimumChunk: max(1, 8192 / max(half, 1))) { range in
        for row in range {
            let hidden = src + row * width
            let gate = hidden + half
            let output = dst + row * half
            let vectors = half / 8
            let rh = UnsafeRawPointer(hidden), rg = UnsafeRawPointer(gate), ro = UnsafeMutableRawPointer(output)
            for i in 0..<vectors {
                let h = rh.loadUnaligned(fromByteOffset: i * 32, as: Float8.self)
                let g = rg.loadUnaligned(fromByteOffset: i * 32, as: Float8.self)
                ro.storeBytes(of: h * geluExact(g), toByteOffset: i * 32, as: Float8.self)
            }
            for i in (vectors * 8)..<half {
                output[i] = hidden[i] * scalarApply(gate[i], geluExact)
            }
        }
    }
    return out
}

/// Softmax over the last axis.
public func softmax(_ x: Tensor) -> Tensor {
    let width = x.shape.last ?? 1
    let rows = x.count / max(width, 1)
    let out = Tensor(uninitializedShape: x.shape)
    let src = x.storage.base, dst = out.storage.base
    ComputePool.current.parallelRanges(rows, minimumChunk: max(1, 8192 / max(width, 1))) { range in
        for row in range {
            softmaxRow(src + row * width, dst + row * width, width)
        }
    }
    return out
}

/// Numerically stable softmax of one row (source and destination may alias).
@inline(__always)
func softmaxRow(_ source: UnsafePointer<Float>, _ destination: UnsafeMutablePointer<Float>, _ count: Int, scale: Float = 1) {
    if count == 0 { return }
    var maximum = -Float.infinity
    for i in 0..<count { maximum = max(maximum, source[i]) }
    if maximum == -.infinity {
        // Fully masked row: PyTorch yields NaN; return zeros instead of poisoning the output.
        destination.update(repeating: 0, count: count)
        return
    }
    let shift = maximum * scale
    let vectors = count / 8
    let rs = UnsafeRawPointer(source), rd = UnsafeMutableRawPointer(destination)
    var sumVector = Float8()
    for i in 0..<vectors {
        let e = vexp(rs.loadUnaligned(fromByteOffset: i * 32, as: Float8.self) * scale - shift)
        sumVector += e
        rd.storeBytes(of: e, toByteOffset: i * 32, as: Float8.self)
    }
    var sum = sumVector.sum()
    for i in (vectors * 8)..<count {
        let e = scalarApply(source[i] * scale - shift, vexp)
        destination[i] = e
        sum += e
    }
    let inverse = 1 / sum
    for i in 0..<vectors {
        rd.storeBytes(of: rd.loadUnaligned(fromByteOffset: i * 32, as: Float8.self) * inverse, toByteOffset: i * 32, as: Float8.self)
    }
    for i in (vectors * 8)..<count { destination[i] *= inverse }
}

/// max(x, 0)
public func relu(_ x: Tensor) -> Tensor {
    map(x) { v in
        var r = v
        r.replace(with: 0, where: r .< 0)
        return r
    }
}

/// Hyperbolic tangent.
public func tanh(_ x: Tensor) -> Tensor { map(x, vtanh) }
