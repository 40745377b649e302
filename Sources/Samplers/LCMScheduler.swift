import Compute

/// Latent Consistency Model multistep sampling (Luo et al. 2023) as diffusers' `LCMScheduler`: each step
/// maps the sample to a denoised estimate with the consistency boundary condition, then re-noises it to
/// the next timestep with fresh noise (except at the last step).
///
/// Every step but the last draws one noise tensor shaped like the sample from the noise source.
public struct LCMScheduler: Scheduler {
    /// `LCMScheduler.__init__` defaults.
    public static let defaults: SchedulerConfiguration = {
        var c = SchedulerConfiguration()
        c.className = "LCMScheduler"
        c.numTrainTimesteps = 1000
        c.betaStart = 0.00085
        c.betaEnd = 0.012
        c.betaSchedule = "scaled_linear"
        c.originalInferenceSteps = 50
        c.clipSample = false
        c.clipSampleRange = 1.0
        c.setAlphaToOne = true
        c.stepsOffset = 0
        c.predictionType = "epsilon"
        c.thresholding = false
        c.timestepSpacing = "leading"
        c.timestepScaling = 10.0
        c.rescaleBetasZeroSnr = false
        return c
    }()

    public let configuration: SchedulerConfiguration
    let schedule: NoiseSchedule
    let predictionType: PredictionType
    let originalInferenceSteps: Int
    let clipSampleRange: Float?
    let finalAlphaCumprod: Float
    let timestepScaling: Double

    public private(set) var timesteps: [Float] = []
    private var integerTimesteps: [Int] = []
    private var stepCount = 0

    public var sigmas: [Float] { [] }
    public var initNoiseSigma: Float { 1 }

    public init(configuration: SchedulerConfiguration) throws {
        let c = configuration.filling(Self.defaults)
        if try c.required(\.thresholding, "thresholding") {
            throw SchedulerError.unsupported("thresholding (dynamic thresholding is for pixel-space models)")
        }
        self.configuration = c
        schedule = try NoiseSchedule(c)
        predictionType = try c.choice(\.predictionType, "prediction_type", as: PredictionType.self)
        originalInferenceSteps = try c.required(\.originalInferenceSteps, "original_inference_steps")
        guard originalInferenceSteps >= 1, originalInferenceSteps <= schedule.trainTimesteps else {
            throw SchedulerError.invalidConfiguration(
                "original_inference_steps must be in 1...\(schedule.trainTimesteps), got \(originalInferenceSteps)")
        }
        clipSampleRange =
            try c.required(\.clipSample, "clip_sample")
            ? Float(try c.required(\.clipSampleRange, "clip_sample_range")) : nil
        finalAlphaCumprod = try c.required(\.setAlphaToOne, "set_alpha_to_one") ? 1 : schedule.alphasCumprod[0]
        timestepScaling = try c.required(\.timestepScaling, "timestep_scaling")
    }

    public mutating func setTimesteps(_ count: Int) throws {
        try setTimesteps(count, strength: 1)
    }

    /// `set_timesteps(count, strength=strength)`: `count` of the `original_inference_steps` LCM training
    /// timesteps that lie below `strength` of the schedule, evenly skipped from the top.
    public mutating func setTimesteps(_ count: Int, strength: Double) throws {
        guard strength >= 0, strength <= 1 else { throw SchedulerError.invalidStrength(strength) }
        let train = schedule.trainTimesteps
        try checkStepCount(count, trainTimesteps: train)
        guard count <= originalInferenceSteps else {
            throw SchedulerError.invalidStepCount(count, maximum: originalInferenceSteps)
        }
        let k = train / originalInferenceSteps
        let usable = Int((Double(originalInferenceSteps) * strength).rounded(.towardZero))
        let origin = (1...max(usable, 1)).map { $0 * k - 1 }.reversed().map { $0 }
        guard usable >= count else {
            throw SchedulerError.unsupported(
                "\(count) LCM steps at strength \(strength): only \(usable) of the \(originalInferenceSteps) "
                    + "original steps lie below that strength; use fewer steps or a higher strength")
        }
        let indices = NumPyReference.linspace(0, Double(origin.count), count, endpoint: false).map { Int($0.rounded(.down)) }
        integerTimesteps = indices.map { origin[$0] }
        timesteps = integerTimesteps.map(Float.init)
        stepCount = count
    }

