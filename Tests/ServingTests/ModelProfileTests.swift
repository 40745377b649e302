import Foundation
import ParityTesting
import Samplers
import XCTest

@testable import Serving

/// Model profiles: native sizes, size multiples, text encoder depth and recommended samplers, read from config
/// files alone, for diffusers folders and single-file checkpoints; and the engine's submission checks built on them.
final class ModelProfileTests: XCTestCase {
    static let fixtures = Golden.fixturesDirectory.appendingPathComponent("models")
    static let embedded = Golden.fixturesDirectory.deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("models/shapes-sd")

    func testTinyFixtureFolders() throws {
        // The tiny models: UNet sample_size 8, a two-block VAE (scale 2), two text-encoder layers.
        let sd1 = try ModelProfile.read(path: Self.fixtures.appendingPathComponent("sd1").path)
        XCTAssertEqual(sd1.family, .sd1)
        XCTAssertEqual([sd1.width, sd1.height, sd1.sizeMultiple, sd1.textEncoderLayers, sd1.maximumClipSkip], [16, 16, 2, 2, 2])
        XCTAssertEqual(sd1.sampler, "pndm")  // its scheduler config is PNDMScheduler, as SD 1.5's
        let sd2 = try ModelProfile.read(path: Self.fixtures.appendingPathComponent("sd2").path)
        XCTAssertEqual(sd2.family, .sd2)
        XCTAssertEqual(sd2.sampler, "ddim")
        XCTAssertEqual(sd2.predictionType, "v_prediction")
        let sdxl = try ModelProfile.read(path: Self.fixtures.appendingPathComponent("sdxl").path)
        XCTAssertEqual(sdxl.family, .sdxl)
        XCTAssertEqual(sdxl.sampler, "euler")
        XCTAssertEqual(sdxl.maximumClipSkip, 1, "SDXL reads the penultimate layer already")
    }

    func testSingleFileCheckpointsUseTheirEmbeddedOrStandardConfigs() throws {
        let sd1 = try ModelProfile.read(path: Self.fixtures.appendingPathComponent("sd1.safetensors").path)
        let folder = try ModelProfile.read(path: Self.fixtures.appendingPathComponent("sd1").path)
        XCTAssertEqual(sd1.family, .sd1)
        XCTAssertEqual([sd1.width, sd1.sizeMultiple, sd1.textEncoderLayers], [folder.width, folder.sizeMultiple, folder.textEncoderLayers])
        let sdxl = try ModelProfile.read(path: Self.fixtures.appendingPathComponent("sdxl.safetensors").path)
        XCTAssertEqual(sdxl.family, .sdxl)
    }

    func testEmbeddedModelRecommendsWhatItsEvaluationUsed() throws {
        let profile = try ModelProfile.read(path: Self.embedded.path)
        XCTAssertEqual([profile.width, profile.height, profile.sizeMultiple, profile.textEncoderLayers], [128, 128, 8, 3])
        // tools/embedded/eval_sets: DPMSolverMultistepScheduler, 20 steps, guidance 7.
        XCTAssertEqual(profile.sampler, SamplerKind.dpmPlusPlus2M.name)
        XCTAssertEqual(profile.steps, 20)
        XCTAssertEqual(profile.cfg, 7)
    }

    func testRecommendationFollowsTheSchedulerClass() {
        func sampler(_ config: [String: Any]) -> String { ModelProfile.recommendation(config).0.name }
        XCTAssertEqual(sampler(["_class_name": "DPMSolverMultistepScheduler", "use_karras_sigmas": true]), "dpmpp_2m_karras")
        XCTAssertEqual(sampler(["_class_name": "EulerAncestralDiscreteScheduler"]), "euler_a")
        XCTAssertEqual(sampler(["_class_name": "UniPCMultistepScheduler"]), "dpmpp_2m")
        let lcm = ModelProfile.recommendation(["_class_name": "LCMScheduler"])
        XCTAssertEqual([lcm.0.name, "\(lcm.1)", "\(lcm.2)"], ["lcm", "4", "1.5"])
    }

    func testMissingModelIsAnError() {
        XCTAssertThrowsError(try ModelProfile.read(path: "/nonexistent/model"))
        XCTAssertThrowsError(try ServingFixtures.repository().profile("no-such-model")) { error in
            XCTAssertEqual(error as? EngineError, .notFound("unknown model 'no-such-model'; see /v1/models"))
        }
    }

    /// diffusers' `DDIMScheduler.from_config(config)`: keys the config lacks take DDIM's own defaults, so a PNDM
    /// config without `clip_sample` gives DDIM with clipping (diffusers' default), one that says false gives none.
    func testSwitchingToDDIMKeepsFromConfigDefaults() throws {
        var pndm = try SchedulerConfiguration(
            contentsOf: Self.fixtures.appendingPathComponent("sd1/scheduler/scheduler_config.json"))
        XCTAssertNil(pndm.clipSample)
        let ddim = try SamplerKind.ddim.makeScheduler(configuration: pndm)
        XCTAssertEqual((ddim as? DDIMScheduler)?.configuration.clipSample, true)
        pndm.clipSample = false
        let unclipped = try SamplerKind.ddim.makeScheduler(configuration: pndm)
        XCTAssertEqual((unclipped as? DDIMScheduler)?.configuration.clipSample, false)
    }
}
