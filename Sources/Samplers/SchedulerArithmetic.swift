import Compute

/// Elementwise passes for scheduler updates, written so each element goes through exactly the float32
/// operations (and rounding order) of the diffusers expression it mirrors: one torch op = one rounding.
/// Swift never fuses a multiply and an add on its own, and neither do torch's elementwise kernels.
enum SchedulerArithmetic {
    @inline(__always)
    static func map(_ a: Tensor, _ body: (Float) -> Float) -> Tensor {
        let out = Tensor(uninitializedShape: a.shape)
        a.withUnsafeBufferPointer { x in
            out.withUnsafeMutableBufferPointer { y in
                for i in 0..<x.count { y[i] = body(x[i]) }
            }
        }
        return out
    }

    @inline(__always)
    static func map(_ a: Tensor, _ b: Tensor, _ body: (Float, Float) -> Float) -> Tensor {
        precondition(a.count == b.count, "elementwise operands differ: \(a.shape) vs \(b.shape)")
        let out = Tensor(uninitializedShape: a.shape)
        a.withUnsafeBufferPointer { x in
            b.withUnsafeBufferPointer { z in
                out.withUnsafeMutableBufferPointer { y in
                    for i in 0..<x.count { y[i] = body(x[i], z[i]) }
                }
            }
        }
        return out
    }

    @inline(__always)
    static func map(_ a: Tensor, _ b: Tensor, _ c: Tensor, _ body: (Float, Float, Float) -> Float) -> Tensor {
        precondition(a.count == b.count && a.count == c.count, "elementwise operands differ: \(a.shape), \(b.shape), \(c.shape)")
        let out = Tensor(uninitializedShape: a.shape)
        a.withUnsafeBufferPointer { x in
            b.withUnsafeBufferPointer { z in
                c.withUnsafeBufferPointer { w in
                    out.withUnsafeMutableBufferPointer { y in
                        for i in 0..<x.count { y[i] = body(x[i], z[i], w[i]) }
                    }
                }
            }
        }
        return out
    }

    @inline(__always)
    static func map(
        _ a: Tensor, _ b: Tensor, _ c: Tensor, _ d: Tensor, _ body: (Float, Float, Float, Float) -> Float
    ) -> Tensor {
        precondition(a.count == b.count && a.count == c.count && a.count == d.count, "elementwise operands differ")
        let out = Tensor(uninitializedShape: a.shape)
        a.withUnsafeBufferPointer { x in
            b.withUnsafeBufferPointer { z in
                c.withUnsafeBufferPointer { w in
                    d.withUnsafeBufferPointer { v in
                        out.withUnsafeMutableBufferPointer { y in
                            for i in 0..<x.count { y[i] = body(x[i], z[i], w[i], v[i]) }
                        }
                    }
                }
            }
        }
        return out
    }

    /// `tensor.clamp(-range, range)`.
    static func clamp(_ a: Tensor, range: Float) -> Tensor {
        map(a) { Swift.min(Swift.max($0, -range), range) }
    }
}
