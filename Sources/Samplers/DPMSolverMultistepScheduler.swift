import Compute

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// DPM-Solver++ multistep (Lu et al. 2022) as diffusers' `DPMSolverMultistepScheduler` with
/// `algorithm_type="dpmsolver++"`: "DPM++ 2M" at `solver_order` 2, "DPM++ 2M Karras" with Karras sigmas.
///
/// The model output is first turned into an x0 prediction; each step then combines the latest (and, past
/// the first step, the previous) prediction in log-SNR time. With `lower_order_final` the last step of a
/// schedule shorter than 15 steps is first order, and so is the final step whenever the final sigma is 0.
public struct DPMSolverMultistepScheduler: Scheduler {
    /// How the second-order update uses the previous prediction (`solver_type`).
    public enum SolverType: String, CaseIterable, Sendable {
        case midpoint
        case heun
    }

    /// `DPMSolverMultistepScheduler.__init__` defaults.
    public static let defaults: SchedulerConfiguration = {
        var c = SchedulerConfiguration()
        c.className = "DPMSolverMultistepScheduler"
        c.numTrainTimesteps = 1000
        c.betaStart = 0.0001
        c.betaEnd = 0.02
        c.betaSchedule = "linear"
        c.solverOrder = 2
        c.predictionType = "epsilon"
        c.thresholding = false
        c.algorithmType = "dpmsolver++"
        c.solverType = "midpoint"
        c.lowerOrderFinal = true
        c.eulerAtFinal = false
        c.useKarrasSigmas = false
        c.useExponentialSigmas = false
        c.useBetaSigmas = false
        c.useLuLambdas = false
        c.useFlowSigmas = false
        c.finalSigmasType = "zero"
        c.lambdaMinClipped = -Double.infinity
        c.timestepSpacing = "linspace"
        c.stepsOffset = 0
        c.rescaleBetasZeroSnr = false
        c.useDynamicShifting = false
        return c
    }()

    public let configuration: SchedulerConfiguration
    let betaSchedule: BetaSchedule
    let alphasCumprod: [Float]
    let trainSigmas: [Float]
    let logSigmas: [Float]
    let predictionType: PredictionType
    let spacing: TimestepSpacing
    let stepsOffset: Int
    let solverOrder: Int
    let solverType: SolverType
    let lowerOrderFinal: Bool
    let eulerAtFinal: Bool
    let useKarrasSigmas: Bool
    let finalSigmasType: FinalSigmasType
    let lambdaMinClipped: Double
    let sigmaMin: Double?
    let sigmaMax: Double?

    public private(set) var timesteps: [Float] = []
    public private(set) var sigmas: [Float] = []
    public var initNoiseSigma: Float { 1 }
    /// The last `solverOrder` x0 predictions, oldest first (diffusers' `model_outputs`).
    private var modelOutputs: [Tensor] = []
    private var lowerOrderNums = 0

