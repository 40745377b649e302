import Foundation
import Imaging
import XCTest

@testable import Serving

/// The engine with a ControlNet worker (`serve --controlnet-threads 1`): jobs with ControlNets run their
/// ControlNets on the shared worker beside the UNet and give the same picture as the sequential engine (within
/// one level of 255: the ops split over different thread counts round differently).
final class ControlNetServiceEngineTests: XCTestCase {
    private func image(workerThreads: Int) async throws -> RGBImage {
        var configuration = EngineConfiguration()
        configuration.controlNetWorkerThreads = workerThreads
        let engine = ServingFixtures.engine(configuration: configuration)
        let running = RunningEngine(engine)
        var spec = ServingFixtures.spec("a red circle", steps: 4, seed: 21)
        spec.controls = [
            ControlSpec(model: "sd1-controlnet", image: try ServingFixtures.controlImage, weight: 0.9),
            ControlSpec(model: "sd1-controlnet-b", image: try ServingFixtures.controlImage, preprocessor: "invert", start: 0.25, end: 1),
        ]
        let job = try await engine.submit(spec)
        let finished = try await engine.waitUntilFinished(job.id)
        XCTAssertEqual(finished.status, .succeeded, finished.error ?? "")
        let outputs = try await engine.outputs(job.id)
        try await running.stop()
        return try ImageCodec.decode(outputs[0])
    }

    func testAControlNetWorkerGivesTheSequentialPicture() async throws {
        let sequential = try await image(workerThreads: 0)
        let service = try await image(workerThreads: 1)
        XCTAssertEqual([service.width, service.height], [sequential.width, sequential.height])
        let largest = zip(service.pixels, sequential.pixels).map { abs(Int($0) - Int($1)) }.max() ?? 0
        print("ControlNet worker vs sequential: largest pixel difference \(largest) of 255")
        XCTAssertLessThanOrEqual(largest, 1)
        // The ControlNets matter for this picture (the comparison is not vacuous).
        let engine = ServingFixtures.engine()
        let running = RunningEngine(engine)
        let plain = try await engine.submit(ServingFixtures.spec("a red circle", steps: 4, seed: 21))
        _ = try await engine.waitUntilFinished(plain.id)
        let plainImage = try ImageCodec.decode(try await engine.outputs(plain.id)[0])
        try await running.stop()
        XCTAssertGreaterThan(zip(plainImage.pixels, sequential.pixels).map { abs(Int($0) - Int($1)) }.max() ?? 0, 2)
    }
}
