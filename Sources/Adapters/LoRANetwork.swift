import Compute
import Foundation
import Weights

/// The model component a LoRA module patches.
public enum LoRAComponent: String, Sendable, Hashable, CaseIterable {
    case unet
    case textEncoder = "text_encoder"
    case textEncoder2 = "text_encoder_2"
}

/// The file layouts LoRAs come in.
public enum LoRAFormat: String, Sendable {
    /// kohya/sd-scripts: `lora_unet_<path>.lora_down.weight`, `.lora_up.weight`, `.alpha` (also LoCon).
    case kohya
    /// diffusers: `unet.<path>.lora_A.weight` / `lora_B.weight` (PEFT-style) or `.lora.down/up.weight`, or the
    /// older attention-processor layout `<path>.processor.to_q_lora.down.weight`.
    case diffusers
    /// A raw PEFT adapter: `base_model.model.<path>.lora_A.weight` with `adapter_config.json` beside it.
    case peft
}

/// One low-rank pair in canonical form: `delta W = (alpha / rank) * up @ down`.
public struct LoRAModule: Sendable {
    public let component: LoRAComponent
    /// The target module's name as the file spells it, after the format's prefix and suffix are removed:
    /// dotted diffusers paths for the diffusers and PEFT formats, underscore-joined for kohya.
    public let name: String
    /// `[rank, in]` (linear), `[rank, in, 1, 1]` (a 1x1 conv), or channels-last `[rank, kh, kw, in]` for a larger
    /// kernel: the engine's kernel layout, reordered from the file's `[rank, in, kh, kw]` as the file loads. In the
    /// file's number format (fp16 and bf16 stay narrow, `StoredTensor`), as is `up`.
    public let down: StoredTensor
    /// `[out, rank]` or `[out, rank, 1, 1]`.
    public let up: StoredTensor
    /// The stored alpha; `nil` means alpha = rank (scale 1).
    public let alpha: Float?
    /// `down`'s shape as the file stores it (PyTorch's `[rank, in, kh, kw]` for a conv), for checks and messages.
    public let downShape: [Int]

    public var rank: Int { down.shape[0] }
    /// `alpha / rank`.
    public var scale: Float { (alpha ?? Float(rank)) / Float(max(rank, 1)) }
    public var isConvolution: Bool { downShape.count == 4 && (downShape[2] > 1 || downShape[3] > 1) }
}

/// A LoRA file converted to canonical modules.
public struct LoRANetwork: Sendable {
    public let format: LoRAFormat
    public let modules: [LoRAModule]
    /// Tensors that were not understood (unsupported LyCORIS variants, stray keys), reported to the user.
    public let ignoredKeys: [String]
    public let source: String
    /// The memory the modules' factors hold: the file's read buffer they view (the whole file), or their own copies.
    public let bytes: Int

    public var components: Set<LoRAComponent> { Set(modules.map(\.component)) }
}

/// Why a LoRA could not be used.
public enum LoRAError: Error, CustomStringConvertible, Equatable, Sendable {
    case unrecognizedFormat(source: String, sample: [String])
    case incompletePair(source: String, module: String, missing: String)
    case badShape(source: String, module: String, detail: String)
    case shapeMismatch(source: String, module: String, layer: String, detail: String)
    /// An alpha or a weight that is NaN or infinite (it would turn every patched output into NaN).
    case invalidValue(source: String, module: String, detail: String)
    case unsupported(source: String, detail: String)

    public var description: String {
        switch self {
        case .unrecognizedFormat(let source, let sample):
            "'\(source)' is not a LoRA in a known layout (kohya, diffusers, PEFT); first keys: \(sample.joined(separator: ", "))"
        case .incompletePair(let source, let module, let missing):
            "'\(source)': LoRA module '\(module)' has no \(missing) tensor"
        case .badShape(let source, let module, let detail):
            "'\(source)': LoRA module '\(module)': \(detail)"
        case .shapeMismatch(let source, let module, let layer, let detail):
            "'\(source)': LoRA module '\(module)' does not fit layer '\(layer)': \(detail)"
        case .invalidValue(let source, let module, let detail):
            "'\(source)': LoRA module '\(module)': \(detail)"
        case .unsupported(let source, let detail):
            "'\(source)': \(detail)"
        }
    }
}

extension LoRANetwork {
    /// Files of at most this many bytes are read into memory, not mapped, and their factors kept as views of that buffer:
    /// a LoRA is read whole, once, and the buffer is then all it holds. (A larger buffer would first take the activation
    /// buffers the tensor buffer cache parks for the UNet, which an allocation of 96 MiB or more gives back; a larger file
    /// costs enough that copying its factors out of a mapping weighs little.)
    public static let readLimit = 64 << 20

    /// Reads a `.safetensors` LoRA and converts it to canonical modules. Pickle files are refused by the
    /// weights layer; a PEFT adapter's `adapter_config.json` is read from the same folder.
    public static func load(contentsOf url: URL) throws -> LoRANetwork {
        let file = try SafeTensorsFile(contentsOf: url, readingUpTo: readLimit)
        var peftConfig: Data?
        let configURL = url.deletingLastPathComponent().appendingPathComponent("adapter_config.json")
        if FileManager.default.fileExists(atPath: configURL.path) { peftConfig = try? Data(contentsOf: configURL) }
        return try parse(file, metadata: file.metadata, peftConfig: peftConfig, source: url.path)
    }

