import Compute
import Imaging
import Models
import ParityTesting
import Pipelines
import Weights
import XCTest

/// TAESD as the pipeline's fast decoder (`DiffusionPipeline.tinyDecoder`, `generate --taesd`): the images are the
/// TAESD decode of the final latents (the decoder itself has a parity test against diffusers' `AutoencoderTiny`,
/// ComponentParityTests), not the VAE's; the latents are unchanged; a TAESD that does not fit the model is refused.
final class TinyDecoderPipelineTests: XCTestCase {
    static let model = Golden.fixturesDirectory.appendingPathComponent("models/sd1")

    /// A TAESD shaped for the tiny SD 1.x model (4 latent channels, x2), random weights.
    private func tinyTAESD(blocks: Int) throws -> TinyAutoencoderDecoder {
        let config: [String: Any] = [
            "decoder_block_out_channels": Array(repeating: 8, count: blocks), "num_decoder_blocks": Array(repeating: 1, count: blocks),
            "latent_channels": 4,
        ]
        return try TinyAutoencoderDecoder(configData: try JSONSerialization.data(withJSONObject: config), weights: RandomWeights(seed: 3))
    }

    func testImagesComeFromTAESDAndLatentsAreUnchanged() throws {
        let pipeline = DiffusionPipeline(model: try StableDiffusionModel(folder: Self.model))
        let taesd = try tinyTAESD(blocks: 2)
        XCTAssertEqual(taesd.upscaleFactor, pipeline.model.vaeScaleFactor)
        let request = GenerationRequest(prompt: "a red circle", width: 32, height: 32, steps: 2, sampler: .euler, seed: 4)
        let withVAE = try pipeline.generate(request)
        pipeline.tinyDecoder = taesd
        let withTAESD = try pipeline.generate(request)

        XCTAssertTrue(withTAESD.latents.isBitwiseEqual(to: withVAE.latents))
        let expected = RGBImage.images(fromSigned: try taesd.decode(nchwToNHWC(withTAESD.latents)))
        XCTAssertEqual(withTAESD.images.count, 1)
        XCTAssertEqual(withTAESD.images[0].width, 32)
        XCTAssertEqual(withTAESD.images[0].pixels, expected[0].pixels)
        XCTAssertNotEqual(withTAESD.images[0].pixels, withVAE.images[0].pixels)
    }

    func testATAESDThatDoesNotFitTheModelIsRefused() throws {
        let pipeline = DiffusionPipeline(model: try StableDiffusionModel(folder: Self.model))
        pipeline.tinyDecoder = try tinyTAESD(blocks: 4)  // x8: an SD 1.5 TAESD on a x2 model
        XCTAssertThrowsError(try pipeline.generate(GenerationRequest(prompt: "a", width: 32, height: 32, steps: 1, seed: 1))) { error in
            XCTAssertTrue("\(error)".contains("TAESD"), "\(error)")
        }
    }
}
