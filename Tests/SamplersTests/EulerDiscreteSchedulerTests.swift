import ParityTesting
import XCTest

@testable import Samplers

/// `EulerDiscreteScheduler` against diffusers,
/// on the goldens of tools/parity/make_sampler_goldens.py.
final class EulerDiscreteSchedulerTests: XCTestCase {
    /// SD 1.5's published scheduler config (scaled_linear, steps_offset 1, no timestep_spacing:
    /// the class default applies).
    func testSD1() throws {
        try SchedulerGoldenCase("euler_sd1").checkAll()
    }

    /// SD 1.5 with leading spacing.
    func testSD1Leading() throws {
        try SchedulerGoldenCase("euler_sd1_leading").checkAll()
    }

    /// SD 1.5 with trailing spacing.
    func testSD1Trailing() throws {
        try SchedulerGoldenCase("euler_sd1_trailing").checkAll()
    }

    /// SD 2.1's published config (v-prediction).
    func testSD2VPrediction() throws {
        try SchedulerGoldenCase("euler_sd2v").checkAll()
    }

    /// Karras sigmas on a zero-terminal-SNR schedule (rescaled betas, trailing spacing, v-prediction,
    /// sigma_min as the final sigma): fractional timesteps and a first sigma of 4096.
    func testKarrasZeroTerminalSNR() throws {
        try SchedulerGoldenCase("euler_karras_sd2v_zsnr").checkAll()
    }
}
