import Compute
import Models

/// The LoRA-patchable layers of a loaded model, by component.
public struct LoRATargets: @unchecked Sendable {
    public let registries: [LoRAComponent: LayerRegistry]
    /// The UNet's `layers_per_block`, needed to map kohya SDXL keys in the original (SGM) block layout.
    public let unetLayersPerBlock: Int

    public init(registries: [LoRAComponent: LayerRegistry], unetLayersPerBlock: Int) {
        self.registries = registries
        self.unetLayersPerBlock = unetLayersPerBlock
    }
}

/// A layer a LoRA module patches.
public enum PatchableLayer: @unchecked Sendable {
    case linear(Linear)
    case conv(Conv2D)

    public var path: String {
        switch self {
        case .linear(let layer): layer.path
        case .conv(let layer): layer.path
        }
    }

    /// True when the layer stores bf16 weights (LoRAs then run beside it instead of being merged).
    var holdsBF16: Bool {
        switch self {
        case .linear(let layer): layer.storedWeight.precision == .bf16
        case .conv(let layer): layer.storedWeight.precision == .bf16
        }
    }

    /// The weight tensor merging updates in place.
    var weight: Tensor {
        switch self {
        case .linear(let layer): layer.weight
        case .conv(let layer): layer.weight
        }
    }
}

/// A LoRA resolved against one model: every module bound to its layer, factors in the engine's layout.
/// Computed once per (model, LoRA) and cached; applying it then does no name resolution.
public struct ResolvedLoRA: @unchecked Sendable {
    public struct Entry {
        public let component: LoRAComponent
        public let layer: PatchableLayer
        /// `[rank, in]` for linear layers, channels-last `[rank, kh, kw, in]` for convolutions; as the file stores it
        /// (a view of the loaded factor), as is `up`.
        public let down: StoredTensor
        /// `[out, rank]`.
        public let up: StoredTensor
        /// `alpha / rank`.
        public let scale: Float
    }

    public let source: String
    public let entries: [Entry]
    /// Module names in the file that match no layer of the model (reported as a warning).
    public let unmatched: [String]
}

/// Resolves LoRA module names to model layers.
public enum LoRAKeyMap {
    /// Binds each module of `network` to a layer of `targets`. Modules that name no layer are returned in
    /// `unmatched`; a module whose shape does not fit its layer is an error naming the layer.
    public static func resolve(_ network: LoRANetwork, targets: LoRATargets) throws -> ResolvedLoRA {
        var entries: [ResolvedLoRA.Entry] = []
        var unmatched: [String] = []
        for module in network.modules {
            guard let registry = targets.registries[module.component] else {
                unmatched.append("\(module.component.rawValue): \(module.name)")
                continue
            }
            let index = registry.pathsByUnderscoredName
            // The file's own spelling first; the SGM layout's translation only when that names no layer.
            let key = LayerRegistry.underscored(module.name)
            let sgm = { SGMNames.toDiffusers(key, layersPerBlock: targets.unetLayersPerBlock).flatMap { index[$0] } }
            let path = index[key] ?? (module.component == .unet ? sgm() : nil)
            guard let layer = path.flatMap({ layer(at: $0, in: registry) }) else {
                unmatched.append("\(module.component.rawValue): \(module.name)")
                continue
            }
            entries.append(try bind(module, to: layer, source: network.source))
        }
        return ResolvedLoRA(source: network.source, entries: entries, unmatched: unmatched)
    }

    static func layer(at path: String, in registry: LayerRegistry) -> PatchableLayer? {
        if let linear = registry.linears[path] { return .linear(linear) }
        return registry.convs[path].map { .conv($0) }
    }

