import ParityTesting
import XCTest

@testable import Samplers

/// `DPMSolverMultistepScheduler` with Karras sigmas (DPM++ 2M Karras) against diffusers,
/// on the goldens of tools/parity/make_sampler_goldens.py.
final class DPMSolverMultistepKarrasTests: XCTestCase {
    /// SD 1.5's published scheduler config (scaled_linear, steps_offset 1, no timestep_spacing:
    /// the class default applies).
    func testSD1() throws {
        try SchedulerGoldenCase("dpmpp_2m_karras_sd1").checkAll()
    }

    /// SD 2.1's published config (v-prediction).
    func testSD2VPrediction() throws {
        try SchedulerGoldenCase("dpmpp_2m_karras_sd2v").checkAll()
    }
}
