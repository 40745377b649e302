import Adapters
import Compute
import Foundation
import Models
import ParityTesting
import Pipelines
import Samplers
import Weights
import XCTest

/// bf16 models (linear and conv weights stored as bf16, GEMM inputs rounded to bf16 except on the fp32 Winograd
/// convolutions, fp32 accumulation) on the
/// tiny parity fixtures: final latents within a bound of diffusers' fp32 goldens, LoRAs applied beside the bf16
/// layers, weights half the bytes. Runs on every processor (oneDNN emulates bf16 products where the processor
/// lacks bf16 instructions; see BF16Tests).
///
/// Tolerance, relative to the largest final latent: one bf16 rounding of each GEMM input is a relative error of up to
/// 2^-9 (0.2 %) per product; the tiny random fixtures (untrained, so nothing damps it; latents reach 40 on SD 1.x)
/// carry it through every layer and step to final latents that differ from fp32 by 0.5-3 % of their largest value
/// (measured: `swiftdiffusion bench precision`, docs/benchmarks.md; SD 2.x v-prediction is the largest). 5 % bounds
/// that with margin and is still 20x below what a wrong path gives (a dropped bias, a transposed or unrounded-as-int
/// weight moves latents by their own size).
final class BF16PipelineTests: XCTestCase {
    static let relativeTolerance: Float = 5e-2

    private func assertWithinBF16Bound(_ actual: Tensor, _ expected: Tensor, _ label: String, file: StaticString = #filePath, line: UInt = #line) {
        let scale = expected.scalars.map(abs).max() ?? 1
        assertClose(actual, expected, tolerance: Self.relativeTolerance * scale, label + " (5 % of the largest latent, \(scale))", file: file, line: line)
    }

    private func pipeline(_ name: String, _ precision: ComputePrecision) throws -> DiffusionPipeline {
        DiffusionPipeline(model: try StableDiffusionModel(folder: PipelineParityTests.models.appendingPathComponent(name), precision: precision))
    }

    func testTextToImageMatchesFP32GoldensWithinBF16Tolerance() throws {
        for name in ["txt2img_sd1_dpmpp_2m", "txt2img_sd2_euler", "txt2img_sdxl_euler"] {
            guard FileManager.default.fileExists(atPath: PipelineParityTests.pipelines.appendingPathComponent(name + ".safetensors").path) else {
                XCTFail("golden \(name) is missing")
                continue
            }
            let golden = try Golden("pipelines/\(name)")
            let (model, request, _) = try PipelineParityTests.request(golden)
            let bf16 = try pipeline(model, .bf16)
            XCTAssertEqual(bf16.model.precision, .bf16)
            let result = try bf16.generate(request)
            let expected = try golden.output("latents")
            assertWithinBF16Bound(result.latents, expected, "\(name) bf16 vs diffusers fp32")
            // It really ran in bf16: an fp32 run is within 1e-3 (PipelineParityTests), bf16 is measurably further.
            let difference = zip(result.latents.scalars, expected.scalars).map { abs($0 - $1) }.max() ?? 0
            XCTAssertGreaterThan(difference, 1e-5, "\(name): bf16 latents equal fp32 ones; the bf16 path did not run")
        }
    }

    func testLayersHoldHalfTheBytes() throws {
        let fp32 = try StableDiffusionModel(folder: PipelineParityTests.models.appendingPathComponent("sd1"), precision: .fp32)
        let bf16 = try StableDiffusionModel(folder: PipelineParityTests.models.appendingPathComponent("sd1"), precision: .bf16)
        func bytes(_ model: StableDiffusionModel) -> Int {
            [model.unet.registry, model.textEncoder.registry, model.vae.registry].reduce(0) { total, registry in
                total + registry.linears.values.reduce(0) { $0 + $1.storedWeight.byteCount }
                    + registry.convs.values.reduce(0) { $0 + $1.storedWeight.byteCount }
            }
        }
        XCTAssertGreaterThan(bytes(fp32), 0)
        XCTAssertEqual(bytes(bf16) * 2, bytes(fp32))
        XCTAssertTrue(bf16.unet.registry.linears.values.allSatisfy { $0.storedWeight.precision == .bf16 })
        XCTAssertTrue(bf16.vae.registry.convs.values.allSatisfy { $0.storedWeight.precision == .bf16 })
    }

    /// A merged LoRA cannot update bf16 weights in place: it runs beside the layers (fp32) and the latents stay within
    /// the bf16 bound of the fp32 golden; after the request the model is its base again.
    func testLoRAOnBF16ModelRunsBesideTheLayers() throws {
        let golden = try Golden("pipelines/lora_sd1")
        let (model, request, _) = try PipelineParityTests.request(golden)
        let bf16 = try pipeline(model, .bf16)
        let lora = try LoRAKeyMap.resolve(
            try LoRANetwork.load(contentsOf: PipelineParityTests.models.appendingPathComponent("sd1-lora.safetensors")),
            targets: bf16.model.loraTargets)
        let base = try bf16.generate(request)
        for mode in [DiffusionPipeline.LoRAMode.merged, .runtime] {
            let result = try bf16.generate(request, loras: [LoRAApplication(lora, weight: 0.8)], loraMode: mode)
            assertWithinBF16Bound(result.latents, try golden.output("latents"), "bf16 LoRA \(mode)")
        }
        XCTAssertEqual(try bf16.generate(request).latents.scalars, base.latents.scalars, "the LoRA was not removed")
    }
}
