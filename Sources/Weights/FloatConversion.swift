import Compute

/// Conversions between Float32 and the narrow float formats weight files store, by bit manipulation.
///
/// `Float16` the Swift type exists only on some platforms and, without F16C, converts through a library
/// call per element; the scalar conversions here are branch-light integer code, and bulk widening runs the
/// per-instruction-set kernels of `Compute.Kernels`.
/// All formats are little-endian on disk, as is every platform this package runs on.
enum FloatConversion {
    /// IEEE binary16 bits to Float32 (exact; subnormals, infinities and NaN preserved).
    ///
    /// Shifts exponent and mantissa into Float32 position and rescales by 2^112 with one multiply,
    /// which also normalises subnormals (F. Giesen, "half_to_float_fast5").
    @inline(__always)
    static func float(fromHalf bits: UInt16) -> Float {
        let magic = Float(bitPattern: (254 - 15) << 23)
        let wasInfinityOrNaN = Float(bitPattern: (127 + 16) << 23)
        var value = Float(bitPattern: UInt32(bits & 0x7FFF) << 13) * magic
        if value >= wasInfinityOrNaN {
            value = Float(bitPattern: value.bitPattern | (255 << 23))
        }
        return Float(bitPattern: value.bitPattern | (UInt32(bits & 0x8000) << 16))
    }

    /// Float32 to IEEE binary16 bits, rounding to nearest even (as numpy and PyTorch do); overflow gives
    /// infinity, NaN gives a quiet NaN (F. Giesen, "float_to_half_fast3_rtne").
    @inline(__always)
    static func half(from value: Float) -> UInt16 {
        let infinityBits: UInt32 = 255 << 23
        let halfOverflowBits: UInt32 = (127 + 16) << 23
        let denormalMagic = Float(bitPattern: ((127 - 15) + (23 - 10) + 1) << 23)
        var bits = value.bitPattern
        let sign = bits & 0x8000_0000
        bits ^= sign
        let result: UInt32
        if bits >= halfOverflowBits {
            result = bits > infinityBits ? 0x7E00 : 0x7C00
        } else if bits < (113 << 23) {
            // Subnormal or zero: adding the magic value lines the 10 mantissa bits up at the bottom, and
            // the FPU's round-to-nearest-even does the rounding.
            let shifted = Float(bitPattern: bits) + denormalMagic
            result = shifted.bitPattern &- denormalMagic.bitPattern
        } else {
            let mantissaOdd = (bits >> 13) & 1
            bits = bits &+ (UInt32(bitPattern: Int32(15 - 127) << 23) &+ 0xFFF)
            bits = bits &+ mantissaOdd
            result = bits >> 13
        }
        return UInt16(truncatingIfNeeded: result | (sign >> 16))
    }

    /// Widens `count` binary16 values at `source` (any alignment) into `destination` (the dispatched SIMD kernel,
    /// the same arithmetic as `float(fromHalf:)`).
    static func widenHalf(_ source: UnsafeRawPointer, into destination: UnsafeMutablePointer<Float>, count: Int) {
        Kernels.widenHalf(source, into: destination, count: count)
    }

    /// Widens `count` bfloat16 values at `source` (any alignment) into `destination` (the dispatched SIMD kernel).
    static func widenBFloat16(_ source: UnsafeRawPointer, into destination: UnsafeMutablePointer<Float>, count: Int) {
        Kernels.widenBFloat16(source, into: destination, count: count)
    }

    /// bfloat16 bits to Float32 (exact: bfloat16 is the top half of a Float32).
    @inline(__always)
    static func float(fromBFloat16 bits: UInt16) -> Float {
        Float(bitPattern: UInt32(bits) << 16)
    }

    /// All 256 values of float8 E4M3 (the "FN" variant PyTorch and safetensors use: bias 7, no
    /// infinities, 0x7F and 0xFF are NaN).
    static let float8E4M3Table: [Float] = (0..<256).map { byte in
        let sign: Float = byte & 0x80 != 0 ? -1 : 1
        let exponent = (byte >> 3) & 0xF
        let mantissa = Float(byte & 0x7)
        if exponent == 0xF && byte & 0x7 == 0x7 { return .nan }
        if exponent == 0 { return sign * mantissa / 8 * Float(sign: .plus, exponent: -6, significand: 1) }
        return sign * (1 + mantissa / 8) * Float(sign: .plus, exponent: exponent - 7, significand: 1)
    }

    /// float8 E5M2 to Float32: E5M2 is the top byte of an IEEE binary16.
    @inline(__always)
    static func float(fromFloat8E5M2 byte: UInt8) -> Float {
        float(fromHalf: UInt16(byte) << 8)
    }
}
