import Compute
import Foundation
import ParityTesting
import XCTest

@testable import Samplers

/// Runs one `Tests/Fixtures/samplers/<sampler>_<config>.safetensors` golden (tools/parity/make_sampler_goldens.py)
/// against our scheduler: timesteps, sigmas, init_noise_sigma, a full denoising loop with the fake model,
/// img2img (start index, add_noise, loop), the timestep/sigma tables for odd step counts, and the
/// resolved configuration.
struct SchedulerGoldenCase {
    /// Tolerance on latents (max abs error): `tolerance` (1e-5 unless a case says otherwise) for values up to
    /// 10, relative 1e-6 beyond (Euler starts at sigma 14.6 times the noise, zero-SNR schedules at 4096).
    func sampleTolerance(for expected: Tensor) -> Float { max(tolerance, 1e-6 * expected.maxAbs) }
    /// Tolerance on sigmas (max abs error): about 2 float32 ulps of the largest sigma (2e-6 at SD's 14.6).
    /// torch's float32 sqrt (MKL VML) is not correctly rounded: about 1 value in 5 is 1 ulp off IEEE sqrt,
    /// which we use.
    static func sigmaTolerance(for expected: Tensor) -> Float { 2e-6 * max(1, expected.maxAbs / 16) }

    /// Timesteps must match exactly, except the fractional ones of Karras sigmas in Euler, which go
    /// through NumPy's float32 log (its own SIMD code, a few ulps from libm's logf that we use).
    var timestepTolerance: Float { customClass == "EulerDiscreteScheduler" ? 1e-3 : 0 }

    /// Compares latents from the loop with a golden (NCHW) tensor.
    func checkLatents(_ actual: Tensor, _ key: String, _ what: String, file: StaticString, line: UInt) throws {
        let expected = try expectedLatents(key)
        assertClose(actual, expected, tolerance: sampleTolerance(for: expected), label(what), file: file, line: line)
    }

    /// Compares a schedule (timesteps or sigmas) with a golden vector.
    func checkSchedule(_ actual: [Float], _ expected: Tensor, tolerance: Float, _ what: String, file: StaticString, line: UInt) {
        assertClose(
            Tensor(shape: [actual.count], values: actual), expected, tolerance: tolerance, label(what), file: file, line: line)
    }

    let golden: Golden
    let attrs: Attributes
    /// The sampler name under test, or nil when the golden builds a diffusers class directly (`customClass`)
    /// with settings no sampler name selects (order 3, Karras Euler, ...).
    let kind: SamplerKind?
    let customClass: String?
    let configuration: SchedulerConfiguration
    let seed: UInt64
    /// DDIM's eta (the pipeline argument); 0 for the other samplers.
    let eta: Float
    /// The layout latents are kept in during the loop (ancestral noise must land in the right places).
    let layout: LatentLayout

    /// The latent tolerance for values up to 10 (see `sampleTolerance(for:)`).
    let tolerance: Float

    init(_ name: String, layout: LatentLayout = .nhwc, tolerance: Float = 1e-5) throws {
        self.tolerance = tolerance
        golden = try Golden("samplers/\(name)")
        attrs = try Attributes(golden)
        let sampler = try attrs.string("sampler")
        if sampler.hasPrefix("custom:") {
            kind = nil
            customClass = String(sampler.dropFirst("custom:".count))
        } else {
            kind = try SamplerKind.named(sampler)
            customClass = nil
        }
        configuration = try SchedulerConfiguration(jsonData: Data(try golden.string("scheduler_config_json").utf8))
        seed = UInt64(try attrs.int("seed"))
        eta = try attrs.float("eta")
        self.layout = layout
    }

    /// The scheduler under test, as the pipeline would build it for this sampler.
    func makeScheduler() throws -> any Scheduler {
        let scheduler: any Scheduler
        if let kind {
            scheduler = try kind.makeScheduler(configuration: configuration)
        } else {
            switch customClass {
            case "EulerDiscreteScheduler": scheduler = try EulerDiscreteScheduler(configuration: configuration)
            case "DPMSolverMultistepScheduler": scheduler = try DPMSolverMultistepScheduler(configuration: configuration)
            default: throw SchedulerError.invalidConfiguration("golden names unknown class \(customClass ?? "")")
            }
        }
        guard eta != 0, var ddim = scheduler as? DDIMScheduler else { return scheduler }
        ddim.eta = eta
        return ddim
    }