    public init(configuration: SchedulerConfiguration) throws {
        let c = configuration.filling(Self.defaults)
        guard try c.required(\.algorithmType, "algorithm_type") == "dpmsolver++" else {
            throw SchedulerError.unsupported(
                "algorithm_type '\(c.algorithmType ?? "")' (only 'dpmsolver++', the DPM++ samplers)")
        }
        for (flag, name) in [
            (c.useExponentialSigmas, "use_exponential_sigmas"), (c.useBetaSigmas, "use_beta_sigmas"),
            (c.useLuLambdas, "use_lu_lambdas"), (c.useFlowSigmas, "use_flow_sigmas"),
            (c.useDynamicShifting, "use_dynamic_shifting"), (c.thresholding, "thresholding"),
        ] where flag == true {
            throw SchedulerError.unsupported("\(name)=true with DPM-Solver++")
        }
        if let variance = c.varianceType, variance.hasPrefix("learned") {
            throw SchedulerError.unsupported("variance_type '\(variance)'")
        }
        self.configuration = c
        let schedule = try NoiseSchedule(c)
        betaSchedule = c.trainedBetas == nil ? try c.choice(\.betaSchedule, "beta_schedule", as: BetaSchedule.self) : .linear
        var alphasCumprod = schedule.alphasCumprod
        if try c.required(\.rescaleBetasZeroSnr, "rescale_betas_zero_snr") {
            alphasCumprod[alphasCumprod.count - 1] = 0x1p-24
        }
        self.alphasCumprod = alphasCumprod
        trainSigmas = NoiseSchedule.sigmas(alphasCumprod)
        logSigmas = SigmaSchedule.logSigmas(trainSigmas)
        predictionType = try c.choice(\.predictionType, "prediction_type", as: PredictionType.self)
        spacing = try c.choice(\.timestepSpacing, "timestep_spacing", as: TimestepSpacing.self)
        stepsOffset = try c.required(\.stepsOffset, "steps_offset")
        solverOrder = try c.required(\.solverOrder, "solver_order")
        guard (1...3).contains(solverOrder) else {
            throw SchedulerError.invalidConfiguration("solver_order must be 1, 2 or 3, got \(solverOrder)")
        }
        solverType = try c.choice(\.solverType, "solver_type", as: SolverType.self)
        lowerOrderFinal = try c.required(\.lowerOrderFinal, "lower_order_final")
        eulerAtFinal = try c.required(\.eulerAtFinal, "euler_at_final")
        useKarrasSigmas = try c.required(\.useKarrasSigmas, "use_karras_sigmas")
        finalSigmasType = try c.choice(\.finalSigmasType, "final_sigmas_type", as: FinalSigmasType.self)
        lambdaMinClipped = try c.required(\.lambdaMinClipped, "lambda_min_clipped")
        sigmaMin = c.sigmaMin
        sigmaMax = c.sigmaMax
        sigmas = trainSigmas
    }

    public mutating func setTimesteps(_ count: Int) throws {
        let train = alphasCumprod.count
        try checkStepCount(count, trainTimesteps: train)
        // Clipping of the lowest log-SNR (cosine schedules): the last usable training timestep.
        let lastTimestep = train - clippedIndex()
        var integerTimesteps: [Int]
        switch spacing {
        case .linspace:
            integerTimesteps = NumPyReference.linspace(0, Double(lastTimestep - 1), count + 1)
                .map { Int(NumPyReference.round($0)) }.reversed().dropLast()
        case .leading:
            let ratio = lastTimestep / (count + 1)
            integerTimesteps = (0...count).map { $0 * ratio + stepsOffset }.reversed().dropLast()
        case .trailing:
            let ratio = Double(train) / Double(count)
            integerTimesteps = NumPyReference.arange(Double(lastTimestep), 0, -ratio).map { Int(NumPyReference.round($0)) - 1 }
        }
        var schedule: [Double]
        if useKarrasSigmas {
            // diffusers passes the training sigmas reversed, so the range is the full training range.
            schedule = SigmaSchedule.karras(
                sigmaMin: sigmaMin ?? Double(trainSigmas[0]), sigmaMax: sigmaMax ?? Double(trainSigmas[train - 1]),
                count: count)
            integerTimesteps = schedule.map { sigma in
                let t = SigmaSchedule.timestep(forSigma: sigma, logSigmas: logSigmas)
                // Rounded, except for cosine schedules, where the cast to int64 truncates.
                return Int(betaSchedule == .squaredCosine ? t : NumPyReference.round(t))
            }
        } else {
            schedule = SigmaSchedule.interpolate(trainSigmas, at: integerTimesteps.map(Double.init))
        }
        let last: Float = finalSigmasType == .zero ? 0 : trainSigmas[0]
        sigmas = schedule.map { Float($0) } + [last]
        timesteps = integerTimesteps.map(Float.init)
        modelOutputs = []
        lowerOrderNums = 0
    }

    /// `searchsorted(flip(lambda_t), lambda_min_clipped)`: how many of the lowest log-SNRs are clipped.
    private func clippedIndex() -> Int {
        guard lambdaMinClipped > -Double.infinity else { return 0 }
        let lambdas = alphasCumprod.map { alpha -> Float in
            log(alpha.squareRoot()) - log((1 - alpha).squareRoot())
        }
        let flipped = lambdas.reversed().map(Double.init)
        return flipped.firstIndex { $0 >= lambdaMinClipped } ?? flipped.count
    }