    /// Converts the tensors of `weights` (one LoRA file) to canonical modules.
    public static func parse(
        _ weights: any WeightSource, metadata: [String: String] = [:], peftConfig: Data? = nil, source: String
    ) throws -> LoRANetwork {
        let names = weights.names
        let format: LoRAFormat
        if names.contains(where: { $0.hasPrefix("lora_unet_") || $0.hasPrefix("lora_te") }) {
            format = .kohya
        } else if names.contains(where: { $0.hasPrefix("base_model.model.") }) {
            format = .peft
        } else if names.contains(where: { $0.contains(".lora_A.") || $0.contains(".lora.down.") || $0.contains("_lora.down.") }) {
            format = .diffusers
        } else {
            throw LoRAError.unrecognizedFormat(source: source, sample: Array(names.prefix(5)))
        }
        var pairs: [String: (component: LoRAComponent, down: String?, up: String?, alpha: String?)] = [:]
        var ignored: [String] = []
        for key in names {
            guard let parsed = parseKey(key, format: format) else {
                ignored.append(key)
                continue
            }
            let id = parsed.component.rawValue + "/" + parsed.name
            var entry = pairs[id] ?? (parsed.component, nil, nil, nil)
            switch parsed.role {
            case .down: entry.down = key
            case .up: entry.up = key
            case .alpha: entry.alpha = key
            }
            pairs[id] = entry
        }
        let defaultAlphas = try adapterAlphas(format: format, metadata: metadata, peftConfig: peftConfig)
        // Every pair complete first, then all factors read at once (one allocation for a file's factors).
        var complete: [(name: String, component: LoRAComponent, downKey: String, upKey: String, alpha: String?)] = []
        for (id, entry) in pairs.sorted(by: { $0.key < $1.key }) {
            let name = String(id.drop { $0 != "/" }.dropFirst())
            guard let downKey = entry.down else {
                if entry.up == nil { ignored.append(contentsOf: [entry.alpha].compactMap { $0 }); continue }
                throw LoRAError.incompletePair(source: source, module: name, missing: "down (A)")
            }
            guard let upKey = entry.up else { throw LoRAError.incompletePair(source: source, module: name, missing: "up (B)") }
            complete.append((name, entry.component, downKey, upKey, entry.alpha))
        }
        // Every factor and alpha at once, as stored: views of the file's read buffer. Each factor is checked, and a
        // convolution's down reordered channels-last, as soon as it is handed over (still in cache).
        let factorCount = 2 * complete.count
        let alphaKeys = complete.compactMap(\.alpha)
        let stored = try weights.storedTensors(complete.flatMap { [$0.downKey, $0.upKey] } + alphaKeys) { index, tensor in
            guard index < factorCount else { return tensor }
            let entry = complete[index / 2], isDown = index % 2 == 0
            if let bad = tensor.firstNonFinite() {
                throw LoRAError.invalidValue(
                    source: source, module: entry.name,
                    detail: "\(isDown ? "down (\(entry.downKey))" : "up (\(entry.upKey))") holds \(tensor.element(bad)) at element "
                        + "\(bad); every weight must be a finite number")
            }
            guard isDown, tensor.rank == 4, tensor.shape[2] * tensor.shape[3] > 1 else { return tensor }
            return tensor.channelsLastKernelInPlace()
        }
        var alphas = stored.tensors[factorCount...].makeIterator()
        var modules: [LoRAModule] = []
        for (index, entry) in complete.enumerated() {
            let (name, downKey) = (entry.name, entry.downKey)
            let down = stored.tensors[2 * index], up = stored.tensors[2 * index + 1]
            let downShape = try weights.shape(of: downKey)
            try checkPair(downShape: downShape, upShape: up.shape, module: name, source: source)
            var alpha: Float?
            if let alphaKey = entry.alpha {
                let value = alphas.next()!
                guard value.count == 1 else {
                    throw LoRAError.badShape(
                        source: source, module: name, detail: "alpha '\(alphaKey)' has shape \(value.shape), expected one number")
                }
                alpha = value.element(0)
            } else {
                alpha = defaultAlphas[entry.component]
            }
            if let alpha, !alpha.isFinite {
                throw LoRAError.invalidValue(
                    source: source, module: name, detail: "alpha is \(alpha); it must be a finite number")
            }
            modules.append(LoRAModule(component: entry.component, name: name, down: down, up: up, alpha: alpha, downShape: downShape))
        }
        guard !modules.isEmpty else { throw LoRAError.unrecognizedFormat(source: source, sample: Array(names.prefix(5))) }
        return LoRANetwork(format: format, modules: modules, ignoredKeys: ignored.sorted(), source: source, bytes: stored.bytes)
    }

    enum Role { case down, up, alpha }

