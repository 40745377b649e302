import Compute

/// What the sigma-space samplers (Euler, Euler a) share: the training sigmas, the timestep placement of
/// their `set_timesteps`, `scale_model_input`, `init_noise_sigma` and the x0 prediction.
struct SigmaScheduleSetup: Sendable {
    let alphasCumprod: [Float]
    /// Training sigmas, ascending with the timestep.
    let trainSigmas: [Float]
    let logSigmas: [Float]
    let predictionType: PredictionType
    let spacing: TimestepSpacing
    let stepsOffset: Int
    let useKarrasSigmas: Bool
    let finalSigmasType: FinalSigmasType
    let sigmaMin: Double?
    let sigmaMax: Double?

    /// diffusers' sigmas before `set_timesteps`: the training sigmas, descending, then 0.
    var initialSigmas: [Float] { trainSigmas.reversed() + [0] }

    init(_ c: SchedulerConfiguration, zeroSNRLastAlpha: Bool) throws {
        let schedule = try NoiseSchedule(c)
        var alphasCumprod = schedule.alphasCumprod
        if zeroSNRLastAlpha, try c.required(\.rescaleBetasZeroSnr, "rescale_betas_zero_snr") {
            alphasCumprod[alphasCumprod.count - 1] = 0x1p-24  // keeps the last sigma finite
        }
        self.alphasCumprod = alphasCumprod
        trainSigmas = NoiseSchedule.sigmas(alphasCumprod)
        logSigmas = SigmaSchedule.logSigmas(trainSigmas)
        predictionType = try c.choice(\.predictionType, "prediction_type", as: PredictionType.self)
        spacing = try c.choice(\.timestepSpacing, "timestep_spacing", as: TimestepSpacing.self)
        stepsOffset = try c.required(\.stepsOffset, "steps_offset")
        useKarrasSigmas = c.useKarrasSigmas ?? false
        finalSigmasType =
            c.finalSigmasType == nil ? .zero : try c.choice(\.finalSigmasType, "final_sigmas_type", as: FinalSigmasType.self)
        sigmaMin = c.sigmaMin
        sigmaMax = c.sigmaMax
    }

    /// `set_timesteps(count)` of `EulerDiscreteScheduler` (and, without Karras sigmas and with a zero final
    /// sigma, of `EulerAncestralDiscreteScheduler`): float32 timesteps and `count + 1` float32 sigmas.
    func eulerTimestepsAndSigmas(_ count: Int) throws -> (timesteps: [Float], sigmas: [Float]) {
        let train = alphasCumprod.count
        try checkStepCount(count, trainTimesteps: train)
        var timesteps: [Float]
        switch spacing {
        case .linspace:
            timesteps = NumPyReference.linspace(0, Double(train - 1), count).reversed().map { Float($0) }
        case .leading:
            let ratio = train / count
            timesteps = (0..<count).reversed().map { Float($0 * ratio) + Float(stepsOffset) }
        case .trailing:
            let ratio = Double(train) / Double(count)
            timesteps = NumPyReference.arange(Double(train), 0, -ratio).map { Float(NumPyReference.round($0)) - 1 }
        }
        var sigmas = SigmaSchedule.interpolate(trainSigmas, at: timesteps.map(Double.init))
        if useKarrasSigmas {
            sigmas = SigmaSchedule.karras(
                sigmaMin: sigmaMin ?? sigmas[sigmas.count - 1], sigmaMax: sigmaMax ?? sigmas[0], count: count)
            timesteps = sigmas.map { Float(SigmaSchedule.timestep(forSigma: $0, logSigmas: logSigmas)) }
        }
        let last: Float = finalSigmasType == .zero ? 0 : trainSigmas[0]
        return (timesteps, sigmas.map { Float($0) } + [last])
    }

    /// `init_noise_sigma`: max(sigmas) for linspace/trailing spacing, sqrt(max² + 1) for leading.
    func initNoiseSigma(_ sigmas: [Float]) -> Float {
        let maximum = sigmas.max() ?? 0
        return spacing == .leading ? (maximum * maximum + 1).squareRoot() : maximum
    }

    /// `scale_model_input`: `sample / (sigma² + 1) ** 0.5`.
    static func scaleModelInput(_ sample: Tensor, sigma: Float) -> Tensor {
        let scale = (sigma * sigma + 1).squareRoot()
        return SchedulerArithmetic.map(sample) { $0 / scale }
    }

    /// The x0 estimate of Euler-type steps for each prediction type.
    func predictOriginal(modelOutput: Tensor, sample: Tensor, sigma: Float) -> Tensor {
        switch predictionType {
        case .epsilon:
            return SchedulerArithmetic.map(sample, modelOutput) { x, e in x - sigma * e }
        case .vPrediction:
            let outputScale = -sigma / (sigma * sigma + 1).squareRoot()
            let sampleScale = sigma * sigma + 1
            return SchedulerArithmetic.map(modelOutput, sample) { v, x in v * outputScale + x / sampleScale }
        case .sample:
            return modelOutput
        }
    }
}
