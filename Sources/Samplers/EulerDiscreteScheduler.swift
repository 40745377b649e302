import Compute

/// Euler's method on the probability-flow ODE in sigma space (Karras et al. 2022, Algorithm 2 without
/// churn), as diffusers' `EulerDiscreteScheduler`; optionally on Karras sigmas.
public struct EulerDiscreteScheduler: Scheduler {
    /// `EulerDiscreteScheduler.__init__` defaults.
    public static let defaults: SchedulerConfiguration = {
        var c = SchedulerConfiguration()
        c.className = "EulerDiscreteScheduler"
        c.numTrainTimesteps = 1000
        c.betaStart = 0.0001
        c.betaEnd = 0.02
        c.betaSchedule = "linear"
        c.predictionType = "epsilon"
        c.interpolationType = "linear"
        c.useKarrasSigmas = false
        c.useExponentialSigmas = false
        c.useBetaSigmas = false
        c.timestepSpacing = "linspace"
        c.timestepType = "discrete"
        c.stepsOffset = 0
        c.rescaleBetasZeroSnr = false
        c.finalSigmasType = "zero"
        return c
    }()

    public let configuration: SchedulerConfiguration
    let schedule: SigmaScheduleSetup

    public private(set) var timesteps: [Float] = []
    public private(set) var sigmas: [Float] = []

    /// `init_noise_sigma`: the largest sigma, or sqrt(max² + 1) for "leading" spacing.
    public var initNoiseSigma: Float { schedule.initNoiseSigma(sigmas) }

    public init(configuration: SchedulerConfiguration) throws {
        let c = configuration.filling(Self.defaults)
        if try c.required(\.useExponentialSigmas, "use_exponential_sigmas") || c.required(\.useBetaSigmas, "use_beta_sigmas") {
            throw SchedulerError.unsupported("exponential or beta sigmas (use Karras sigmas or none)")
        }
        guard try c.required(\.interpolationType, "interpolation_type") == "linear" else {
            throw SchedulerError.unsupported("interpolation_type '\(c.interpolationType ?? "")' (only 'linear')")
        }
        guard try c.required(\.timestepType, "timestep_type") == "discrete" else {
            throw SchedulerError.unsupported("timestep_type '\(c.timestepType ?? "")' (only 'discrete')")
        }
        self.configuration = c
        schedule = try SigmaScheduleSetup(c, zeroSNRLastAlpha: true)
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
        try checkSameShape(modelOutput, sample, "Euler step model output vs sample")
        let sigma = sigmas[stepIndex]
        let sigmaHat = sigma  // s_churn = 0: gamma = 0, sigma_hat = sigma * (gamma + 1)
        let predOriginal = schedule.predictOriginal(modelOutput: modelOutput, sample: sample, sigma: sigmaHat)
        let dt = sigmas[stepIndex + 1] - sigmaHat
        let prevSample = SchedulerArithmetic.map(sample, predOriginal) { x, x0 in
            let derivative = (x - x0) / sigmaHat
            return x + derivative * dt
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
