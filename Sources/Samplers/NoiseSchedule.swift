#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The training noise schedule every scheduler starts from: betas, alphas and their cumulative product, in
/// float32 exactly as diffusers' `__init__` computes them with torch.
struct NoiseSchedule: Sendable {
    let betas: [Float]
    let alphas: [Float]
    let alphasCumprod: [Float]

    var trainTimesteps: Int { betas.count }

    /// Reads `num_train_timesteps`, `beta_start`, `beta_end`, `beta_schedule`, `trained_betas` and
    /// `rescale_betas_zero_snr` from a configuration whose defaults are already filled in.
    init(_ config: SchedulerConfiguration) throws {
        let count = try config.required(\.numTrainTimesteps, "num_train_timesteps")
        guard count >= 2 else { throw SchedulerError.invalidConfiguration("num_train_timesteps must be at least 2") }
        var betas: [Float]
        if let trained = config.trainedBetas {
            guard !trained.isEmpty else { throw SchedulerError.invalidConfiguration("trained_betas is empty") }
            betas = trained.map { Float($0) }
        } else {
            let start = try config.required(\.betaStart, "beta_start")
            let end = try config.required(\.betaEnd, "beta_end")
            switch try config.choice(\.betaSchedule, "beta_schedule", as: BetaSchedule.self) {
            case .linear:
                betas = TorchReference.linspaceFloat32(start, end, count)
            case .scaledLinear:
                // Python's `beta_start ** 0.5` (C pow), then float32 linspace, then `** 2` (x * x).
                betas = TorchReference.linspaceFloat32(pow(start, 0.5), pow(end, 0.5), count).map { $0 * $0 }
            case .squaredCosine:
                betas = Self.cosineBetas(count)
            }
        }
        if try config.required(\.rescaleBetasZeroSnr, "rescale_betas_zero_snr") {
            betas = Self.rescaleZeroTerminalSNR(betas)
        }
        let alphas = betas.map { 1 - $0 }
        self.betas = betas
        self.alphas = alphas
        self.alphasCumprod = TorchReference.cumulativeProduct(alphas)
    }

    /// `betas_for_alpha_bar(count)` with the cosine transform (computed in Python floats, stored as float32).
    static func cosineBetas(_ count: Int, maxBeta: Double = 0.999) -> [Float] {
        func alphaBar(_ t: Double) -> Double { pow(cos((t + 0.008) / 1.008 * Double.pi / 2), 2) }
        return (0..<count).map { i in
            let t1 = Double(i) / Double(count)
            let t2 = Double(i + 1) / Double(count)
            return Float(min(1 - alphaBar(t2) / alphaBar(t1), maxBeta))
        }
    }

    /// `rescale_zero_terminal_snr` (arXiv 2305.08891, Algorithm 1) in float32 torch ops.
    static func rescaleZeroTerminalSNR(_ betas: [Float]) -> [Float] {
        let alphas = betas.map { 1 - $0 }
        var sqrtBar = TorchReference.cumulativeProduct(alphas).map { $0.squareRoot() }
        let first = sqrtBar[0], last = sqrtBar[sqrtBar.count - 1]
        let scale = first / (first - last)
        sqrtBar = sqrtBar.map { ($0 - last) * scale }
        let bar = sqrtBar.map { $0 * $0 }
        var rescaled = [bar[0]]
        for i in 1..<bar.count { rescaled.append(bar[i] / bar[i - 1]) }
        return rescaled.map { 1 - $0 }
    }

    /// `((1 - alphas_cumprod) / alphas_cumprod) ** 0.5` in float32: the noise level of each training timestep.
    static func sigmas(_ alphasCumprod: [Float]) -> [Float] {
        alphasCumprod.map { ((1 - $0) / $0).squareRoot() }
    }
}

/// Sigma-schedule helpers shared by Euler and DPM-Solver (diffusers' `_sigma_to_t`, `_convert_to_karras`).
enum SigmaSchedule {
    /// `np.interp(timesteps, arange(len(sigmas)), sigmas)`: the training sigmas interpolated at each timestep.
    static func interpolate(_ sigmas: [Float], at timesteps: [Double]) -> [Double] {
        let xp = (0..<sigmas.count).map(Double.init)
        let fp = sigmas.map(Double.init)
        return timesteps.map { NumPyReference.interp($0, xp, fp) }
    }

    /// Karras et al. (2022) sigmas: `(max^(1/ρ) + ramp (min^(1/ρ) - max^(1/ρ)))^ρ`, ρ = 7, in float64.
    static func karras(sigmaMin: Double, sigmaMax: Double, count: Int) -> [Double] {
        let rho = 7.0
        let minInverseRho = pow(sigmaMin, 1 / rho)
        let maxInverseRho = pow(sigmaMax, 1 / rho)
        return NumPyReference.linspace(0, 1, count).map { ramp in
            pow(maxInverseRho + ramp * (minInverseRho - maxInverseRho), rho)
        }
    }

    /// `_sigma_to_t`: the fractional training timestep whose sigma is `sigma`, interpolating in log-sigma.
    static func timestep(forSigma sigma: Double, logSigmas: [Float]) -> Double {
        let logSigma = log(max(sigma, 1e-10))
        // The last index whose log-sigma is <= log(sigma) (0 when there is none), kept below the end.
        var low = 0
        for (i, value) in logSigmas.enumerated() where logSigma - Double(value) >= 0 { low = i }
        low = min(low, logSigmas.count - 2)
        let lowLog = Double(logSigmas[low]), highLog = Double(logSigmas[low + 1])
        let weight = min(max((lowLog - logSigma) / (lowLog - highLog), 0), 1)
        return (1 - weight) * Double(low) + weight * Double(low + 1)
    }

    /// `np.log` of the float32 training sigmas (float32 results).
    static func logSigmas(_ sigmas: [Float]) -> [Float] { sigmas.map { log($0) } }
}
