import Compute

/// PLMS, the pseudo linear multistep half of PNDM (Liu et al. 2022), as diffusers' `PNDMScheduler` with
/// `skip_prk_steps=True` (Stable Diffusion's setting; AUTOMATIC1111's "PLMS").
///
/// It runs `count + 1` model evaluations: `timesteps` repeats the second-to-last training timestep of the
/// schedule, and the second evaluation redoes the first step with the average of the first two outputs.
/// Later steps combine up to four past outputs (Adams-Bashforth).
public struct PNDMScheduler: Scheduler {
    /// `PNDMScheduler.__init__` defaults.
    public static let defaults: SchedulerConfiguration = {
        var c = SchedulerConfiguration()
        c.className = "PNDMScheduler"
        c.numTrainTimesteps = 1000
        c.betaStart = 0.0001
        c.betaEnd = 0.02
        c.betaSchedule = "linear"
        c.skipPrkSteps = false
        c.setAlphaToOne = false
        c.predictionType = "epsilon"
        c.timestepSpacing = "leading"
        c.stepsOffset = 0
        return c
    }()

    public let configuration: SchedulerConfiguration
    let schedule: NoiseSchedule
    let predictionType: PredictionType
    let spacing: TimestepSpacing
    let stepsOffset: Int
    let finalAlphaCumprod: Float

    public private(set) var timesteps: [Float] = []
    private var integerTimesteps: [Int] = []
    private var stepCount = 0
    /// Past (PLMS) model outputs, oldest first; at most four are used.
    private var pastOutputs: [Tensor] = []
    private var counter = 0
    private var firstSample: Tensor?

    public var sigmas: [Float] { [] }
    public var initNoiseSigma: Float { 1 }

    public init(configuration: SchedulerConfiguration) throws {
        var c = configuration.filling(Self.defaults)
        c.rescaleBetasZeroSnr = false  // not a PNDMScheduler setting: diffusers ignores it in a config
        guard try c.required(\.skipPrkSteps, "skip_prk_steps") else {
            throw SchedulerError.unsupported(
                "PNDM with skip_prk_steps=false (the Runge-Kutta warm-up); set skip_prk_steps to true for PLMS")
        }
        self.configuration = c
        schedule = try NoiseSchedule(c)
        predictionType = try c.choice(\.predictionType, "prediction_type", as: PredictionType.self)
        guard predictionType != .sample else {
            throw SchedulerError.unsupported("prediction_type 'sample' with PNDM (use epsilon or v_prediction)")
        }
        spacing = try c.choice(\.timestepSpacing, "timestep_spacing", as: TimestepSpacing.self)
        stepsOffset = try c.required(\.stepsOffset, "steps_offset")
        finalAlphaCumprod = try c.required(\.setAlphaToOne, "set_alpha_to_one") ? 1 : schedule.alphasCumprod[0]
    }

    public mutating func setTimesteps(_ count: Int) throws {
        let train = schedule.trainTimesteps
        try checkStepCount(count, trainTimesteps: train)
        // `_timesteps`, ascending.
        let ascending: [Int]
        switch spacing {
        case .linspace:
            ascending = NumPyReference.linspace(0, Double(train - 1), count).map { Int(NumPyReference.round($0)) }
        case .leading:
            let ratio = train / count
            ascending = (0..<count).map { $0 * ratio + stepsOffset }
        case .trailing:
            let ratio = Double(train) / Double(count)
            ascending = NumPyReference.arange(Double(train), 0, -ratio).reversed().map { Int(NumPyReference.round($0)) - 1 }
        }
        // plms_timesteps = concat(_t[:-1], _t[-2:-1], _t[-1:])[::-1]
        let n = ascending.count
        var plms = Array(ascending[0..<(n - 1)])
        if n >= 2 { plms.append(ascending[n - 2]) }
        plms.append(ascending[n - 1])
        integerTimesteps = plms.reversed()
        timesteps = integerTimesteps.map(Float.init)
        stepCount = count
        pastOutputs = []
        counter = 0
        firstSample = nil
    }

