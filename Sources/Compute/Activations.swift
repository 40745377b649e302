/// Activation functions and softmax: the dispatched SIMD kernels of `Kernels` (AVX-512 / AVX2 / baseline).

/// x * sigmoid(x)
public func silu(_ x: Tensor) -> Tensor { Kernels.unary(.silu, x) }

/// e^x elementwise.
public func exp(_ x: Tensor) -> Tensor { Kernels.unary(.exp, x) }

public enum GELUApproximation: String, Sendable, Codable {
    /// 0.5 x (1 + erf(x / sqrt 2)), PyTorch's default.
    case none
    /// 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
    case tanh
}

public func gelu(_ x: Tensor, approximation: GELUApproximation = .none) -> Tensor {
    switch approximation {
    case .none: Kernels.unary(.geluErf, x)
    case .tanh: Kernels.unary(.geluTanh, x)
    }
}

/// x * sigmoid(1.702 x), the activation of OpenAI's CLIP text encoder.
public func quickGELU(_ x: Tensor) -> Tensor { Kernels.unary(.silu, x, alpha: 1.702) }

/// GEGLU's gating: splits the last axis of `projected` into `(hidden, gate)` halves and returns
/// `hidden * gelu(gate)`, fused in one pass.
public func geglu(_ projected: Tensor) -> Tensor {
    let width = projected.shape.last ?? 0
    precondition(width % 2 == 0, "GEGLU needs an even last dimension, got \(projected.shape)")
    let half = width / 2
    let rows = projected.count / max(width, 1)
    let out = Tensor(uninitializedShape: Array(projected.shape.dropLast()) + [half])
    let src = projected.storage.base, dst = out.storage.base
    let kernel = Kernels.current.gegluRows!
    ComputePool.current.parallelRanges(rows, minimumChunk: max(1, 8192 / max(half, 1))) { range in
        kernel(src + range.lowerBound * width, dst + range.lowerBound * half, range.count, half)
    }
    return out
}

/// Softmax over the last axis (a row that is all -inf gives zeros, where PyTorch gives NaN).
public func softmax(_ x: Tensor) -> Tensor {
    let width = x.shape.last ?? 1
    let rows = x.count / max(width, 1)
    let out = Tensor(uninitializedShape: x.shape)
    let src = x.storage.base, dst = out.storage.base
    let kernel = Kernels.current.softmaxRows!
    ComputePool.current.parallelRanges(rows, minimumChunk: max(1, 8192 / max(width, 1))) { range in
        kernel(src + range.lowerBound * width, dst + range.lowerBound * width, range.count, width)
    }
    return out
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
public func tanh(_ x: Tensor) -> Tensor { Kernels.unary(.tanh, x) }
