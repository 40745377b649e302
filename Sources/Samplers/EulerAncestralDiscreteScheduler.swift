import Compute

/// Ancestral Euler ("Euler a"), as diffusers' `EulerAncestralDiscreteScheduler`: an Euler step down to
/// `sigma_down`, then fresh noise of scale `sigma_up` from the noise source.
///
/// Every step draws one noise tensor shaped like the sample — including the last step, where
/// `sigma_up` is 0 — so the generator advances by one latent's worth of normals per step.
public struct EulerAncestralDiscreteScheduler: Scheduler {
    /// `EulerAncestralDiscreteScheduler.__init__` defaults.
    public static let defaults: SchedulerConfiguration = {
        var c = SchedulerConfiguration()
        c.className = "EulerAncestralDiscreteScheduler"
        c.numTrainTimesteps = 1000
        c.betaStart = 0.0001
        c.betaEnd = 0.02
        c.betaSchedule = "linear"
        c.predictionType = "epsilon"
        c.timestepSpacing = "linspace"
        c.stepsOffset = 0
        c.rescaleBetasZeroSnr = false
        return c
    }()

    public let configuration: SchedulerConfiguration
    let schedule: SigmaScheduleSetup

    public private(set) var timesteps: [Float] = []
    public private(set) var sigmas: [Float] = []

    /// `init_noise_sigma`: the largest sigma, or sqrt(max² + 1) for "leading" spacing.
    public var initNoiseSigma: Float { schedule.initNoiseSigma(sigmas) }

    public init(configuration: SchedulerConfiguration) throws {
        var c = configuration.filling(Self.defaults)
        // This class has neither Karras sigmas nor a configurable final sigma (a config may still carry them).
        c.useKarrasSigmas = false
        c.finalSigmasType = FinalSigmasType.zero.rawValue
        self.configuration = c
        schedule = try SigmaScheduleSetup(c, zeroSNRLastAlpha: true)
        guard schedule.predictionType != .sample else {
            throw SchedulerError.unsupported("prediction_type 'sample' with Euler ancestral (diffusers does not implement it)")
        }
        sigmas = schedule.initialSigmas
    }

    public mutating func setTimesteps(_ count: Int) throws {
        let (newTimesteps, newSigmas) = try schedule.eulerTimestepsAndSigmas(count)
        timesteps = newTimesteps
        sigmas = newSigmas
    }

    public func scaleModelInput(_ sample: Tensor, stepIndex: Int) throws -> Tensor {
        try checkStepIndex(stepIndex)
        return SigmaScheduleSetup.scaleModelInput(sample, sigma: sigmas[stepIndex])
    }

    public mutating func step<Noise: NoiseSource>(
        modelOutput: Tensor, stepIndex: Int, sample: Tensor, noise: inout Noise
    ) throws -> SchedulerStepOutput {
        try checkStepIndex(stepIndex)
        try checkSameShape(modelOutput, sample, "Euler ancestral step model output vs sample")
        let sigma = sigmas[stepIndex]
        let predOriginal = schedule.predictOriginal(modelOutput: modelOutput, sample: sample, sigma: sigma)
        let sigmaFrom = sigma, sigmaTo = sigmas[stepIndex + 1]
        let sigmaUp = (sigmaTo * sigmaTo * (sigmaFrom * sigmaFrom - sigmaTo * sigmaTo) / (sigmaFrom * sigmaFrom)).squareRoot()
        let sigmaDown = (sigmaTo * sigmaTo - sigmaUp * sigmaUp).squareRoot()
        let dt = sigmaDown - sigma
        let stepNoise = noise.randn(shape: modelOutput.shape)
        let prevSample = SchedulerArithmetic.map(sample, predOriginal, stepNoise) { x, x0, z in
            let derivative = (x - x0) / sigma
            return (x + derivative * dt) + z * sigmaUp
        }
        return SchedulerStepOutput(prevSample: prevSample, predictedOriginal: predOriginal)
    }

    /// `original + noise * sigma` at the begin index (diffusers' img2img sets `set_begin_index(t_start)`).
    public func addNoise(to original: Tensor, noise: Tensor, stepIndex: Int) throws -> Tensor {
        try checkStepIndex(stepIndex)
        try checkSameShape(original, noise, "add_noise original vs noise")
        let sigma = sigmas[stepIndex]
        return SchedulerArithmetic.map(original, noise) { x, z in x + z * sigma }
    }
}
