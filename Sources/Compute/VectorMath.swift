/// Vectorised transcendental functions on `SIMD8<Float>` for the elementwise kernels.
///
/// Written with arithmetic and bit manipulation only: some standard-library SIMD operations
/// (`pointwiseMin`, `rounded()`, int <-> float vector conversions) compile to per-lane or out-of-line
/// code and make a kernel 3-40x slower (docs/performance.md). `replace(with:where:)` is fine when the
/// target CPU has AVX2.
public typealias Float8 = SIMD8<Float>

@usableFromInline let roundingMagic: Float = 12_582_912  // 1.5 * 2^23

/// The IEEE-754 bits of each lane.
@inlinable @inline(__always)
public func vbits(_ x: Float8) -> SIMD8<UInt32> { unsafeBitCast(x, to: SIMD8<UInt32>.self) }

/// Floats from IEEE-754 bits.
@inlinable @inline(__always)
public func vfloat(bits: SIMD8<UInt32>) -> Float8 { unsafeBitCast(bits, to: Float8.self) }

/// e^x with a relative error below 2e-7 on [-87, 88]; saturates to 0 / +inf-ish outside.
@inlinable @inline(__always)
public func vexp(_ input: Float8) -> Float8 {
    var x = input
    x.replace(with: 88.3762626647949, where: x .> 88.3762626647949)
    x.replace(with: -87.3365447505531, where: x .< -87.3365447505531)
    // n = round(x / ln 2) through the 1.5 * 2^23 trick; r = x - n ln 2 in two parts (Cody-Waite).
    let shifted = x * 1.44269504088896341 + roundingMagic
    let n = shifted - roundingMagic
    var r = x - n * 0.693359375
    r = r - n * -2.12194440e-4
    // Cephes polynomial for e^r on [-ln2/2, ln2/2].
    var p: Float8 = Float8(repeating: 1.9875691500e-4)
    p = p * r + 1.3981999507e-3
    p = p * r + 8.3334519073e-3
    p = p * r + 4.1665795894e-2
    p = p * r + 1.6666665459e-1
    p = p * r + 5.0000001201e-1
    let r2 = r * r
    let er = p * r2 + r + 1
    // 2^n from the integer sitting in the low mantissa bits of `shifted`.
    let exponent = (vbits(shifted) &- roundingMagic.bitPattern &+ 127) &<< 23
    return er * vfloat(bits: exponent)
}

/// 1 / (1 + e^-x)
@inlinable @inline(__always)
public func vsigmoid(_ x: Float8) -> Float8 {
    1 / (1 + vexp(-x))
}

/// tanh(x) = 1 - 2 / (e^{2x} + 1), accurate to a few ulp away from 0 and exact in sign.
@inlinable @inline(__always)
public func vtanh(_ x: Float8) -> Float8 {
    // For small |x| the subtraction loses relative precision; use the odd polynomial there.
    let e = vexp(x * 2)
    var result = 1 - 2 / (e + 1)
    let x2 = x * x
    var p: Float8 = Float8(repeating: -5.70498872745e-3)
    p = p * x2 + 2.06390887954e-2
    p = p * x2 - 5.37397155531e-2
    p = p * x2 + 1.33314422036e-1
    p = p * x2 - 3.33332819422e-1
    let small = p * x2 * x + x
    result.replace(with: small, where: x2 .< 0.390625)  // |x| < 0.625
    return result
}

/// erf(x) with absolute error below 2e-7 (rational approximation of erfc for |x| >= 0.5, series below).
@inlinable @inline(__always)
public func verf(_ input: Float8) -> Float8 {
    let signBits = vbits(input) & 0x8000_0000
    var a = vfloat(bits: vbits(input) & 0x7FFF_FFFF)
    a.replace(with: 4, where: a .> 4)
    // Small |x|: the Maclaurin series of erf to x^15 (truncation error < 1e-9 on [0, 0.5]).
    let a2 = a * a
    var s: Float8 = Float8(repeating: -1.4925650358406252e-05)
    s = s * a2 + 1.2055332981789664e-04
    s = s * a2 - 8.5483255082993370e-04
    s = s * a2 + 5.2239776254421880e-03
    s = s * a2 - 2.6866170645131252e-02
    s = s * a2 + 1.1283791670955126e-01
    s = s * a2 - 3.7612638903183750e-01
    s = s * a2 + 1.1283791670955126
    let small = s * a
    // |x| >= 0.5: erf = 1 - exp(-x^2) * R(t), t = 1 / (1 + 0.5 |x|) (Numerical Recipes erfc, rel err 1.2e-7).
    let t = 1 / (1 + 0.5 * a)
    var q: Float8 = Float8(repeating: 0.17087277)
    q = q * t - 0.82215223
    q = q * t + 1.48851587
    q = q * t - 1.13520398
    q = q * t + 0.27886807
    q = q * t - 0.18628806
    q = q * t + 0.09678418
    q = q * t + 0.37409196
    q = q * t + 1.00002368
    q = q * t - 1.26551223
    let erfc = t * vexp(q - a2)
    var result = 1 - erfc
    result.replace(with: small, where: a .< 0.5)
    return vfloat(bits: vbits(result) | signBits)
}

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