    /// The model stand-in of the generator: `(sample * 0.8) + float32(float(t) / 1000 * 0.05)`.
    static func fakeModel(_ sample: Tensor, timestep: Float) -> Tensor {
        let shift = Float(Double(timestep) / 1000.0 * 0.05)
        return sample * Float(0.8) + shift
    }

    /// Golden latents (NCHW) in the loop's layout.
    func expectedLatents(_ key: String) throws -> Tensor {
        let nchw = try golden.output(key)
        return layout == .nchw ? nchw : nchwToNHWC(nchw)
    }

    var latentShape: [Int] {
        get throws {
            let nchw = try attrs.ints("latent_shape")
            return layout == .nchw ? nchw : [nchw[0], nchw[2], nchw[3], nchw[1]]
        }
    }

    func label(_ what: String) -> String { "\(golden.name) \(what)" }

    /// Runs the loop over `steps` as StableDiffusionPipeline does; returns (after step 1, final).
    func denoise<Noise: NoiseSource>(
        _ scheduler: inout any Scheduler, from latents: Tensor, steps: Range<Int>, noise: inout Noise
    ) throws -> (Tensor, Tensor) {
        var sample = latents
        var afterFirst = latents
        for index in steps {
            let input = try scheduler.scaleModelInput(sample, stepIndex: index)
            let output = Self.fakeModel(input, timestep: scheduler.timesteps[index])
            sample = try scheduler.step(modelOutput: output, stepIndex: index, sample: sample, noise: &noise).prevSample
            if index == steps.lowerBound { afterFirst = sample }
        }
        return (afterFirst, sample)
    }

    func checkTextToImage(file: StaticString = #filePath, line: UInt = #line) throws {
        for count in try attrs.ints("step_counts") {
            var scheduler = try makeScheduler()
            try scheduler.setTimesteps(count)
            let prefix = "n\(count)"
            checkSchedule(
                scheduler.timesteps, try golden.output("\(prefix).timesteps"), tolerance: timestepTolerance,
                "\(prefix) timesteps", file: file, line: line)
            if golden.file.contains("output.\(prefix).sigmas") {
                let expected = try golden.output("\(prefix).sigmas")
                checkSchedule(
                    scheduler.sigmas, expected, tolerance: Self.sigmaTolerance(for: expected), "\(prefix) sigmas",
                    file: file, line: line)
            }
            let expectedInitSigma = try golden.output("\(prefix).init_noise_sigma")
            checkSchedule(
                [scheduler.initNoiseSigma], expectedInitSigma, tolerance: Self.sigmaTolerance(for: expectedInitSigma),
                "\(prefix) init_noise_sigma", file: file, line: line)

            var noise = LatentNoise(generator: TorchGenerator(seed: seed), layout: layout)
            let initialNoise = noise.randn(shape: try latentShape)
            let initSigma = scheduler.initNoiseSigma
            let latents = initialNoise * initSigma
            let (first, final) = try denoise(&scheduler, from: latents, steps: 0..<scheduler.timesteps.count, noise: &noise)
            try checkLatents(first, "\(prefix).step1", "\(prefix) after step 1", file: file, line: line)
            try checkLatents(final, "\(prefix).final", "\(prefix) final sample", file: file, line: line)
        }
    }

    func checkImageToImage(file: StaticString = #filePath, line: UInt = #line) throws {
        var scheduler = try makeScheduler()
        let steps = try scheduler.setImg2ImgTimesteps(
            try attrs.int("img2img_steps"), strength: Double(try attrs.float("img2img_strength")))
        let expectedStart = try golden.output("img2img.start_index").scalars[0]
        XCTAssertEqual(Float(steps.lowerBound), expectedStart, label("img2img start index"), file: file, line: line)
        let timesteps = Array(scheduler.timesteps[steps])
        checkSchedule(
            timesteps, try golden.output("img2img.timesteps"), tolerance: timestepTolerance, "img2img timesteps",
            file: file, line: line)

        var noise = LatentNoise(generator: TorchGenerator(seed: seed + 1), layout: layout)
        let shape = try latentShape
        let image = noise.randn(shape: shape)
        let expectedImage = try golden.input("image_latents")
        XCTAssertTrue(
            image.isBitwiseEqual(to: layout == .nchw ? expectedImage : nchwToNHWC(expectedImage)),
            label("img2img image latents (RNG)"), file: file, line: line)
        let addedNoise = noise.randn(shape: shape)
        let noised = try scheduler.addNoise(to: image, noise: addedNoise, stepIndex: steps.lowerBound)
        try checkLatents(noised, "img2img.noised", "img2img add_noise", file: file, line: line)
        let (_, final) = try denoise(&scheduler, from: noised, steps: steps, noise: &noise)
        try checkLatents(final, "img2img.final", "img2img final sample", file: file, line: line)
    }