    /// Splits one tensor name into (component, module name, role), or nil if it is not a LoRA factor.
    static func parseKey(_ key: String, format: LoRAFormat) -> (component: LoRAComponent, name: String, role: Role)? {
        switch format {
        case .kohya:
            let suffixes: [(String, Role)] = [(".lora_down.weight", .down), (".lora_up.weight", .up), (".alpha", .alpha)]
            guard let (suffix, role) = suffixes.first(where: { key.hasSuffix($0.0) }) else { return nil }
            let stem = String(key.dropLast(suffix.count))
            let prefixes: [(String, LoRAComponent)] = [
                ("lora_unet_", .unet), ("lora_te1_", .textEncoder), ("lora_te2_", .textEncoder2), ("lora_te_", .textEncoder),
            ]
            guard let (prefix, component) = prefixes.first(where: { stem.hasPrefix($0.0) }) else { return nil }
            return (component, String(stem.dropFirst(prefix.count)), role)
        case .diffusers, .peft:
            var stem = key
            var component = LoRAComponent.unet
            if format == .peft {
                stem = String(stem.dropFirst("base_model.model.".count))
            }
            for candidate in [LoRAComponent.textEncoder2, .textEncoder, .unet] where stem.hasPrefix(candidate.rawValue + ".") {
                component = candidate
                stem = String(stem.dropFirst(candidate.rawValue.count + 1))
                break
            }
            let suffixes: [(String, Role)] = [
                (".lora_A.weight", .down), (".lora_B.weight", .up), (".lora.down.weight", .down), (".lora.up.weight", .up),
                (".lora_linear_layer.down.weight", .down), (".lora_linear_layer.up.weight", .up), (".alpha", .alpha),
            ]
            if let (suffix, role) = suffixes.first(where: { stem.hasSuffix($0.0) }) {
                return (component, String(stem.dropLast(suffix.count)), role)
            }
            // Attention-processor layout: `<attn>.processor.to_q_lora.down.weight`.
            let processorSuffixes: [(String, String, Role)] = [
                ("to_q_lora.down.weight", "to_q", .down), ("to_q_lora.up.weight", "to_q", .up),
                ("to_k_lora.down.weight", "to_k", .down), ("to_k_lora.up.weight", "to_k", .up),
                ("to_v_lora.down.weight", "to_v", .down), ("to_v_lora.up.weight", "to_v", .up),
                ("to_out_lora.down.weight", "to_out.0", .down), ("to_out_lora.up.weight", "to_out.0", .up),
            ]
            for (suffix, target, role) in processorSuffixes where stem.hasSuffix(suffix) {
                var base = String(stem.dropLast(suffix.count))
                if base.hasSuffix("processor.") { base = String(base.dropLast("processor.".count)) }
                return (component, base + target, role)
            }
            return nil
        }
    }

    /// Alphas that apply to every module of a component when the file has no `.alpha` tensors: diffusers'
    /// `lora_adapter_metadata` and PEFT's `adapter_config.json` (`lora_alpha`).
    static func adapterAlphas(format: LoRAFormat, metadata: [String: String], peftConfig: Data?) throws -> [LoRAComponent: Float] {
        var result: [LoRAComponent: Float] = [:]
        if let text = metadata["lora_adapter_metadata"], let object = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] {
            for component in LoRAComponent.allCases {
                if let alpha = object["\(component.rawValue).lora_alpha"] as? NSNumber { result[component] = alpha.floatValue }
            }
        }
        if format == .peft, let peftConfig, let object = try? JSONSerialization.jsonObject(with: peftConfig) as? [String: Any],
            let alpha = object["lora_alpha"] as? NSNumber
        {
            for component in LoRAComponent.allCases where result[component] == nil { result[component] = alpha.floatValue }
        }
        return result
    }

    /// The factors' shapes on their own: `down` `[rank, in]` or `[rank, in, kh, kw]`, `up` `[out, rank]` or
    /// `[out, rank, 1, 1]`, the same rank ≥ 1 in both, and no empty dimension.
    static func checkPair(downShape down: [Int], upShape up: [Int], module: String, source: String) throws {
        guard down.count == 2 || down.count == 4, up.count == 2 || up.count == 4 else {
            throw LoRAError.badShape(source: source, module: module, detail: "down \(down) / up \(up) must be 2-D or 4-D")
        }
        guard down[0] >= 1 else {
            throw LoRAError.badShape(source: source, module: module, detail: "rank 0 (down \(down)): a LoRA needs rank 1 or more")
        }
        guard up[1] == down[0] else {
            throw LoRAError.badShape(source: source, module: module, detail: "rank of down \(down) and up \(up) differ")
        }
        guard !down.contains(where: { $0 < 1 }), !up.contains(where: { $0 < 1 }) else {
            throw LoRAError.badShape(source: source, module: module, detail: "down \(down) / up \(up) have an empty dimension")
        }
        if up.count == 4, up[2] != 1 || up[3] != 1 {
            throw LoRAError.badShape(source: source, module: module, detail: "up \(up) must be a 1x1 kernel")
        }
    }
}
