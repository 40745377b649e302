import Foundation

/// A diffusers `scheduler_config.json`, field for field; absent fields are nil.
///
/// Each scheduler fills the fields the file does not set with *its own* diffusers defaults (they differ:
/// DDIM spaces timesteps "leading" by default, Euler and DPM-Solver "linspace"). That is also what
/// `OtherScheduler.from_config(pipe.scheduler.config)` does in diffusers, the usual way to switch samplers:
/// the defaults the file's own class filled in are listed in `_use_default_values` and dropped, so only the
/// keys written in the file carry over (SD 1.5's PNDM config has no `timestep_spacing`, so Euler built from
/// it spaces "linspace" while DDIM spaces "leading").
public struct SchedulerConfiguration: Codable, Equatable, Sendable {
    public var className: String?
    public var numTrainTimesteps: Int?
    public var betaStart: Double?
    public var betaEnd: Double?
    public var betaSchedule: String?
    public var trainedBetas: [Double]?
    public var predictionType: String?
    public var timestepSpacing: String?
    public var stepsOffset: Int?
    public var setAlphaToOne: Bool?
    public var clipSample: Bool?
    public var clipSampleRange: Double?
    public var thresholding: Bool?
    public var rescaleBetasZeroSnr: Bool?
    // PNDM
    public var skipPrkSteps: Bool?
    // Euler and DPM-Solver
    public var interpolationType: String?
    public var timestepType: String?
    public var useKarrasSigmas: Bool?
    public var useExponentialSigmas: Bool?
    public var useBetaSigmas: Bool?
    public var sigmaMin: Double?
    public var sigmaMax: Double?
    public var finalSigmasType: String?
    // DPM-Solver
    public var solverOrder: Int?
    public var algorithmType: String?
    public var solverType: String?
    public var lowerOrderFinal: Bool?
    public var eulerAtFinal: Bool?
    public var useLuLambdas: Bool?
    public var useFlowSigmas: Bool?
    public var lambdaMinClipped: Double?
    public var varianceType: String?
    public var useDynamicShifting: Bool?
    // LCM
    public var originalInferenceSteps: Int?
    public var timestepScaling: Double?

    enum CodingKeys: String, CodingKey {
        case className = "_class_name"
        case numTrainTimesteps = "num_train_timesteps"
        case betaStart = "beta_start"
        case betaEnd = "beta_end"
        case betaSchedule = "beta_schedule"
        case trainedBetas = "trained_betas"
        case predictionType = "prediction_type"
        case timestepSpacing = "timestep_spacing"
        case stepsOffset = "steps_offset"
        case setAlphaToOne = "set_alpha_to_one"
        case clipSample = "clip_sample"
        case clipSampleRange = "clip_sample_range"
        case thresholding
        case rescaleBetasZeroSnr = "rescale_betas_zero_snr"
        case skipPrkSteps = "skip_prk_steps"
        case interpolationType = "interpolation_type"
        case timestepType = "timestep_type"
        case useKarrasSigmas = "use_karras_sigmas"
        case useExponentialSigmas = "use_exponential_sigmas"
        case useBetaSigmas = "use_beta_sigmas"
        case sigmaMin = "sigma_min"
        case sigmaMax = "sigma_max"
        case finalSigmasType = "final_sigmas_type"
        case solverOrder = "solver_order"
        case algorithmType = "algorithm_type"
        case solverType = "solver_type"
        case lowerOrderFinal = "lower_order_final"
        case eulerAtFinal = "euler_at_final"
        case useLuLambdas = "use_lu_lambdas"
        case useFlowSigmas = "use_flow_sigmas"
        case lambdaMinClipped = "lambda_min_clipped"
        case varianceType = "variance_type"
        case useDynamicShifting = "use_dynamic_shifting"
        case originalInferenceSteps = "original_inference_steps"
        case timestepScaling = "timestep_scaling"
    }

    public init() {}