    public func scaleModelInput(_ sample: Tensor, stepIndex: Int) throws -> Tensor {
        try checkStepIndex(stepIndex)
        return sample
    }

    /// `step_plms`. The multistep state advances with each call, whatever `stepIndex` is, as in diffusers.
    public mutating func step<Noise: NoiseSource>(
        modelOutput: Tensor, stepIndex: Int, sample: Tensor, noise: inout Noise
    ) throws -> SchedulerStepOutput {
        try checkStepIndex(stepIndex)
        try checkSameShape(modelOutput, sample, "PNDM step model output vs sample")
        let ratio = schedule.trainTimesteps / stepCount
        var timestep = integerTimesteps[stepIndex]
        var prevTimestep = timestep - ratio
        if counter != 1 {
            pastOutputs = Array(pastOutputs.suffix(3))
            pastOutputs.append(modelOutput)
        } else {
            prevTimestep = timestep
            timestep = timestep + ratio
        }

        var combined = modelOutput
        var current = sample
        let e = pastOutputs
        if e.count == 1 && counter == 0 {
            firstSample = sample
        } else if e.count == 1 && counter == 1 {
            combined = SchedulerArithmetic.map(modelOutput, e[0]) { m, e1 in (m + e1) / 2 }
            current = firstSample ?? sample
            firstSample = nil
        } else if e.count == 2 {
            combined = SchedulerArithmetic.map(e[1], e[0]) { e1, e2 in (3 * e1 - e2) / 2 }
        } else if e.count == 3 {
            combined = SchedulerArithmetic.map(e[2], e[1], e[0]) { e1, e2, e3 in (23 * e1 - 16 * e2 + 5 * e3) / 12 }
        } else {
            let oneTwentyFourth = Float(1.0 / 24.0)
            combined = SchedulerArithmetic.map(e[3], e[2], e[1], e[0]) { e1, e2, e3, e4 in
                oneTwentyFourth * (55 * e1 - 59 * e2 + 37 * e3 - 9 * e4)
            }
        }
        let prevSample = previousSample(current, timestep: timestep, prevTimestep: prevTimestep, modelOutput: combined)
        counter += 1
        return SchedulerStepOutput(prevSample: prevSample, predictedOriginal: nil)
    }

    /// `_get_prev_sample`: formula (9) of the PNDM paper.
    private func previousSample(_ sample: Tensor, timestep: Int, prevTimestep: Int, modelOutput: Tensor) -> Tensor {
        let alphaProd = schedule.alphasCumprod[timestep]
        let alphaProdPrev = prevTimestep >= 0 ? schedule.alphasCumprod[prevTimestep] : finalAlphaCumprod
        let betaProd = 1 - alphaProd
        let betaProdPrev = 1 - alphaProdPrev
        var epsilon = modelOutput
        if predictionType == .vPrediction {
            let sqrtAlpha = alphaProd.squareRoot(), sqrtBeta = betaProd.squareRoot()
            epsilon = SchedulerArithmetic.map(modelOutput, sample) { v, x in sqrtAlpha * v + sqrtBeta * x }
        }
        let sampleCoefficient = (alphaProdPrev / alphaProd).squareRoot()
        let denominator = alphaProd * betaProdPrev.squareRoot() + (alphaProd * betaProd * alphaProdPrev).squareRoot()
        let difference = alphaProdPrev - alphaProd
        return SchedulerArithmetic.map(sample, epsilon) { x, e in
            sampleCoefficient * x - difference * e / denominator
        }
    }

    public func addNoise(to original: Tensor, noise: Tensor, stepIndex: Int) throws -> Tensor {
        try checkStepIndex(stepIndex)
        return try AlphaNoising.addNoise(original, noise, alphaProd: schedule.alphasCumprod[integerTimesteps[stepIndex]])
    }
}