    static func bind(_ module: LoRAModule, to layer: PatchableLayer, source: String) throws -> ResolvedLoRA.Entry {
        let rank = module.rank
        let up = module.up.reshaped([module.up.shape[0], rank])
        // The file's shape: the down of a larger-than-1x1 conv is already channels-last in memory (`LoRAModule.down`).
        let stored = module.downShape
        switch layer {
        case .linear(let linear):
            guard module.down.count == rank * linear.inFeatures, stored.count == 2 || stored[2...] == [1, 1] else {
                throw LoRAError.shapeMismatch(
                    source: source, module: module.name, layer: linear.path, detail: "down is \(stored), the layer takes \(linear.inFeatures) inputs")
            }
            guard up.shape[0] == linear.outFeatures else {
                throw LoRAError.shapeMismatch(
                    source: source, module: module.name, layer: linear.path, detail: "up is \(module.up.shape), the layer has \(linear.outFeatures) outputs")
            }
            return .init(component: module.component, layer: layer, down: module.down.reshaped([rank, linear.inFeatures]), up: up, scale: module.scale)
        case .conv(let conv):
            let kernel = stored.count == 4 ? (stored[1], stored[2], stored[3]) : (stored[1], 1, 1)
            let kernelFits = kernel.1 == conv.kernelSize && kernel.2 == conv.kernelSize
            let pointwiseFits = kernel.1 == 1 && kernel.2 == 1 && conv.kernelSize == 1
            guard kernel.0 == conv.inChannels, kernelFits || pointwiseFits else {
                throw LoRAError.shapeMismatch(
                    source: source, module: module.name, layer: conv.path,
                    detail: "down is \(stored), the layer is a \(conv.kernelSize)x\(conv.kernelSize) conv from \(conv.inChannels) channels")
            }
            guard up.shape[0] == conv.outChannels else {
                throw LoRAError.shapeMismatch(
                    source: source, module: module.name, layer: conv.path, detail: "up is \(module.up.shape), the layer has \(conv.outChannels) outputs")
            }
            // A view of the file's factor, no copy: channels-last already, or a 1x1 kernel, whose two layouts agree.
            return .init(
                component: module.component, layer: layer, down: module.down.reshaped([rank, kernel.1, kernel.2, kernel.0]), up: up,
                scale: module.scale)
        }
    }
}

/// kohya's SDXL LoRAs name UNet modules in the original (SGM/LDM) layout; this maps an underscore-joined
/// SGM module path to the diffusers one (also underscore-joined), as diffusers' `_maybe_map_sgm_blocks_to_diffusers`.
enum SGMNames {
    static let resnetRenames: [(String, String)] = [
        ("in_layers_0", "norm1"), ("in_layers_2", "conv1"), ("emb_layers_1", "time_emb_proj"), ("out_layers_0", "norm2"),
        ("out_layers_3", "conv2"), ("skip_connection", "conv_shortcut"),
    ]

    static func toDiffusers(_ name: String, layersPerBlock: Int) -> String? {
        let fixed: [String: String] = [
            "time_embed_0": "time_embedding_linear_1", "time_embed_2": "time_embedding_linear_2",
            "label_emb_0_0": "add_embedding_linear_1", "label_emb_0_2": "add_embedding_linear_2", "out_2": "conv_out",
            "input_blocks_0_0": "conv_in",
        ]
        if let mapped = fixed[name] { return mapped }
        let perBlock = layersPerBlock + 1
        if let (i, j, rest) = split(name, "input_blocks_"), i > 0 {
            let block = (i - 1) / perBlock, layer = (i - 1) % perBlock
            if rest == "op" { return "down_blocks_\(block)_downsamplers_0_conv" }
            return inner(j == 0 ? "resnets" : "attentions", "down_blocks_\(block)", layer, rest)
        }
        if let (i, rest) = splitSingle(name, "middle_block_") {
            switch i {
            case 0: return inner("resnets", "mid_block", 0, rest)
            case 1: return inner("attentions", "mid_block", 0, rest)
            case 2: return inner("resnets", "mid_block", 1, rest)
            default: return nil
            }
        }
        if let (i, j, rest) = split(name, "output_blocks_") {
            let block = i / perBlock, layer = i % perBlock
            if rest == "conv" && j >= 1 { return "up_blocks_\(block)_upsamplers_0_conv" }
            return inner(j == 0 ? "resnets" : "attentions", "up_blocks_\(block)", layer, rest)
        }
        return nil
    }

    private static func inner(_ kind: String, _ block: String, _ layer: Int, _ rest: String) -> String {
        var tail = rest
        if kind == "resnets" {
            for (from, to) in resnetRenames where tail == from { tail = to }
        }
        return "\(block)_\(kind)_\(layer)_\(tail)"
    }

    /// `<prefix><i>_<j>_<rest>` -> (i, j, rest)
    private static func split(_ name: String, _ prefix: String) -> (Int, Int, String)? {
        guard name.hasPrefix(prefix) else { return nil }
        let parts = name.dropFirst(prefix.count).split(separator: "_", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count == 3, let i = Int(parts[0]), let j = Int(parts[1]) else { return nil }
        return (i, j, String(parts[2]))
    }

    /// `<prefix><i>_<rest>` -> (i, rest)
    private static func splitSingle(_ name: String, _ prefix: String) -> (Int, String)? {
        guard name.hasPrefix(prefix) else { return nil }
        let parts = name.dropFirst(prefix.count).split(separator: "_", maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.count == 2, let i = Int(parts[0]) else { return nil }
        return (i, String(parts[1]))
    }
}
