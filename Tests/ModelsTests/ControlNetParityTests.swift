import Compute
import Foundation
import Models
import ParityTesting
import Weights
import XCTest

/// `ControlNetModel` residuals against diffusers (tools/parity/make_component_goldens.py), fp32.
final class ControlNetParityTests: XCTestCase {
    private func check(_ name: String) throws {
        let golden = try Golden("components/\(name)")
        let controlnet = try ControlNetModel(configData: Data(try golden.string("config").utf8), weights: golden.params)
        var conditioning = UNetConditioning(context: try golden.input("encoder_hidden_states"))
        if golden.file.contains("input.text_embeds") {
            conditioning.textEmbeds = try golden.input("text_embeds")
            conditioning.timeIds = try golden.input("time_ids")
        }
        let sample = try golden.image("sample"), image = try golden.image("controlnet_cond")
        let timesteps = try golden.input("timestep").scalars
        for (prefix, scaling) in [("", ControlNetModel.Scaling()), ("guess_", ControlNetModel.Scaling(conditioningScale: 0.8, guessMode: true))] {
            let residuals = try controlnet(sample, timesteps: timesteps, conditioning: conditioning, controlImage: image, scaling: scaling)
            XCTAssertTrue(golden.file.contains("output.\(prefix)down.\(residuals.down.count - 1)"))
            XCTAssertFalse(golden.file.contains("output.\(prefix)down.\(residuals.down.count)"))
            for (i, residual) in residuals.down.enumerated() {
                assertClose(residual, try golden.expectedImage("\(prefix)down.\(i)"), tolerance: 5e-5, "\(name) \(prefix)down.\(i)")
            }
            assertClose(residuals.mid, try golden.expectedImage("\(prefix)mid"), tolerance: 5e-5, "\(name) \(prefix)mid")
        }
    }

    func testControlNetSD1() throws { try check("controlnet_sd1") }
    func testControlNetSDXL() throws { try check("controlnet_sdxl") }

    func testWrongControlImageIsAnError() throws {
        let golden = try Golden("components/controlnet_sd1")
        let controlnet = try ControlNetModel(configData: Data(try golden.string("config").utf8), weights: golden.params)
        let conditioning = UNetConditioning(context: try golden.input("encoder_hidden_states"))
        // 32x32 control image for 8x8 latents embeds to 4x4: the model must refuse, not crash.
        XCTAssertThrowsError(
            try controlnet(try golden.image("sample"), timesteps: [1], conditioning: conditioning, controlImage: Tensor.zeros([2, 32, 32, 3])))
    }
}
