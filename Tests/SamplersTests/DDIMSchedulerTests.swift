import ParityTesting
import XCTest

@testable import Samplers

/// `DDIMScheduler` (eta 0) against diffusers,
/// on the goldens of tools/parity/make_sampler_goldens.py.
final class DDIMSchedulerTests: XCTestCase {
    /// SD 1.5's published scheduler config (scaled_linear, steps_offset 1, no timestep_spacing:
    /// the class default applies).
    func testSD1() throws {
        try SchedulerGoldenCase("ddim_sd1").checkAll()
    }

    /// SD 1.5 with linspace spacing.
    func testSD1Linspace() throws {
        try SchedulerGoldenCase("ddim_sd1_linspace").checkAll()
    }

    /// SD 1.5 with trailing spacing.
    func testSD1Trailing() throws {
        try SchedulerGoldenCase("ddim_sd1_trailing").checkAll()
    }

    /// SD 2.1's published config (v-prediction).
    func testSD2VPrediction() throws {
        try SchedulerGoldenCase("ddim_sd2v").checkAll()
    }

    /// eta = 1 (DDPM-like): each step adds `std_dev_t * noise` drawn from the latents' generator.
    func testEtaOneDrawsNoise() throws {
        try SchedulerGoldenCase("ddim_eta1_sd1").checkAll()
    }

    /// Zero terminal SNR: rescaled betas (the last alpha product is exactly 0), trailing spacing, v-prediction.
    func testZeroTerminalSNR() throws {
        try SchedulerGoldenCase("ddim_sd2v_zsnr").checkAll()
    }
}
