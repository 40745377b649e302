import Compute
import Models
import ParityTesting
import Pipelines
import XCTest

/// A1111 prompt encoding on the tiny sd1 model: unweighted prompts encode exactly as plain ones, weights act as
/// `z * w; z *= mean(z) / mean(z * w)` per chunk, and long prompts are chunks side by side.
final class A1111PromptEncodingTests: XCTestCase {
    static let model: StableDiffusionModel = {
        try! StableDiffusionModel(folder: Golden.fixturesDirectory.appendingPathComponent("models/sd1"))
    }()

    private func plain(_ prompt: String, layer: CLIPTextLayerSelection = .stableDiffusion(clipSkip: nil)) throws -> Tensor {
        let model = Self.model
        return try model.textEncoder.encode([model.tokenizer.encode(prompt)], layer: layer).hiddenStates
    }

    private func a1111(_ prompt: String, layer: CLIPTextLayerSelection = .stableDiffusion(clipSkip: nil)) throws -> Tensor {
        try A1111TextEncoding(tokenizer: Self.model.tokenizer, encoder: Self.model.textEncoder, layer: layer).encode(prompt)
            .hiddenStates
    }

    func testUnweightedPromptEqualsPlainEncoding() throws {
        for prompt in ["a red circle on a blue square, small", "", "word"] {
            XCTAssertTrue(try a1111(prompt).isBitwiseEqual(to: try plain(prompt)), prompt)
        }
        let skip = CLIPTextLayerSelection.stableDiffusion(clipSkip: 1)
        XCTAssertTrue(try a1111("a red circle", layer: skip).isBitwiseEqual(to: try plain("a red circle", layer: skip)))
        // Brackets whose weights multiply back to exactly 1 are no emphasis either.
        XCTAssertTrue(try a1111("a (red:1.0) circle").isBitwiseEqual(to: try plain("a red circle")))
    }

    func testWeightedTokenFollowsTheFormula() throws {
        let z = try plain("a red circle")
        let weighted = try a1111("a (red:1.5) circle")
        XCTAssertEqual(weighted.shape, z.shape)
        let (tokens, width) = (z.shape[1], z.shape[2])
        var w = [Float](repeating: 1, count: tokens)
        w[2] = 1.5  // BOS, "a", "red"
        let zw = z.scalars.enumerated().map { $0.element * w[$0.offset / width] }
        let ratio =
            Float(z.scalars.map(Double.init).reduce(0, +) / Double(z.count))
            / Float(zw.map(Double.init).reduce(0, +) / Double(z.count))
        XCTAssertNotEqual(ratio, 1)
        let expected = Tensor(shape: z.shape, values: zw.map { $0 * ratio })
        XCTAssertLessThan(weighted.maxAbsDifference(expected), 1e-6)
        // Every other token is the plain one times the common ratio; the weighted one also times 1.5.
        for t in [0, 1, 3, 40] {
            XCTAssertEqual(weighted[0, t, 5], z[0, t, 5] * ratio, accuracy: 1e-6)
        }
        XCTAssertEqual(weighted[0, 2, 5], z[0, 2, 5] * 1.5 * ratio, accuracy: 1e-6)
        // The chunk keeps its mean.
        XCTAssertEqual(weighted.mean, z.mean, accuracy: 1e-6)
    }

    func testLongPromptsAreChunksSideBySide() throws {
        let words = Array(repeating: "a", count: 80)
        let encoded = try a1111(words.joined(separator: " "))
        XCTAssertEqual(encoded.shape, [1, 154, Self.model.textEncoder.configuration.hiddenSize])
        let first = try plain(words.prefix(75).joined(separator: " "))
        let second = try plain(words.prefix(5).joined(separator: " "))
        // Not bit-identical: the chunks run as one batch, and OpenBLAS's AVX2 (Haswell) kernels round a GEMM of
        // 2 x 77 rows differently from one of 77 (1.2e-6 with SWIFTDIFFUSION_ISA=avx2).
        XCTAssertLessThan(slice(encoded, axis: 1, 0..<77).maxAbsDifference(first), 2e-6)
        XCTAssertLessThan(slice(encoded, axis: 1, 77..<154).maxAbsDifference(second), 2e-6)
        // BREAK: two chunks even for a short prompt.
        let broken = try a1111("a red BREAK circle")
        XCTAssertEqual(broken.shape[1], 154)
        XCTAssertLessThan(slice(broken, axis: 1, 77..<154).maxAbsDifference(try plain("circle")), 2e-6)
    }

    func testConditioningPadsTheShorterPromptWithEmptyChunks() throws {
        let pipeline = DiffusionPipeline(model: Self.model)
        var request = GenerationRequest(
            prompt: Array(repeating: "a", count: 80).joined(separator: " "), negativePrompt: "blurry", width: 32, height: 32,
            steps: 2,
            sampler: .euler, seed: 1, decode: false)
        request.promptSyntax = .a1111
        // Runs: the 2-chunk positive and the 1-chunk negative (padded with the empty prompt's chunk) form one batch.
        let result = try pipeline.generate(request)
        XCTAssertEqual(result.latents.shape, [1, 4, 16, 16])
        XCTAssertFalse(result.latents.scalars.contains { !$0.isFinite })
        // An invalid emphasis weight is a request error.
        request.prompt = "(a:1.2.3)"
        XCTAssertThrowsError(try pipeline.generate(request))
    }
}
