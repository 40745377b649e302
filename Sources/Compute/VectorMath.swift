/// `SIMD8<Float>` helpers for the simple elementwise maps written in Swift (arithmetic, clamps, ReLU).
///
/// The transcendental functions (exp, erf, tanh, sigmoid), softmax, the normalisations and attention are C kernels
/// compiled per instruction set (`Kernels`); the Swift code is built for baseline x86-64 and stays with operations that
/// are memory-bound there.
public typealias Float8 = SIMD8<Float>

/// Scalar helpers with the same numerics, for loop tails.
@inlinable @inline(__always)
public func scalarApply(_ x: Float, _ f: (Float8) -> Float8) -> Float {
    f(Float8(repeating: x))[0]
}

/// Applies `f` to `count` floats from `source` into `destination` (may alias), eight at a time.
@inlinable @inline(__always)
public func mapVectorized(
    _ source: UnsafePointer<Float>, _ destination: UnsafeMutablePointer<Float>, _ count: Int,
    _ f: (Float8) -> Float8
) {
    let vectorCount = count / 8
    let raw = UnsafeRawPointer(source)
    let rawOut = UnsafeMutableRawPointer(destination)
    for i in 0..<vectorCount {
        let v = raw.loadUnaligned(fromByteOffset: i * 32, as: Float8.self)
        rawOut.storeBytes(of: f(v), toByteOffset: i * 32, as: Float8.self)
    }
    for i in (vectorCount * 8)..<count {
        destination[i] = scalarApply(source[i], f)
    }
}
