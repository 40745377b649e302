import Compute
import Imaging
import Models
import ParityTesting
@testable import Pipelines
import Samplers
import Weights
import XCTest

/// Latent parallelism (`DiffusionPipeline.BranchParallelism`): the two guidance branches as two batch-1 UNet calls
/// side by side must give the batch-2 call's result up to float rounding, with ControlNet residuals, SDXL's extra
/// conditioning and a batch of several images; a different guidance scale must not (the branches are combined).
final class LatentParallelTests: XCTestCase {
    static let models = Golden.fixturesDirectory.appendingPathComponent("models")
    static let tolerance: Float = 1e-4

    private func assertModesAgree(_ folder: String, _ request: GenerationRequest, file: StaticString = #filePath, line: UInt = #line) throws {
        let pipeline = DiffusionPipeline(model: try StableDiffusionModel(folder: Self.models.appendingPathComponent(folder)))
        let pool = ComputePool(threadCount: 2)
        let latents = try DiffusionPipeline.BranchParallelism.allCases.map { mode in
            pipeline.branchParallelism = mode
            return try ComputePool.run(on: pool) { try pipeline.generate(request).latents }
        }
        XCTAssertLessThan(latents[1].maxAbsDifference(latents[2]), Self.tolerance, "on vs off", file: file, line: line)
        XCTAssertLessThan(latents[0].maxAbsDifference(latents[2]), Self.tolerance, "automatic vs off", file: file, line: line)
        var other = request
        other.guidanceScale += 2
        pipeline.branchParallelism = .on
        let changed = try ComputePool.run(on: pool) { try pipeline.generate(other).latents }
        XCTAssertGreaterThan(changed.maxAbsDifference(latents[1]), 1e-3, "guidance must still matter", file: file, line: line)
    }

    func testSD1BatchOfTwo() throws {
        var request = GenerationRequest(
            prompt: "a red circle", negativePrompt: "blue", width: 32, height: 32, steps: 3, sampler: .eulerAncestral, seed: 5,
            decode: false)
        request.count = 2
        try assertModesAgree("sd1", request)
    }

    func testSD1WithControlNet() throws {
        let folder = try ComponentFolder(Self.models.appendingPathComponent("sd1-controlnet"))
        let controlnet = try ControlNetModel(configData: try folder.configData, weights: try folder.weights())
        var pixels = [UInt8](repeating: 0, count: 32 * 32 * 3)
        for i in stride(from: 0, to: pixels.count, by: 7) { pixels[i] = 255 }
        let image = RGBImage(width: 32, height: 32, pixels: pixels)
        var request = GenerationRequest(
            prompt: "a red circle", width: 32, height: 32, steps: 3, sampler: .dpmPlusPlus2M, seed: 9, decode: false)
        request.controls = [ControlInput(model: controlnet, image: image, scale: 0.8, start: 0, end: 1)]
        try assertModesAgree("sd1", request)
    }

    /// `.automatic` runs the branches side by side only on a two-thread pool, and only where that pays: a UNet whose
    /// weights are at most `automaticWeightLimit` bytes, or latents of at least `automaticLatentPositions` positions (SD
    /// 1.5's 3.4 GB are read once per step by the batched call, twice side by side).
    func testAutomaticSplitsOnTwoThreadsWhereItPays() throws {
        let limit = LatentParallelism.automaticWeightLimit, positions = LatentParallelism.automaticLatentPositions
        XCTAssertTrue(LatentParallelism.pays(weightBytes: 13 << 20, latentPositions: 16 * 16), "the embedded model")
        XCTAssertTrue(LatentParallelism.pays(weightBytes: limit, latentPositions: 1), "the limit is inclusive")
        XCTAssertFalse(LatentParallelism.pays(weightBytes: 3_400 << 20, latentPositions: 32 * 32), "SD 1.5 at 256x256")
        XCTAssertFalse(LatentParallelism.pays(weightBytes: limit + 1, latentPositions: positions - 1))
        XCTAssertTrue(LatentParallelism.pays(weightBytes: 3_400 << 20, latentPositions: positions), "SD 1.5 from 384x384")
        XCTAssertTrue(LatentParallelism.pays(weightBytes: 3_400 << 20, latentPositions: 64 * 64), "SD 1.5 at 512x512")

        let unet = try StableDiffusionModel(folder: Self.models.appendingPathComponent("sd1")).unet
        XCTAssertLessThanOrEqual(unet.registry.parameterBytes, limit, "the fixture is a small UNet")
        XCTAssertGreaterThan(unet.registry.parameterBytes, 0)
        let two = ComputePool(threadCount: 2), one = ComputePool(threadCount: 1), four = ComputePool(threadCount: 4)
        defer { [two, one, four].forEach { $0.shutDown() } }
        func splits(_ mode: DiffusionPipeline.BranchParallelism, _ pool: ComputePool, guided: Bool = true) -> Bool {
            LatentParallelism(unet: unet, weightBytes: unet.registry.parameterBytes, mode: mode, guided: guided, latentPositions: 4 * 4)
                .splits(on: pool)
        }
        XCTAssertTrue(splits(.automatic, two))
        XCTAssertFalse(splits(.automatic, one))
        XCTAssertFalse(splits(.automatic, four))
        XCTAssertFalse(splits(.automatic, two, guided: false))
        XCTAssertTrue(splits(.on, two))
        XCTAssertTrue(splits(.on, four))
        XCTAssertFalse(splits(.off, two))
    }

    func testSDXL() throws {
        try assertModesAgree(
            "sdxl",
            GenerationRequest(prompt: "a blue square", negativePrompt: "red", width: 32, height: 32, steps: 2, sampler: .euler, seed: 3, decode: false))
    }
}
