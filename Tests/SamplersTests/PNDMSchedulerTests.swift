import ParityTesting
import XCTest

@testable import Samplers

/// `PNDMScheduler` (PLMS, skip_prk_steps) against diffusers,
/// on the goldens of tools/parity/make_sampler_goldens.py.
final class PNDMSchedulerTests: XCTestCase {
    /// SD 1.5's published scheduler config (scaled_linear, steps_offset 1, no timestep_spacing:
    /// the class default applies).
    func testSD1() throws {
        try SchedulerGoldenCase("pndm_sd1").checkAll()
    }

    /// SD 1.5 with linspace spacing.
    func testSD1Linspace() throws {
        try SchedulerGoldenCase("pndm_sd1_linspace").checkAll()
    }

    /// SD 1.5 with trailing spacing.
    func testSD1Trailing() throws {
        try SchedulerGoldenCase("pndm_sd1_trailing").checkAll()
    }

    /// SD 2.1's published config (v-prediction).
    func testSD2VPrediction() throws {
        try SchedulerGoldenCase("pndm_sd2v").checkAll()
    }
}
