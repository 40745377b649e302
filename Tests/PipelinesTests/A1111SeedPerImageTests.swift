import Compute
import Imaging
import Models
import ParityTesting
import Pipelines
import Samplers
import XCTest

/// `GenerationRequest.seedPerImage` (AUTOMATIC1111's seeds): image `i` of a batch is a one-image request with seed
/// `seed + i`, for the initial latents, img2img's noise and an ancestral sampler's per-step noise.
///
/// The noise is the same, number for number; the batched UNet is not bit for bit the one-image UNet (convolution
/// panels and GEMM row tails fall differently with the batch size), so the latents agree to float rounding (~5e-5
/// here, against ~1 between different seeds).
final class A1111SeedPerImageTests: XCTestCase {
    static let pipeline: DiffusionPipeline = {
        DiffusionPipeline(model: try! StableDiffusionModel(folder: Golden.fixturesDirectory.appendingPathComponent("models/sd1")))
    }()
    static let batchTolerance: Float = 1e-3

    private func assertImagesMatchSingleRequests(
        _ base: GenerationRequest, file: StaticString = #filePath, line: UInt = #line
    ) throws {
        var batch = base
        batch.count = 3
        batch.seedPerImage = true
        let batched = try Self.pipeline.generate(batch).latents
        for i in 0..<batch.count {
            var single = base
            single.count = 1
            single.seed = base.seed + UInt64(i)
            let image = slice(batched, axis: 0, i..<(i + 1))
            let alone = try Self.pipeline.generate(single).latents
            XCTAssertLessThan(image.maxAbsDifference(alone), Self.batchTolerance, "image \(i)", file: file, line: line)
            // Another seed is another image altogether.
            single.seed += 100
            XCTAssertGreaterThan(image.maxAbsDifference(try Self.pipeline.generate(single).latents), 0.1, file: file, line: line)
        }
        // One generator for the batch (the default) is something else: image 1 continues image 0's stream.
        batch.seedPerImage = false
        let shared = try Self.pipeline.generate(batch).latents
        let second = slice(shared, axis: 0, 1..<2).maxAbsDifference(slice(batched, axis: 0, 1..<2))
        XCTAssertGreaterThan(second, 0.1, file: file, line: line)
    }

    func testTextToImageEachImageHasItsOwnSeed() throws {
        for sampler in [SamplerKind.euler, .eulerAncestral] {
            try assertImagesMatchSingleRequests(
                GenerationRequest(
                    prompt: "a red circle", negativePrompt: "blue", width: 32, height: 32, steps: 3, sampler: sampler, seed: 41,
                    decode: false))
        }
    }

    func testImageToImageEachImageHasItsOwnSeed() throws {
        let image = try ImageCodec.read(contentsOf: Golden.fixturesDirectory.appendingPathComponent("pipelines/init_image.png"))
        try assertImagesMatchSingleRequests(
            GenerationRequest(
                prompt: "a red circle", width: image.width, height: image.height, steps: 4, sampler: .eulerAncestral, seed: 7,
                initImage: image, strength: 0.6, decode: false))
    }

    func testOneImageIsTheSameInBothModes() throws {
        var request = GenerationRequest(
            prompt: "a", width: 32, height: 32, steps: 2, sampler: .eulerAncestral, seed: 3, decode: false)
        let shared = try Self.pipeline.generate(request).latents
        request.seedPerImage = true
        XCTAssertTrue(try Self.pipeline.generate(request).latents.isBitwiseEqual(to: shared))
    }
}
