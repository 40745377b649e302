import Compute

/// DDIM (Song et al. 2020) as diffusers' `DDIMScheduler`: a deterministic step from the predicted x0 and
/// noise when `eta` is 0; `eta` > 0 adds DDPM-like noise from the noise source.
public struct DDIMScheduler: Scheduler {
    /// `DDIMScheduler.__init__` defaults.
    public static let defaults: SchedulerConfiguration = {
        var c = SchedulerConfiguration()
        c.className = "DDIMScheduler"
        c.numTrainTimesteps = 1000
        c.betaStart = 0.0001
        c.betaEnd = 0.02
        c.betaSchedule = "linear"
        c.clipSample = true
        c.setAlphaToOne = true
        c.stepsOffset = 0
        c.predictionType = "epsilon"
        c.thresholding = false
        c.clipSampleRange = 1.0
        c.timestepSpacing = "leading"
        c.rescaleBetasZeroSnr = false
        return c
    }()

    public let configuration: SchedulerConfiguration
    let schedule: NoiseSchedule
    let predictionType: PredictionType
    let spacing: TimestepSpacing
    let stepsOffset: Int
    let clipSampleRange: Float?
    let finalAlphaCumprod: Float
    /// The weight of the added noise (0: DDIM, 1: DDPM-like); the pipeline's `eta` argument.
    public var eta: Float

    public private(set) var timesteps: [Float] = []
    private var integerTimesteps: [Int] = []
    private var stepCount = 0

    public var sigmas: [Float] { [] }
    public var initNoiseSigma: Float { 1 }

    public init(configuration: SchedulerConfiguration, eta: Float = 0) throws {
        let c = configuration.filling(Self.defaults)
        if try c.required(\.thresholding, "thresholding") {
            throw SchedulerError.unsupported("thresholding (dynamic thresholding is for pixel-space models)")
        }
        self.configuration = c
        schedule = try NoiseSchedule(c)
        predictionType = try c.choice(\.predictionType, "prediction_type", as: PredictionType.self)
        spacing = try c.choice(\.timestepSpacing, "timestep_spacing", as: TimestepSpacing.self)
        stepsOffset = try c.required(\.stepsOffset, "steps_offset")
        clipSampleRange =
            try c.required(\.clipSample, "clip_sample")
            ? Float(try c.required(\.clipSampleRange, "clip_sample_range")) : nil
        finalAlphaCumprod = try c.required(\.setAlphaToOne, "set_alpha_to_one") ? 1 : schedule.alphasCumprod[0]
        self.eta = eta
    }

    public mutating func setTimesteps(_ count: Int) throws {
        let train = schedule.trainTimesteps
        try checkStepCount(count, trainTimesteps: train)
        switch spacing {
        case .linspace:
            integerTimesteps = NumPyReference.linspace(0, Double(train - 1), count)
                .map { Int(NumPyReference.round($0)) }.reversed()
        case .leading:
            let ratio = train / count
            integerTimesteps = (0..<count).map { $0 * ratio + stepsOffset }.reversed()
        case .trailing:
            let ratio = Double(train) / Double(count)
            integerTimesteps = NumPyReference.arange(Double(train), 0, -ratio).map { Int(NumPyReference.round($0)) - 1 }
        }
        timesteps = integerTimesteps.map(Float.init)
        stepCount = count
    }

    public func scaleModelInput(_ sample: Tensor, stepIndex: Int) throws -> Tensor {
        try checkStepIndex(stepIndex)
        return sample
    }

    public mutating func step<Noise: NoiseSource>(
        modelOutput: Tensor, stepIndex: Int, sample: Tensor, noise: inout Noise
    ) throws -> SchedulerStepOutput {
        try checkStepIndex(stepIndex)
        try checkSameShape(modelOutput, sample, "DDIM step model output vs sample")
        let timestep = integerTimesteps[stepIndex]
        // diffusers steps back by num_train_timesteps // num_inference_steps whatever the spacing.
        let prevTimestep = timestep - schedule.trainTimesteps / stepCount
        let alphaProd = schedule.alphasCumprod[timestep]
        let alphaProdPrev = prevTimestep >= 0 ? schedule.alphasCumprod[prevTimestep] : finalAlphaCumprod
        let betaProd = 1 - alphaProd
        let sqrtAlpha = alphaProd.squareRoot(), sqrtBeta = betaProd.squareRoot()

        var predOriginal: Tensor
        var predEpsilon: Tensor
        switch predictionType {
        case .epsilon:
            predOriginal = SchedulerArithmetic.map(sample, modelOutput) { x, e in (x - sqrtBeta * e) / sqrtAlpha }
            predEpsilon = modelOutput
        case .sample:
            predOriginal = modelOutput
            predEpsilon = SchedulerArithmetic.map(sample, modelOutput) { x, x0 in (x - sqrtAlpha * x0) / sqrtBeta }
        case .vPrediction:
            predOriginal = SchedulerArithmetic.map(sample, modelOutput) { x, v in sqrtAlpha * x - sqrtBeta * v }
            predEpsilon = SchedulerArithmetic.map(modelOutput, sample) { v, x in sqrtAlpha * v + sqrtBeta * x }
        }
        if let range = clipSampleRange {
            predOriginal = SchedulerArithmetic.clamp(predOriginal, range: range)
        }

        // _get_variance, then std_dev_t = eta * variance ** 0.5.
        let betaProdPrev = 1 - alphaProdPrev
        let variance = (betaProdPrev / betaProd) * (1 - alphaProd / alphaProdPrev)
        let stdDev = eta * variance.squareRoot()
        let directionScale = (1 - alphaProdPrev - stdDev * stdDev).squareRoot()
        let sqrtAlphaPrev = alphaProdPrev.squareRoot()
        var prevSample = SchedulerArithmetic.map(predOriginal, predEpsilon) { x0, e in
            sqrtAlphaPrev * x0 + directionScale * e
        }
        if eta > 0 {
            let varianceNoise = noise.randn(shape: modelOutput.shape)
            prevSample = SchedulerArithmetic.map(prevSample, varianceNoise) { x, z in x + stdDev * z }
        }
        return SchedulerStepOutput(prevSample: prevSample, predictedOriginal: predOriginal)
    }

    public func addNoise(to original: Tensor, noise: Tensor, stepIndex: Int) throws -> Tensor {
        try checkStepIndex(stepIndex)
        return try AlphaNoising.addNoise(original, noise, alphaProd: schedule.alphasCumprod[integerTimesteps[stepIndex]])
    }
}

/// `add_noise` of the alpha-parameterised schedulers (DDIM, PNDM, LCM):
/// `sqrt(ᾱ_t) * original + sqrt(1 - ᾱ_t) * noise`.
enum AlphaNoising {
    static func addNoise(_ original: Tensor, _ noise: Tensor, alphaProd: Float) throws -> Tensor {
        try checkSameShape(original, noise, "add_noise original vs noise")
        let sqrtAlpha = alphaProd.squareRoot()
        let sqrtOneMinusAlpha = (1 - alphaProd).squareRoot()
        return SchedulerArithmetic.map(original, noise) { x, z in sqrtAlpha * x + sqrtOneMinusAlpha * z }
    }
}