    public func scaleModelInput(_ sample: Tensor, stepIndex: Int) throws -> Tensor {
        try checkStepIndex(stepIndex)
        return sample
    }

    /// `_sigma_to_alpha_sigma_t`: alpha_t = 1 / sqrt(sigma² + 1), sigma_t = sigma * alpha_t.
    private static func alphaSigma(_ sigma: Float) -> (alpha: Float, sigma: Float) {
        let alpha = 1 / (sigma * sigma + 1).squareRoot()
        return (alpha, sigma * alpha)
    }

    /// log(alpha_t) - log(sigma_t), the half log-SNR.
    private static func lambda(_ alphaSigma: (alpha: Float, sigma: Float)) -> Float {
        log(alphaSigma.alpha) - log(alphaSigma.sigma)
    }

    public mutating func step<Noise: NoiseSource>(
        modelOutput: Tensor, stepIndex: Int, sample: Tensor, noise: inout Noise
    ) throws -> SchedulerStepOutput {
        try checkStepIndex(stepIndex)
        try checkSameShape(modelOutput, sample, "DPM-Solver step model output vs sample")
        let stepCount = timesteps.count
        let lowerOrderFinalStep =
            stepIndex == stepCount - 1
            && (eulerAtFinal || (lowerOrderFinal && stepCount < 15) || finalSigmasType == .zero)
        let lowerOrderSecondStep = stepIndex == stepCount - 2 && lowerOrderFinal && stepCount < 15

        // convert_model_output: x0 prediction.
        let current = Self.alphaSigma(sigmas[stepIndex])
        let x0: Tensor
        switch predictionType {
        case .epsilon:
            x0 = SchedulerArithmetic.map(sample, modelOutput) { x, e in (x - current.sigma * e) / current.alpha }
        case .vPrediction:
            x0 = SchedulerArithmetic.map(sample, modelOutput) { x, v in current.alpha * x - current.sigma * v }
        case .sample:
            x0 = modelOutput
        }
        modelOutputs.append(x0)
        if modelOutputs.count > solverOrder { modelOutputs.removeFirst(modelOutputs.count - solverOrder) }

        // diffusers' order selection; the history checks only matter if steps are not run in sequence.
        let history = min(lowerOrderNums, stepIndex, modelOutputs.count - 1)
        let prevSample: Tensor
        if solverOrder == 1 || history < 1 || lowerOrderFinalStep {
            prevSample = firstOrderUpdate(x0, stepIndex: stepIndex, sample: sample)
        } else if solverOrder == 2 || history < 2 || lowerOrderSecondStep {
            prevSample = secondOrderUpdate(stepIndex: stepIndex, sample: sample)
        } else {
            prevSample = thirdOrderUpdate(stepIndex: stepIndex, sample: sample)
        }
        if lowerOrderNums < solverOrder { lowerOrderNums += 1 }
        return SchedulerStepOutput(prevSample: prevSample, predictedOriginal: x0)
    }

    /// `dpm_solver_first_order_update` (DPM-Solver++): x_t = (σ_t/σ_s) x - α_t (e^{-h} - 1) x0.
    private func firstOrderUpdate(_ x0: Tensor, stepIndex: Int, sample: Tensor) -> Tensor {
        let t = Self.alphaSigma(sigmas[stepIndex + 1])
        let s = Self.alphaSigma(sigmas[stepIndex])
        let h = Self.lambda(t) - Self.lambda(s)
        let sampleScale = t.sigma / s.sigma
        let outputScale = t.alpha * (exp(-h) - 1)
        return SchedulerArithmetic.map(sample, x0) { x, d in sampleScale * x - outputScale * d }
    }

