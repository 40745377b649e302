import Foundation

/// A small, seeded random-mutation engine for the parser fuzz tests (issue 10): the same seed gives the same
/// inputs on every machine, so a failure found in CI reproduces locally from the seed and iteration it prints.
public struct FuzzRandom: RandomNumberGenerator, Sendable {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    /// SplitMix64.
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    public mutating func below(_ bound: Int) -> Int { bound <= 0 ? 0 : Int.random(in: 0..<bound, using: &self) }
    public mutating func chance(_ probability: Double) -> Bool { Double.random(in: 0..<1, using: &self) < probability }
    public mutating func pick<T>(_ options: [T]) -> T { options[below(options.count)] }
}

/// Byte-level mutations of valid seed inputs: bit flips, byte insertion/deletion/overwrite, interesting values,
/// truncation, duplication, splicing with another seed, and little/big-endian length fields set to huge values.
public enum FuzzMutator {
    /// Values that break size arithmetic: 0, 1, sign and word boundaries, all ones.
    public static let interestingIntegers: [UInt64] = [
        0, 1, 2, 7, 8, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x1_0000, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF,
        0x1_0000_0000, 0x7FFF_FFFF_FFFF_FFFF, 0x8000_0000_0000_0000, 0xFFFF_FFFF_FFFF_FFFF, 0xFFFF_FFFF_FFFF_FFF8,
    ]

    /// One to `maximumSteps` random mutations of `input`; `others` are splicing partners.
    public static func mutate(_ input: [UInt8], others: [[UInt8]] = [], maximumSteps: Int = 4, using random: inout FuzzRandom) -> [UInt8] {
        var bytes = input
        for _ in 0..<(1 + random.below(maximumSteps)) { step(&bytes, others: others, using: &random) }
        return bytes
    }

    static func step(_ bytes: inout [UInt8], others: [[UInt8]], using random: inout FuzzRandom) {
        let count = bytes.count
        switch random.below(10) {
        case 0 where count > 0:  // flip one bit
            let i = random.below(count)
            bytes[i] ^= UInt8(1) << UInt8(random.below(8))
        case 1 where count > 0:  // overwrite a byte
            bytes[random.below(count)] = UInt8(truncatingIfNeeded: random.next())
        case 2:  // insert bytes
            let run = (0..<(1 + random.below(8))).map { _ in UInt8(truncatingIfNeeded: random.next()) }
            bytes.insert(contentsOf: run, at: random.below(count + 1))
        case 3 where count > 0:  // delete a run
            let start = random.below(count)
            bytes.removeSubrange(start..<min(count, start + 1 + random.below(16)))
        case 4 where count > 0:  // truncate
            bytes.removeSubrange(random.below(count)..<count)
        case 5 where count > 0:  // duplicate a run
            let start = random.below(count)
            let run = bytes[start..<min(count, start + 1 + random.below(64))]
            bytes.insert(contentsOf: run, at: random.below(count + 1))
        case 6 where !others.isEmpty:  // splice: our head, another seed's tail
            let other = random.pick(others)
            let cut = random.below(count + 1), otherCut = random.below(other.count + 1)
            bytes = Array(bytes[..<cut]) + other[otherCut...]
        case 7 where count >= 1:  // an interesting integer, 1/2/4/8 bytes, either endianness
            let width = random.pick([1, 2, 4, 8])
            guard count >= width else { return }
            writeInteger(random.pick(interestingIntegers), width: width, bigEndian: random.chance(0.5), into: &bytes, at: random.below(count - width + 1))
        case 8 where count > 0:  // overwrite with ASCII syntax characters (text formats)
            let characters = Array("{}[]\",:0123456789-+.eE \\/<>()".utf8)
            bytes[random.below(count)] = random.pick(characters)
        default:  // swap two runs' worth of bytes
            guard count > 1 else { return }
            let a = random.below(count), b = random.below(count)
            bytes.swapAt(a, b)
        }
    }

    public static func writeInteger(_ value: UInt64, width: Int, bigEndian: Bool, into bytes: inout [UInt8], at offset: Int) {
        for k in 0..<width {
            let shift = bigEndian ? 8 * (width - 1 - k) : 8 * k
            bytes[offset + k] = UInt8(truncatingIfNeeded: value >> UInt64(shift))
        }
    }

    /// Random printable and syntax characters (for text inputs built from scratch).
    public static func text(from alphabet: [String], length: Int, using random: inout FuzzRandom) -> String {
        var text = ""
        for _ in 0..<length { text += random.pick(alphabet) }
        return text
    }
}