    /// Decodes `scheduler_config.json` (unknown keys are ignored, `null` reads as absent). Python's
    /// `Infinity`, `-Infinity` and `NaN` (diffusers writes `"lambda_min_clipped": -Infinity`) are accepted.
    public init(jsonData: Data) throws {
        let decoder = JSONDecoder()
        decoder.nonConformingFloatDecodingStrategy = .convertFromString(
            positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        do {
            self = try decoder.decode(SchedulerConfiguration.self, from: Self.quotingNonFiniteNumbers(jsonData))
        } catch {
            throw SchedulerError.invalidConfiguration("cannot decode scheduler config JSON: \(error)")
        }
    }

    /// The JSON encoding diffusers would write (snake_case keys, non-finite numbers as "inf"/"-inf"/"nan").
    public func jsonData() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.nonConformingFloatEncodingStrategy = .convertToString(
            positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return try encoder.encode(self)
    }

    /// Rewrites the bare tokens `Infinity`, `-Infinity` and `NaN` outside strings as "inf", "-inf", "nan".
    static func quotingNonFiniteNumbers(_ data: Data) -> Data {
        let bytes = [UInt8](data)
        let replacements: [([UInt8], [UInt8])] = [
            (Array("-Infinity".utf8), Array("\"-inf\"".utf8)),
            (Array("Infinity".utf8), Array("\"inf\"".utf8)),
            (Array("NaN".utf8), Array("\"nan\"".utf8)),
        ]
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var inString = false, escaped = false
        var i = 0
        scan: while i < bytes.count {
            let byte = bytes[i]
            if inString {
                if escaped {
                    escaped = false
                } else if byte == UInt8(ascii: "\\") {
                    escaped = true
                } else if byte == UInt8(ascii: "\"") {
                    inString = false
                }
            } else if byte == UInt8(ascii: "\"") {
                inString = true
            } else {
                for (token, quoted) in replacements where bytes[i...].starts(with: token) {
                    out += quoted
                    i += token.count
                    continue scan
                }
            }
            out.append(byte)
            i += 1
        }
        return Data(out)
    }

    /// Reads and decodes a `scheduler_config.json` file.
    public init(contentsOf url: URL) throws {
        let data: Data
        do {
            data = try Data(contentsOf: url)
        } catch {
            throw SchedulerError.invalidConfiguration("cannot read \(url.path): \(error.localizedDescription)")
        }
        try self.init(jsonData: data)
    }

    /// Every field that is nil here takes its value from `defaults`.
    public func filling(_ defaults: SchedulerConfiguration) -> SchedulerConfiguration {
        var merged = self
        func fill<Value>(_ key: WritableKeyPath<SchedulerConfiguration, Value?>) {
            if merged[keyPath: key] == nil { merged[keyPath: key] = defaults[keyPath: key] }
        }
        fill(\.className)
        fill(\.numTrainTimesteps)
        fill(\.betaStart)
        fill(\.betaEnd)
        fill(\.betaSchedule)
        fill(\.trainedBetas)
        fill(\.predictionType)
        fill(\.timestepSpacing)
        fill(\.stepsOffset)
        fill(\.setAlphaToOne)
        fill(\.clipSample)
        fill(\.clipSampleRange)
        fill(\.thresholding)
        fill(\.rescaleBetasZeroSnr)
        fill(\.skipPrkSteps)
        fill(\.interpolationType)
        fill(\.timestepType)
        fill(\.useKarrasSigmas)
        fill(\.useExponentialSigmas)
        fill(\.useBetaSigmas)
        fill(\.sigmaMin)
        fill(\.sigmaMax)
        fill(\.finalSigmasType)
        fill(\.solverOrder)
        fill(\.algorithmType)
        fill(\.solverType)
        fill(\.lowerOrderFinal)
        fill(\.eulerAtFinal)
        fill(\.useLuLambdas)
        fill(\.useFlowSigmas)
        fill(\.lambdaMinClipped)
        fill(\.varianceType)
        fill(\.useDynamicShifting)
        fill(\.originalInferenceSteps)
        fill(\.timestepScaling)
        return merged
    }

    /// A field that `filling(Self.defaults)` guarantees; throws instead of trapping if a default is missing.
    func required<Value>(_ key: KeyPath<SchedulerConfiguration, Value?>, _ name: String) throws -> Value {
        guard let value = self[keyPath: key] else {
            throw SchedulerError.invalidConfiguration("missing '\(name)'")
        }
        return value
    }

    /// A string field parsed into one of `Choice`'s cases; the error lists the accepted values.
    func choice<Choice: RawRepresentable & CaseIterable>(
        _ key: KeyPath<SchedulerConfiguration, String?>, _ name: String, as type: Choice.Type
    ) throws -> Choice where Choice.RawValue == String {
        let raw = try required(key, name)
        guard let value = Choice(rawValue: raw) else {
            let valid = Choice.allCases.map(\.rawValue).joined(separator: ", ")
            throw SchedulerError.invalidConfiguration("\(name) '\(raw)' is not supported (use one of: \(valid))")
        }
        return value
    }
}

/// What the model predicts (`prediction_type`).
public enum PredictionType: String, CaseIterable, Sendable {
    case epsilon
    case vPrediction = "v_prediction"
    case sample
}

/// How inference timesteps are spread over the training range (`timestep_spacing`, Table 2 of
/// "Common Diffusion Noise Schedules and Sample Steps are Flawed").
public enum TimestepSpacing: String, CaseIterable, Sendable {
    case leading
    case trailing
    case linspace
}

/// The training noise schedule (`beta_schedule`).
public enum BetaSchedule: String, CaseIterable, Sendable {
    case linear
    case scaledLinear = "scaled_linear"
    case squaredCosine = "squaredcos_cap_v2"
}

/// What the last sigma of a sigma schedule is (`final_sigmas_type`).
public enum FinalSigmasType: String, CaseIterable, Sendable {
    case zero
    case sigmaMin = "sigma_min"
}
