import ParityTesting
import XCTest

@testable import Samplers

/// `EulerAncestralDiscreteScheduler` against diffusers (its per-step noise comes from the
/// generator that drew the latents),
/// on the goldens of tools/parity/make_sampler_goldens.py.
final class EulerAncestralDiscreteSchedulerTests: XCTestCase {
    /// SD 1.5's published scheduler config (scaled_linear, steps_offset 1, no timestep_spacing:
    /// the class default applies).
    func testSD1() throws {
        try SchedulerGoldenCase("euler_a_sd1").checkAll()
    }

    /// SD 1.5 with leading spacing.
    func testSD1Leading() throws {
        try SchedulerGoldenCase("euler_a_sd1_leading").checkAll()
    }

    /// SD 1.5 with trailing spacing.
    func testSD1Trailing() throws {
        try SchedulerGoldenCase("euler_a_sd1_trailing").checkAll()
    }

    /// SD 2.1's published config (v-prediction).
    func testSD2VPrediction() throws {
        try SchedulerGoldenCase("euler_a_sd2v").checkAll()
    }

    /// The loop in PyTorch's NCHW layout gives the same numbers as in the engine's NHWC layout.
    func testNCHWLayout() throws {
        try SchedulerGoldenCase("euler_a_sd1", layout: .nchw).checkTextToImage()
    }
}
