import Compute
import Foundation
import Models
import ParityTesting
import Weights
import XCTest

/// Whole components against diffusers (tools/parity/make_component_goldens.py), fp32.
final class ComponentParityTests: XCTestCase {
    private func configData(_ golden: Golden) throws -> Data { Data(try golden.string("config").utf8) }

    private func runUNet(_ name: String, tolerance: Float, residuals: Bool = false) throws {
        let golden = try Golden("components/\(name)")
        let unet = try UNet2DConditionModel(configData: configData(golden), weights: golden.params)
        var conditioning = UNetConditioning(context: try golden.input("encoder_hidden_states"))
        if golden.file.contains("input.text_embeds") {
            conditioning.textEmbeds = try golden.input("text_embeds")
            conditioning.timeIds = try golden.input("time_ids")
        }
        if golden.file.contains("input.timestep_cond") { conditioning.timestepCondition = try golden.input("timestep_cond") }
        let sample = try golden.image("sample")
        let timesteps = try golden.input("timestep").scalars
        let output = try unet(sample, timesteps: timesteps, conditioning: conditioning)
        assertClose(output, try golden.expectedImage("sample"), tolerance: tolerance, name)

        if residuals {
            let down = try (0..<unet.skipCount).map { try golden.image("down_residual.\($0)") }
            let control = ControlResiduals(down: down, mid: try golden.image("mid_residual"))
            // The split forward (down+mid, then up with residuals) is what the ControlNet service overlaps.
            let path = try unet.downAndMid(sample, timesteps: timesteps, conditioning: conditioning)
            let withResiduals = try unet.up(path, conditioning: conditioning, control: control)
            assertClose(withResiduals, try golden.expectedImage("sample_with_residuals"), tolerance: tolerance, "\(name) + residuals")
        }
    }

    func testUNetSD1() throws { try runUNet("unet_sd1", tolerance: 5e-5, residuals: true) }
    func testUNetSD2LinearProjection() throws { try runUNet("unet_sd2", tolerance: 5e-5) }
    func testUNetSDXLAddedConditioning() throws { try runUNet("unet_sdxl", tolerance: 5e-5, residuals: true) }
    func testUNetLCMTimestepCondition() throws { try runUNet("unet_lcm", tolerance: 5e-5) }
    func testUNetOddLatentSize() throws { try runUNet("unet_odd_size", tolerance: 5e-5) }

    func testUNetRejectsWrongInputs() throws {
        let golden = try Golden("components/unet_sdxl")
        let unet = try UNet2DConditionModel(configData: configData(golden), weights: golden.params)
        let conditioning = UNetConditioning(context: try golden.input("encoder_hidden_states"))
        XCTAssertThrowsError(try unet(try golden.image("sample"), timesteps: [1], conditioning: conditioning)) { error in
            XCTAssertTrue("\(error)".contains("pooled text embeddings"), "\(error)")
        }
        XCTAssertThrowsError(try unet(Tensor.zeros([2, 8, 8, 3]), timesteps: [1], conditioning: conditioning))
    }

    func testUNetReportsMissingParameter() throws {
        let golden = try Golden("components/unet_sd1")
        var tensors: [String: Tensor] = [:]
        for name in golden.params.names where name != "mid_block.attentions.0.proj_in.weight" {
            tensors[name] = try golden.params.tensor(name)
        }
        XCTAssertThrowsError(try UNet2DConditionModel(configData: configData(golden), weights: InMemoryWeights(tensors))) { error in
            XCTAssertTrue("\(error)".contains("mid_block.attentions.0.proj_in.weight"), "\(error)")
        }
    }

    func testVAEEncodeDecode() throws {
        let golden = try Golden("components/vae_kl")
        let vae = try AutoencoderKL(configData: configData(golden), weights: golden.params)
        let (mean, logVariance) = try vae.encode(try golden.image("image"))
        assertClose(mean, try golden.expectedImage("mean"), tolerance: 3e-5, "vae encode mean")
        assertClose(logVariance, try golden.expectedImage("logvar"), tolerance: 3e-5, "vae encode logvar")
        assertClose(try vae.decode(try golden.image("latents")), try golden.expectedImage("decoded"), tolerance: 3e-5, "vae decode")
        XCTAssertEqual(vae.downscaleFactor, 4)

        let decoderOnly = try AutoencoderKL(configData: configData(golden), weights: golden.params, decoderOnly: true)
        XCTAssertThrowsError(try decoderOnly.encode(try golden.image("image")))
    }

    func testTinyAutoencoderDecode() throws {
        let golden = try Golden("components/taesd")
        let taesd = try TinyAutoencoderDecoder(configData: configData(golden), weights: golden.params)
        assertClose(try taesd.decode(try golden.image("latents")), try golden.expectedImage("decoded"), tolerance: 3e-5, "taesd decode")
    }
}
