/// What can go wrong reading a single-file checkpoint in the original (LDM) layout. Each message names the
/// file and says what was expected, so a user can tell a damaged download from an unsupported model.
public enum CheckpointError: Error, Equatable, Sendable {
    /// The file is not a Stable Diffusion 1.x / 2.x / XL checkpoint in the original layout.
    case unrecognized(path: String, detail: String)
    /// A recognised model family or variant that this library does not convert (SDXL refiner, ...).
    case unsupportedVariant(path: String, detail: String)
    /// The keys of one component do not form a consistent layout (missing block indices, an up path that
    /// does not mirror the down path, ...).
    case invalidLayout(path: String, component: String, detail: String)
    /// The component's tensors do not fit its configuration; `mismatches` lists each field with both values.
    case configMismatch(path: String, component: String, configOrigin: String, mismatches: [String])
    /// A config (from the checkpoint's metadata or a config folder) is not a JSON object.
    case invalidConfig(path: String, component: String, detail: String)
    /// A tensor cannot be converted to its diffusers form (e.g. fused q/k/v rows not divisible by 3).
    case cannotConvert(path: String, tensor: String, detail: String)
    /// An option passed by the caller is not valid (e.g. an unknown prediction type).
    case invalidOption(String)
}

extension CheckpointError: CustomStringConvertible {
    public var description: String {
        switch self {
        case .unrecognized(let path, let detail):
            return "'\(path)' is not a Stable Diffusion single-file checkpoint this library can read: \(detail)"
        case .unsupportedVariant(let path, let detail):
            return "'\(path)': unsupported checkpoint: \(detail)"
        case .invalidLayout(let path, let component, let detail):
            return "'\(path)': the \(component) tensors do not form a valid original-layout model: \(detail)"
        case .configMismatch(let path, let component, let configOrigin, let mismatches):
            return "'\(path)': the \(component) in the checkpoint does not match its configuration (\(configOrigin)): "
                + mismatches.joined(separator: "; ")
                + ". If this is a non-standard architecture, pass the model's diffusers configs (configFolder:)."
        case .invalidConfig(let path, let component, let detail):
            return "'\(path)': the \(component) configuration is not valid: \(detail)"
        case .cannotConvert(let path, let tensor, let detail):
            return "'\(path)': cannot convert tensor '\(tensor)': \(detail)"
        case .invalidOption(let detail):
            return "invalid checkpoint option: \(detail)"
        }
    }
}
