import ParityTesting
import XCTest

@testable import Samplers

/// `DPMSolverMultistepScheduler` (DPM++ 2M: dpmsolver++, order 2, midpoint) against diffusers,
/// on the goldens of tools/parity/make_sampler_goldens.py.
final class DPMSolverMultistepSchedulerTests: XCTestCase {
    /// SD 1.5's published scheduler config (scaled_linear, steps_offset 1, no timestep_spacing:
    /// the class default applies).
    func testSD1() throws {
        try SchedulerGoldenCase("dpmpp_2m_sd1").checkAll()
    }

    /// SD 1.5 with leading spacing.
    func testSD1Leading() throws {
        try SchedulerGoldenCase("dpmpp_2m_sd1_leading").checkAll()
    }

    /// SD 1.5 with trailing spacing.
    func testSD1Trailing() throws {
        try SchedulerGoldenCase("dpmpp_2m_sd1_trailing").checkAll()
    }

    /// SD 2.1's published config (v-prediction).
    func testSD2VPrediction() throws {
        try SchedulerGoldenCase("dpmpp_2m_sd2v").checkAll()
    }

    /// Settings no sampler name selects: order 3 with the Heun update, the cosine schedule clipped at
    /// lambda -5.1, and sigma_min as the final sigma (so the last step is not forced to first order).
    /// The third-order coefficients ((e^-h - 1 + h) / h²) magnify the last-bit differences between torch's
    /// float32 log/exp (MKL) and libm's, hence 3e-5 instead of 1e-5.
    func testOrder3HeunCosine() throws {
        try SchedulerGoldenCase("dpm_order3_heun_sd1_cosine", tolerance: 3e-5).checkAll()
    }
}
