/// Everything that can go wrong reading or writing weight files. Each message names the file (and the
/// tensor, where there is one) and says what is wrong, so a user can act on it without a debugger.
public enum WeightsError: Error, Equatable, Sendable {
    /// The file or folder could not be opened (missing, unreadable, not a regular file, mmap failed).
    case cannotOpen(path: String, reason: String)
    /// The file ends before the structure it declares.
    case truncated(path: String, detail: String)
    /// The safetensors header is malformed (length, encoding, JSON, `__metadata__`).
    case invalidHeader(path: String, detail: String)
    /// One tensor's header entry is malformed (dtype, shape, data_offsets, byte count).
    case invalidTensorEntry(path: String, tensor: String, detail: String)
    /// Two tensors' byte ranges overlap.
    case overlappingTensors(path: String, first: String, second: String)
    /// The data region has bytes that belong to no tensor (a hole, or bytes after the last tensor).
    case uncoveredData(path: String, detail: String)
    /// A tensor stored as an integer or boolean type was requested as Float32.
    case notFloatingPoint(path: String, tensor: String, dtype: String)
    /// No tensor of that name in the file, shard set or folder.
    case tensorNotFound(source: String, tensor: String)
    /// A tensor exists but does not have the shape the caller needs.
    case shapeMismatch(source: String, tensor: String, expected: [Int], actual: [Int])
    /// A JSON file (`model_index.json`, a shard index, a config) is malformed.
    case invalidJSON(path: String, detail: String)
    /// A sharded index names a shard file that is not on disk.
    case missingShard(index: String, shard: String)
    /// A pickle checkpoint (`.ckpt`, `.pt`, `.pth`, `.bin`) was offered; these are refused, not loaded.
    case pickleRefused(path: String)
    /// A file or folder the layout requires is absent.
    case missingFile(path: String, what: String)
    /// `model_index.json` does not list the component, or lists it without a folder.
    case missingComponent(folder: String, component: String, available: [String])
    /// A component folder has no weight file in a supported format.
    case noWeights(folder: String, tried: [String])
    /// The file's type is not one this library reads.
    case unsupportedFormat(path: String, detail: String)
    /// A `.npy` file is malformed or uses a layout this reader does not support.
    case invalidNumPy(path: String, detail: String)
    /// Writing a file failed.
    case writeFailed(path: String, reason: String)
}

extension WeightsError: CustomStringConvertible {
    public var description: String {
        switch self {
        case .cannotOpen(let path, let reason):
            return "cannot open '\(path)': \(reason)"
        case .truncated(let path, let detail):
            return "'\(path)' is truncated: \(detail)"
        case .invalidHeader(let path, let detail):
            return "'\(path)' has an invalid safetensors header: \(detail)"
        case .invalidTensorEntry(let path, let tensor, let detail):
            return "'\(path)': tensor '\(tensor)': \(detail)"
        case .overlappingTensors(let path, let first, let second):
            return "'\(path)': tensors '\(first)' and '\(second)' have overlapping data_offsets"
        case .uncoveredData(let path, let detail):
            return "'\(path)': the data region is not fully covered by tensors: \(detail)"
        case .notFloatingPoint(let path, let tensor, let dtype):
            return "'\(path)': tensor '\(tensor)' has dtype \(dtype), which is not a floating-point type and "
                + "cannot be loaded as Float32"
        case .tensorNotFound(let source, let tensor):
            return "'\(source)' has no tensor named '\(tensor)'"
        case .shapeMismatch(let source, let tensor, let expected, let actual):
            return "'\(source)': tensor '\(tensor)' has shape \(actual), expected \(expected)"
        case .invalidJSON(let path, let detail):
            return "'\(path)' is not valid: \(detail)"
        case .missingShard(let index, let shard):
            return "'\(index)' refers to shard '\(shard)', which is not on disk next to the index"
        case .pickleRefused(let path):
            return "'\(path)' is a PyTorch pickle file. Pickle files can execute arbitrary code when loaded, so "
                + "SwiftDiffusion does not read them. Use the model's .safetensors version, or convert it once with "
                + "Python: `import torch; from safetensors.torch import save_file; "
                + "sd = torch.load(PATH, map_location='cpu', weights_only=True); "
                + "save_file({k: v.contiguous() for k, v in sd.get('state_dict', sd).items()}, OUT + '.safetensors')` "
                + "(or `convert` from the safetensors project)."
        case .missingFile(let path, let what):
            return "missing \(what): '\(path)'"
        case .missingComponent(let folder, let component, let available):
            let list = available.isEmpty ? "none" : available.joined(separator: ", ")
            return "'\(folder)' has no component '\(component)' in model_index.json (components: \(list))"
        case .noWeights(let folder, let tried):
            return "'\(folder)' has no weights in a supported format (looked for \(tried.joined(separator: ", ")))"
        case .unsupportedFormat(let path, let detail):
            return "'\(path)': unsupported format: \(detail)"
        case .invalidNumPy(let path, let detail):
            return "'\(path)' is not a supported .npy file: \(detail)"
        case .writeFailed(let path, let reason):
            return "cannot write '\(path)': \(reason)"
        }
    }
}
