import Foundation
import Imaging
import ParityTesting
import XCTest

/// Seeded random-mutation fuzzing of the PNG and JPEG decoders (issue 10, "Done when"): every mutated image either
/// decodes within the limits or throws an `ImageError`; the header's size is checked before pixels are allocated.
final class ImageCodecFuzzTests: XCTestCase {
    private func seeds() throws -> [[UInt8]] {
        let folder = Golden.fixturesDirectory.appendingPathComponent("images")
        var seeds = try ["photo.jpg", "photo_420.jpg", "gray.jpg", "gray.png", "rgba.png", "palette.png"].map {
            [UInt8](try Data(contentsOf: folder.appendingPathComponent($0)))
        }
        var pixels = [UInt8](repeating: 0, count: 7 * 5 * 3)
        for i in pixels.indices { pixels[i] = UInt8((i * 53) % 256) }
        seeds.append([UInt8](try ImageCodec.encodePNG(RGBImage(width: 7, height: 5, pixels: pixels), textChunks: [("parameters", "a prompt")])))
        return seeds
    }

    /// CRC-32 (PNG chunks), so a mutated IHDR still passes libpng's checksum and reaches the size checks.
    private static let crcTable: [UInt32] = (0..<256).map { n in
        var c = UInt32(n)
        for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }

    private static func crc32(_ bytes: ArraySlice<UInt8>) -> UInt32 {
        var c: UInt32 = 0xFFFF_FFFF
        for byte in bytes { c = crcTable[Int((c ^ UInt32(byte)) & 0xFF)] ^ (c >> 8) }
        return c ^ 0xFFFF_FFFF
    }

    /// Format-aware mutations: PNG IHDR width/height (CRC fixed up) and JPEG frame-header dimensions set to
    /// huge, zero or extreme-aspect values.
    private func structuredMutation(_ seed: [UInt8], using random: inout FuzzRandom) -> [UInt8] {
        var bytes = seed
        let sizes: [UInt64] = [0, 1, 2, 8193, 65535, 65536, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF, 100_000, 3000, 1 << 20]
        if bytes.starts(with: [0x89, 0x50, 0x4E, 0x47]), bytes.count >= 33 {
            // IHDR data at 16..<29: width, height (big-endian), depth, colour type, ...; CRC at 29..<33.
            switch random.below(3) {
            case 0: FuzzMutator.writeInteger(random.pick(sizes), width: 4, bigEndian: true, into: &bytes, at: 16)
            case 1: FuzzMutator.writeInteger(random.pick(sizes), width: 4, bigEndian: true, into: &bytes, at: 20)
            default: bytes[24 + random.below(5)] = UInt8(truncatingIfNeeded: random.next())
            }
            FuzzMutator.writeInteger(UInt64(Self.crc32(bytes[12..<29])), width: 4, bigEndian: true, into: &bytes, at: 29)
        } else {
            // JPEG SOFn (FFC0-FFC2): length(2) precision(1) height(2) width(2).
            var i = 2
            while i + 9 < bytes.count {
                if bytes[i] == 0xFF, (0xC0...0xC2).contains(bytes[i + 1]) {
                    FuzzMutator.writeInteger(random.pick(sizes), width: 2, bigEndian: true, into: &bytes, at: i + 5 + 2 * random.below(2))
                    break
                }
                i += 1
            }
        }
        return bytes
    }

    func testMutatedImagesDecodeOrThrow() throws {
        let seeds = try seeds()
        let limitsToTry = [
            ImageLimits.standard, ImageLimits(maximumSide: 64, maximumPixels: 1000),
            ImageLimits(maximumBytes: 1 << 20, maximumSide: 1 << 20, maximumPixels: 1 << 22),
        ]
        for seed in seeds { XCTAssertNoThrow(try ImageCodec.decode(Data(seed))) }
        var random = FuzzRandom(seed: 0x1A6E_C0DE)
        var (decoded, refused, tooLarge) = (0, 0, 0)
        let iterations = 4000
        for iteration in 0..<iterations {
            let seed = random.pick(seeds)
            var input = random.chance(0.3) ? structuredMutation(seed, using: &random) : FuzzMutator.mutate(seed, others: seeds, using: &random)
            if random.chance(0.1) { input = FuzzMutator.mutate(input, using: &random) }
            let limits = random.pick(limitsToTry)
            _ = ImageCodec.textChunks(of: Data(input))
            do {
                let image = try ImageCodec.decode(Data(input), limits: limits)
                XCTAssertEqual(image.pixels.count, image.width * image.height * 3, "iteration \(iteration)")
                XCTAssertLessThanOrEqual(image.width, limits.maximumSide, "iteration \(iteration)")
                XCTAssertLessThanOrEqual(image.height, limits.maximumSide, "iteration \(iteration)")
                XCTAssertLessThanOrEqual(image.width * image.height, limits.maximumPixels, "iteration \(iteration)")
                decoded += 1
            } catch let error as ImageError {
                if case .tooLarge = error { tooLarge += 1 }
                refused += 1
            }
        }
        print("image fuzz: \(iterations) inputs, \(decoded) decoded, \(refused) refused (\(tooLarge) over the limits)")
        XCTAssertGreaterThan(decoded, iterations / 50)
        XCTAssertGreaterThan(refused, iterations / 4)
        XCTAssertGreaterThan(tooLarge, iterations / 100)
    }

    /// The size checks themselves: overflow-safe whatever the limits, before anything is allocated.
    func testSizeChecksCannotOverflow() throws {
        let unlimited = ImageLimits(maximumBytes: .max, maximumSide: .max, maximumPixels: .max)
        for (width, height) in [(Int.max, 2), (1 << 32, 1 << 32), (1 << 31, 1), (Int(Int32.max), 1)] {
            XCTAssertThrowsError(try unlimited.check(width: width, height: height), "\(width)x\(height)") { error in
                guard case .tooLarge = error as? ImageError else { return XCTFail("\(error)") }
            }
        }
        XCTAssertNoThrow(try unlimited.check(width: 1 << 20, height: 1 << 20))
        XCTAssertThrowsError(try ImageLimits.standard.check(width: 8192, height: 8193))
        XCTAssertThrowsError(try ImageLimits.standard.check(width: 0, height: 5))
        XCTAssertThrowsError(try ImageLimits(maximumPixels: 100).check(width: 10, height: 11))
        XCTAssertNoThrow(try ImageLimits(maximumPixels: 100).check(width: 10, height: 10))
    }
}
