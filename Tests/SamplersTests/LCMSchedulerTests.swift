import ParityTesting
import XCTest

@testable import Samplers

/// `LCMScheduler` against diffusers (every step but the last draws noise from the generator
/// that drew the latents),
/// on the goldens of tools/parity/make_sampler_goldens.py.
final class LCMSchedulerTests: XCTestCase {
    /// SD 1.5's published scheduler config (scaled_linear, steps_offset 1, no timestep_spacing:
    /// the class default applies).
    func testSD1() throws {
        try SchedulerGoldenCase("lcm_sd1").checkAll()
    }

    /// SD 2.1's published config (v-prediction).
    func testSD2VPrediction() throws {
        try SchedulerGoldenCase("lcm_sd2v").checkAll()
    }
}
