import Compute
import Foundation
import XCTest

@testable import Samplers

/// Decoding `scheduler_config.json`, diffusers' defaults per class, and the errors for bad settings.
final class SchedulerConfigurationTests: XCTestCase {
    private let sd15 = """
        {
          "_class_name": "PNDMScheduler", "_diffusers_version": "0.6.0", "beta_end": 0.012,
          "beta_schedule": "scaled_linear", "beta_start": 0.00085, "num_train_timesteps": 1000,
          "set_alpha_to_one": false, "skip_prk_steps": true, "steps_offset": 1, "trained_betas": null,
          "clip_sample": false
        }
        """

    func testDecodesDiffusersJSON() throws {
        let config = try SchedulerConfiguration(jsonData: Data(sd15.utf8))
        XCTAssertEqual(config.className, "PNDMScheduler")
        XCTAssertEqual(config.betaSchedule, "scaled_linear")
        XCTAssertEqual(config.betaStart, 0.00085)
        XCTAssertEqual(config.stepsOffset, 1)
        XCTAssertNil(config.trainedBetas)
        XCTAssertNil(config.timestepSpacing)
        XCTAssertEqual(config.filling(EulerDiscreteScheduler.defaults).timestepSpacing, "linspace")
        XCTAssertEqual(config.filling(DDIMScheduler.defaults).timestepSpacing, "leading")
        XCTAssertEqual(config.filling(DDIMScheduler.defaults).betaStart, 0.00085)
    }

    /// diffusers writes `-Infinity` for lambda_min_clipped; Python's JSON accepts it, so must we.
    func testAcceptsPythonNonFiniteNumbers() throws {
        let text = #"{"lambda_min_clipped": -Infinity, "sigma_max": Infinity, "note": "-Infinity stays text"}"#
        let config = try SchedulerConfiguration(jsonData: Data(text.utf8))
        XCTAssertEqual(config.lambdaMinClipped, -.infinity)
        XCTAssertEqual(config.sigmaMax, .infinity)
        let roundTrip = try SchedulerConfiguration(jsonData: try config.jsonData())
        XCTAssertEqual(roundTrip, config)
    }

    /// Loaded directly (not through the model's class), each scheduler uses its own defaults.
    func testPerClassDefaults() throws {
        var euler = try EulerDiscreteScheduler(configuration: SchedulerConfiguration())
        try euler.setTimesteps(4)
        XCTAssertEqual(euler.timesteps, [999, 666, 333, 0])  // linspace
        var ddim = try DDIMScheduler(configuration: SchedulerConfiguration())
        try ddim.setTimesteps(4)
        XCTAssertEqual(ddim.timesteps, [750, 500, 250, 0])  // leading, no offset
    }

    func testInvalidSettingsThrowUsefulErrors() throws {
        var config = SchedulerConfiguration()
        config.betaSchedule = "cosine"
        XCTAssertThrowsError(try DDIMScheduler(configuration: config)) { error in
            XCTAssertTrue(
                "\(error)".contains(
                    "beta_schedule 'cosine' is not supported (use one of: linear, scaled_linear, squaredcos_cap_v2)"), "\(error)")
        }
        XCTAssertThrowsError(try SchedulerConfiguration(jsonData: Data("{".utf8)))
        config = SchedulerConfiguration()
        config.algorithmType = "sde-dpmsolver++"
        XCTAssertThrowsError(try DPMSolverMultistepScheduler(configuration: config)) { error in
            guard case SchedulerError.unsupported = error else { return XCTFail("\(error)") }
        }
        var ddim = try DDIMScheduler(configuration: SchedulerConfiguration())
        XCTAssertThrowsError(try ddim.setTimesteps(0))
        XCTAssertThrowsError(try ddim.setTimesteps(1001))
        XCTAssertThrowsError(try ddim.scaleModelInput(Tensor.zeros([1]), stepIndex: 0)) { error in
            XCTAssertEqual(error as? SchedulerError, .timestepsNotSet)
        }
        try ddim.setTimesteps(10)
        XCTAssertThrowsError(try ddim.setImg2ImgTimesteps(10, strength: 1.5))
        var noise = LatentNoise(generator: TorchGenerator(seed: 0))
        XCTAssertThrowsError(
            try ddim.step(
                modelOutput: Tensor.zeros([1, 2, 2, 4]), stepIndex: 10, sample: Tensor.zeros([1, 2, 2, 4]), noise: &noise)
        ) { error in
            XCTAssertEqual(error as? SchedulerError, .stepIndexOutOfRange(10, count: 10))
        }
        XCTAssertThrowsError(
            try ddim.step(
                modelOutput: Tensor.zeros([1, 2, 2, 4]), stepIndex: 0, sample: Tensor.zeros([1, 2, 4, 2]), noise: &noise))
    }

    /// img2img start index: `t_start = count - int(count * strength)`; strength 1 runs every step.
    func testImg2ImgStartIndex() throws {
        var euler = try EulerDiscreteScheduler(configuration: SchedulerConfiguration())
        XCTAssertEqual(try euler.setImg2ImgTimesteps(10, strength: 0.6), 4..<10)
        XCTAssertEqual(try euler.setImg2ImgTimesteps(10, strength: 1), 0..<10)
        XCTAssertEqual(try euler.setImg2ImgTimesteps(20, strength: 0.75), 5..<20)
        XCTAssertEqual(try euler.setImg2ImgTimesteps(10, strength: 0.05), 10..<10)  // nothing to do
        var pndm = try SamplerKind.pndm.makeScheduler(configuration: SchedulerConfiguration())
        XCTAssertEqual(try pndm.setImg2ImgTimesteps(10, strength: 0.6), 4..<11)  // PLMS has count + 1 timesteps
    }
}
