import Compute
import ParityTesting
import XCTest

@testable import Samplers

/// `TorchGenerator` against `torch.randn` / `torch.rand` (Tests/Fixtures/samplers/torch_randn.safetensors):
/// every value must be bit-identical.
final class TorchGeneratorTests: XCTestCase {
    private func golden() throws -> (Golden, Attributes) {
        let golden = try Golden("samplers/torch_randn")
        return (golden, try Attributes(golden))
    }

    /// Fails unless `actual` and `expected` hold the same bits; prints the max abs error like assertClose.
    private func assertBitwiseEqual(
        _ actual: Tensor, _ expected: Tensor, _ label: String, file: StaticString = #filePath, line: UInt = #line
    ) {
        assertClose(actual, expected, tolerance: 0, label, file: file, line: line)
        XCTAssertTrue(actual.isBitwiseEqual(to: expected), "\(label): not bit-identical", file: file, line: line)
    }

    func testRandnSeedsAndShapes() throws {
        let (golden, attrs) = try golden()
        guard let seeds = attrs.values["seeds"] as? [String: String], let shapes = attrs.values["shapes"] as? [String: [Int]]
        else {
            throw GoldenError.badAttribute(name: golden.name, key: "seeds/shapes", value: "", expected: "objects")
        }
        let stride = try attrs.int("subsample")
        var checked = 0
        for (seedName, seedText) in seeds.sorted(by: { $0.key < $1.key }) {
            let seed = try XCTUnwrap(UInt64(seedText), "seed \(seedText)")
            for (shapeName, shape) in shapes.sorted(by: { $0.key < $1.key }) {
                var generator = TorchGenerator(seed: seed)
                let drawn = generator.randn(shape)
                let key = "randn.\(seedName).\(shapeName)"
                if golden.file.contains("output." + key) {
                    assertBitwiseEqual(drawn, try golden.output(key), key)
                } else {
                    let expected = try golden.output("\(key).every\(stride)")
                    let values = drawn.scalars
                    let subsample = Tensor(
                        shape: expected.shape, values: Swift.stride(from: 0, to: values.count, by: stride).map { values[$0] })
                    assertBitwiseEqual(subsample, expected, "\(key) (every \(stride)th)")
                }
                checked += 1
            }
        }
        XCTAssertEqual(checked, seeds.count * shapes.count)
    }

    /// One generator, nine calls of randn/rand of mixed sizes: the engine state and the cached second
    /// Box-Muller value must carry over between calls exactly as in torch.
    func testStateCarriesAcrossCalls() throws {
        let (golden, attrs) = try golden()
        guard let sequence = attrs.values["sequence"] as? [[Any]] else {
            throw GoldenError.badAttribute(name: golden.name, key: "sequence", value: "", expected: "a list")
        }
        var generator = TorchGenerator(seed: UInt64(try attrs.int("sequence_seed")))
        for (i, entry) in sequence.enumerated() {
            let kind = try XCTUnwrap(entry.first as? String)
            let shape = try XCTUnwrap(entry.last as? [Int])
            let drawn = kind == "randn" ? generator.randn(shape) : generator.rand(shape)
            assertBitwiseEqual(drawn, try golden.output("sequence.\(i).\(kind)"), "sequence.\(i).\(kind)\(shape)")
        }
    }

    /// torch seeds MT19937 with the low 32 bits only; negative seeds are their two's complement.
    func testSeedTruncationAndNegativeSeeds() {
        var a = TorchGenerator(seed: 5), b = TorchGenerator(seed: (1 << 32) + 5)
        XCTAssertTrue(a.randn([40]).isBitwiseEqual(to: b.randn([40])))
        var c = TorchGenerator(seed: -1), d = TorchGenerator(seed: UInt64.max)
        XCTAssertTrue(c.randn([3]).isBitwiseEqual(to: d.randn([3])))
    }

    /// The NHWC helper is the NCHW draw, permuted.
    func testNHWCIsPermutedNCHW() {
        var a = TorchGenerator(seed: 7), b = TorchGenerator(seed: 7)
        let nhwc = a.randnNHWC(batch: 2, channels: 4, height: 3, width: 5)
        let nchw = b.randn([2, 4, 3, 5])
        XCTAssertEqual(nhwc.shape, [2, 3, 5, 4])
        XCTAssertTrue(nhwc.isBitwiseEqual(to: nchwToNHWC(nchw)))
    }

    /// One generator per image draws `[1, C, H, W]` from each, as diffusers' list of generators does.
    func testPerImageGenerators() {
        var noise = LatentNoise(generators: [TorchGenerator(seed: 10), TorchGenerator(seed: 11)], layout: .nchw)
        let drawn = noise.randn(shape: [2, 4, 4, 4])
        var first = TorchGenerator(seed: 10), second = TorchGenerator(seed: 11)
        let expected = concat([first.randn([1, 4, 4, 4]), second.randn([1, 4, 4, 4])], axis: 0)
        XCTAssertTrue(drawn.isBitwiseEqual(to: expected))
    }
}
