import Adapters
import Compute
import Foundation
import Models
import ParityTesting
import Pipelines
import Samplers
import Weights
import XCTest

/// bf16 models (linear and conv weights stored as bf16, GEMM inputs rounded to bf16, fp32 accumulation) on the
/// tiny parity fixtures: final latents within a bound of diffusers' fp32 goldens, LoRAs applied beside the bf16
/// layers, weights half the bytes. Runs on every processor (oneDNN emulates bf16 products where the processor
/// lacks bf16 instructions; see BF16Tests).
///
/// Tolerance: one bf16 rounding of each GEMM input is a relative error of up to 2^-9 (0.2 %); through the
/// tiny UNet (about 20 GEMMs deep) and 10 steps it reaches the final latents as a few 1e-3 of their unit scale
/// (measured: `swiftdiffusion bench precision`, docs/benchmarks.md). 3e-2 is 10x the largest measured error and
/// still 30x below what a wrong path would give (a dropped bias or a transposed weight moves latents by O(1)).
final class BF16PipelineTests: XCTestCase {
    static let tolerance: Float = 3e-2

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
            assertClose(result.latents, expected, tolerance: Self.tolerance, "\(name) bf16 vs diffusers fp32")
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
            assertClose(result.latents, try golden.output("latents"), tolerance: Self.tolerance, "bf16 LoRA \(mode)")
        }
        XCTAssertEqual(try bf16.generate(request).latents.scalars, base.latents.scalars, "the LoRA was not removed")
    }
}