    /// The LCM img2img pipeline limits the timesteps through `set_timesteps(..., strength)` and runs them all.
    public mutating func setImg2ImgTimesteps(_ count: Int, strength: Double) throws -> Range<Int> {
        try setTimesteps(count, strength: strength)
        return 0..<timesteps.count
    }

    public func scaleModelInput(_ sample: Tensor, stepIndex: Int) throws -> Tensor {
        try checkStepIndex(stepIndex)
        return sample
    }

    /// `get_scalings_for_boundary_condition_discrete`: c_skip and c_out at `timestep` (float32, sigma_data 0.5).
    static func boundaryScalings(timestep: Int, scaling: Double) -> (skip: Float, out: Float) {
        let sigmaData: Float = 0.5
        let scaled = Float(timestep) * Float(scaling)
        let skip = sigmaData * sigmaData / (scaled * scaled + sigmaData * sigmaData)
        let out = scaled / (scaled * scaled + sigmaData * sigmaData).squareRoot()
        return (skip, out)
    }

    public mutating func step<Noise: NoiseSource>(
        modelOutput: Tensor, stepIndex: Int, sample: Tensor, noise: inout Noise
    ) throws -> SchedulerStepOutput {
        try checkStepIndex(stepIndex)
        try checkSameShape(modelOutput, sample, "LCM step model output vs sample")
        let timestep = integerTimesteps[stepIndex]
        let prevTimestep = stepIndex + 1 < integerTimesteps.count ? integerTimesteps[stepIndex + 1] : timestep
        let alphaProd = schedule.alphasCumprod[timestep]
        let alphaProdPrev = prevTimestep >= 0 ? schedule.alphasCumprod[prevTimestep] : finalAlphaCumprod
        let betaProd = 1 - alphaProd
        let betaProdPrev = 1 - alphaProdPrev
        let (cSkip, cOut) = Self.boundaryScalings(timestep: timestep, scaling: timestepScaling)
        let sqrtAlpha = alphaProd.squareRoot(), sqrtBeta = betaProd.squareRoot()

        var predOriginal: Tensor
        switch predictionType {
        case .epsilon:
            predOriginal = SchedulerArithmetic.map(sample, modelOutput) { x, e in (x - sqrtBeta * e) / sqrtAlpha }
        case .sample:
            predOriginal = modelOutput
        case .vPrediction:
            predOriginal = SchedulerArithmetic.map(sample, modelOutput) { x, v in sqrtAlpha * x - sqrtBeta * v }
        }
        if let range = clipSampleRange {
            predOriginal = SchedulerArithmetic.clamp(predOriginal, range: range)
        }
        let denoised = SchedulerArithmetic.map(predOriginal, sample) { x0, x in cOut * x0 + cSkip * x }
        guard stepIndex != stepCount - 1 else {
            return SchedulerStepOutput(prevSample: denoised, predictedOriginal: denoised)
        }
        let stepNoise = noise.randn(shape: modelOutput.shape)
        let sqrtAlphaPrev = alphaProdPrev.squareRoot(), sqrtBetaPrev = betaProdPrev.squareRoot()
        let prevSample = SchedulerArithmetic.map(denoised, stepNoise) { d, z in sqrtAlphaPrev * d + sqrtBetaPrev * z }
        return SchedulerStepOutput(prevSample: prevSample, predictedOriginal: denoised)
    }

    public func addNoise(to original: Tensor, noise: Tensor, stepIndex: Int) throws -> Tensor {
        try checkStepIndex(stepIndex)
        return try AlphaNoising.addNoise(original, noise, alphaProd: schedule.alphasCumprod[integerTimesteps[stepIndex]])
    }
}