    /// `multistep_dpm_solver_second_order_update` (DPM-Solver++, midpoint or Heun).
    private func secondOrderUpdate(stepIndex: Int, sample: Tensor) -> Tensor {
        let t = Self.alphaSigma(sigmas[stepIndex + 1])
        let s0 = Self.alphaSigma(sigmas[stepIndex])
        let s1 = Self.alphaSigma(sigmas[stepIndex - 1])
        let lambdaT = Self.lambda(t), lambdaS0 = Self.lambda(s0), lambdaS1 = Self.lambda(s1)
        let m0 = modelOutputs[modelOutputs.count - 1], m1 = modelOutputs[modelOutputs.count - 2]
        let h = lambdaT - lambdaS0, h0 = lambdaS0 - lambdaS1
        let r0 = h0 / h
        let inverseR0 = 1 / r0
        let sampleScale = t.sigma / s0.sigma
        let expm = exp(-h) - 1
        let d0Scale = t.alpha * expm
        switch solverType {
        case .midpoint:
            let d1Scale = 0.5 * (t.alpha * expm)
            return SchedulerArithmetic.map(sample, m0, m1) { x, a, b in
                let d1 = inverseR0 * (a - b)
                return sampleScale * x - d0Scale * a - d1Scale * d1
            }
        case .heun:
            let d1Scale = t.alpha * (expm / h + 1)
            return SchedulerArithmetic.map(sample, m0, m1) { x, a, b in
                let d1 = inverseR0 * (a - b)
                return sampleScale * x - d0Scale * a + d1Scale * d1
            }
        }
    }

    /// `multistep_dpm_solver_third_order_update` (DPM-Solver++).
    private func thirdOrderUpdate(stepIndex: Int, sample: Tensor) -> Tensor {
        let t = Self.alphaSigma(sigmas[stepIndex + 1])
        let s0 = Self.alphaSigma(sigmas[stepIndex])
        let s1 = Self.alphaSigma(sigmas[stepIndex - 1])
        let s2 = Self.alphaSigma(sigmas[stepIndex - 2])
        let lambdaT = Self.lambda(t), lambdaS0 = Self.lambda(s0)
        let lambdaS1 = Self.lambda(s1), lambdaS2 = Self.lambda(s2)
        let count = modelOutputs.count
        let m0 = modelOutputs[count - 1], m1 = modelOutputs[count - 2], m2 = modelOutputs[count - 3]
        let h = lambdaT - lambdaS0, h0 = lambdaS0 - lambdaS1, h1 = lambdaS1 - lambdaS2
        let r0 = h0 / h, r1 = h1 / h
        let inverseR0 = 1 / r0, inverseR1 = 1 / r1
        let d1Weight = r0 / (r0 + r1)
        let d2Weight = 1 / (r0 + r1)
        let sampleScale = t.sigma / s0.sigma
        let expm = exp(-h) - 1
        let d0Scale = t.alpha * expm
        let d1Scale = t.alpha * (expm / h + 1)
        let d2Scale = t.alpha * ((expm + h) / (h * h) - 0.5)
        let d1Part = SchedulerArithmetic.map(m0, m1, m2) { a, b, c in
            let d10 = inverseR0 * (a - b), d11 = inverseR1 * (b - c)
            return d10 + d1Weight * (d10 - d11)
        }
        let d2Part = SchedulerArithmetic.map(m0, m1, m2) { a, b, c in
            let d10 = inverseR0 * (a - b), d11 = inverseR1 * (b - c)
            return d2Weight * (d10 - d11)
        }
        return SchedulerArithmetic.map(sample, m0, d1Part, d2Part) { x, a, d1, d2 in
            sampleScale * x - d0Scale * a + d1Scale * d1 - d2Scale * d2
        }
    }

    /// `alpha_t * original + sigma_t * noise` at the begin index (img2img's `set_begin_index(t_start)`).
    public func addNoise(to original: Tensor, noise: Tensor, stepIndex: Int) throws -> Tensor {
        try checkStepIndex(stepIndex)
        try checkSameShape(original, noise, "add_noise original vs noise")
        let level = Self.alphaSigma(sigmas[stepIndex])
        return SchedulerArithmetic.map(original, noise) { x, z in level.alpha * x + level.sigma * z }
    }
}
