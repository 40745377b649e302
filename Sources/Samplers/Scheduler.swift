import Compute

/// The interface every sampler shares (diffusers' `SchedulerMixin`): place the timesteps, scale the model
/// input, turn one model output into the next sample, and noise an image for img2img.
///
/// Schedulers are value types with a little state (multistep history, PLMS buffer), so `step` is `mutating`
/// and must be called once per step, in order. Steps are addressed by index into `timesteps`: a
/// text-to-image loop runs `0..<timesteps.count`, an image-to-image loop the range `setImg2ImgTimesteps` returns.
///
/// Tensors may be in any layout (all updates are elementwise); only the noise a stochastic sampler draws
/// depends on it, and the `NoiseSource` owns that.
public protocol Scheduler: Sendable {
    /// diffusers' `order`: model evaluations per step index (1 for all of ours; PNDM's extra PLMS warm-up
    /// evaluation is an extra entry in `timesteps` instead).
    var order: Int { get }

    /// The model's timestep for each step (diffusers' `scheduler.timesteps`; whole numbers except for
    /// Euler with Karras sigmas). Empty until `setTimesteps`.
    var timesteps: [Float] { get }

    /// The sigma schedule, `timesteps.count + 1` values ending in the final sigma, for sigma-based
    /// samplers (Euler, Euler a, DPM-Solver); empty for the others.
    var sigmas: [Float] { get }

    /// The standard deviation of the initial noise: diffusers multiplies the drawn latents by it.
    var initNoiseSigma: Float { get }

    /// `set_timesteps(count)`: places `count` inference steps and resets the step state.
    mutating func setTimesteps(_ count: Int) throws

    /// Image-to-image: sets the timesteps for `count` steps at `strength` and returns the step indices to run.
    /// Its first index is also the noise level to pass to `addNoise`.
    mutating func setImg2ImgTimesteps(_ count: Int, strength: Double) throws -> Range<Int>

    /// `scale_model_input`: what the model sees at `stepIndex` (Euler-type samplers divide by sqrt(sigma² + 1)).
    func scaleModelInput(_ sample: Tensor, stepIndex: Int) throws -> Tensor

    /// `step`: the sample at the next step from the model output at `stepIndex`.
    mutating func step<Noise: NoiseSource>(
        modelOutput: Tensor, stepIndex: Int, sample: Tensor, noise: inout Noise
    ) throws -> SchedulerStepOutput

    /// `add_noise`: `original` noised to the level of step `stepIndex` (img2img's starting latents).
    func addNoise(to original: Tensor, noise: Tensor, stepIndex: Int) throws -> Tensor
}

/// One step's result.
public struct SchedulerStepOutput: Sendable {
    /// The sample to feed the next step (diffusers' `prev_sample`).
    public var prevSample: Tensor
    /// The denoised estimate x0 at this step (`pred_original_sample`, LCM's `denoised`), for previews;
    /// nil for PNDM.
    public var predictedOriginal: Tensor?

    public init(prevSample: Tensor, predictedOriginal: Tensor?) {
        self.prevSample = prevSample
        self.predictedOriginal = predictedOriginal
    }
}

/// Why a scheduler could not be built or stepped; the message says what to change.
public enum SchedulerError: Error, Equatable, CustomStringConvertible {
    case invalidConfiguration(String)
    case unsupported(String)
    case invalidStepCount(Int, maximum: Int)
    case invalidStrength(Double)
    case timestepsNotSet
    case stepIndexOutOfRange(Int, count: Int)
    case shapeMismatch(String)
    case unknownSampler(String, valid: [String])

    public var description: String {
        switch self {
        case .invalidConfiguration(let message): "invalid scheduler configuration: \(message)"
        case .unsupported(let message): "unsupported scheduler setting: \(message)"
        case .invalidStepCount(let count, let maximum): "number of steps must be in 1...\(maximum), got \(count)"
        case .invalidStrength(let strength): "strength must be in [0, 1], got \(strength)"
        case .timestepsNotSet: "setTimesteps must be called before stepping the scheduler"
        case .stepIndexOutOfRange(let index, let count): "step index \(index) is outside 0..<\(count)"
        case .shapeMismatch(let message): "shape mismatch: \(message)"
        case .unknownSampler(let name, let valid):
            "unknown sampler '\(name)'; valid samplers: \(valid.joined(separator: ", "))"
        }
    }
}

extension Scheduler {
    public var order: Int { 1 }

    /// diffusers' img2img `get_timesteps`: `t_start = count - min(int(count * strength), count)`, the loop
    /// starts at `t_start * order` (and Euler/DPM-type schedulers get `set_begin_index(t_start * order)`).
    public mutating func setImg2ImgTimesteps(_ count: Int, strength: Double) throws -> Range<Int> {
        guard strength >= 0, strength <= 1 else { throw SchedulerError.invalidStrength(strength) }
        try setTimesteps(count)
        let initTimestep = min(Int((Double(count) * strength).rounded(.towardZero)), count)
        let start = max(count - initTimestep, 0) * order
        return min(start, timesteps.count)..<timesteps.count
    }

    /// Throws unless `stepIndex` addresses a timestep.
    func checkStepIndex(_ stepIndex: Int) throws {
        guard !timesteps.isEmpty else { throw SchedulerError.timestepsNotSet }
        guard stepIndex >= 0, stepIndex < timesteps.count else {
            throw SchedulerError.stepIndexOutOfRange(stepIndex, count: timesteps.count)
        }
    }
}

/// Throws unless the model output and the sample have one shape.
func checkSameShape(_ a: Tensor, _ b: Tensor, _ what: String) throws {
    guard a.shape == b.shape else {
        throw SchedulerError.shapeMismatch("\(what): \(a.shape) vs \(b.shape)")
    }
}

/// Throws unless `count` is a usable number of inference steps.
func checkStepCount(_ count: Int, trainTimesteps: Int) throws {
    guard count >= 1, count <= trainTimesteps else {
        throw SchedulerError.invalidStepCount(count, maximum: trainTimesteps)
    }
}