    /// Timesteps and sigmas for 1, 2, 3, 7, 13 and 50 steps.
    func checkTables(file: StaticString = #filePath, line: UInt = #line) throws {
        let timestepTable = try table("timestep_table")
        let sigmaTable = try table("sigma_table")
        for (count, expected) in timestepTable.sorted(by: { $0.key < $1.key }) {
            var scheduler = try makeScheduler()
            try scheduler.setTimesteps(count)
            checkSchedule(
                scheduler.timesteps, Tensor(shape: [expected.count], values: expected), tolerance: timestepTolerance,
                "\(count)-step timesteps", file: file, line: line)
            if let sigmas = sigmaTable[count] {
                let expectedSigmas = Tensor(shape: [sigmas.count], values: sigmas)
                checkSchedule(
                    scheduler.sigmas, expectedSigmas, tolerance: Self.sigmaTolerance(for: expectedSigmas),
                    "\(count)-step sigmas", file: file, line: line)
            }
        }
    }

    private func table(_ key: String) throws -> [Int: [Float]] {
        guard let object = try golden.json(key) as? [String: [NSNumber]] else {
            throw GoldenError.badAttribute(name: golden.name, key: key, value: "", expected: "{steps: [numbers]}")
        }
        var result: [Int: [Float]] = [:]
        for (count, values) in object {
            guard let steps = Int(count) else { continue }
            result[steps] = values.map { Float($0.doubleValue) }
        }
        return result
    }

    /// Every setting our resolved configuration and diffusers' `scheduler.config` both have must agree.
    func checkResolvedConfiguration(file: StaticString = #filePath, line: UInt = #line) throws {
        guard let expected = try golden.json("resolved_config") as? [String: Any] else {
            throw GoldenError.badAttribute(name: golden.name, key: "resolved_config", value: "", expected: "a JSON object")
        }
        let scheduler = try makeScheduler()
        let ours: SchedulerConfiguration
        switch scheduler {
        case let s as DDIMScheduler: ours = s.configuration
        case let s as PNDMScheduler: ours = s.configuration
        case let s as EulerDiscreteScheduler: ours = s.configuration
        case let s as EulerAncestralDiscreteScheduler: ours = s.configuration
        case let s as DPMSolverMultistepScheduler: ours = s.configuration
        case let s as LCMScheduler: ours = s.configuration
        default: return XCTFail("unexpected scheduler type \(type(of: scheduler))", file: file, line: line)
        }
        let encoded = try JSONSerialization.jsonObject(with: try ours.jsonData()) as? [String: Any] ?? [:]
        var compared = 0
        for (key, value) in encoded where key != "_class_name" {
            guard let reference = expected[key], !(reference is NSNull) else { continue }
            if let a = value as? NSNumber, let b = reference as? NSNumber {
                XCTAssertEqual(a.doubleValue, b.doubleValue, label("config \(key)"), file: file, line: line)
            } else if let a = value as? String, let b = reference as? String {
                XCTAssertEqual(a, b, label("config \(key)"), file: file, line: line)
            } else {
                XCTFail(label("config \(key): \(value) vs \(reference)"), file: file, line: line)
            }
            compared += 1
        }
        XCTAssertGreaterThan(compared, 8, label("compared config keys"), file: file, line: line)
    }

    func checkAll(file: StaticString = #filePath, line: UInt = #line) throws {
        try checkTextToImage(file: file, line: line)
        try checkImageToImage(file: file, line: line)
        try checkTables(file: file, line: line)
        try checkResolvedConfiguration(file: file, line: line)
    }
}
