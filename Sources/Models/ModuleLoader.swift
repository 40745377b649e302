import Foundation
import Compute
import Weights

/// Reads a model's parameters by their checkpoint names while the model is being built.
///
/// A loader is a position in the module tree (`down_blocks.0.resnets.1`); `child` descends, and the
/// layer constructors read `<path>.<name>.weight` with the shape the architecture requires, so a file
/// that does not fit the config fails with the parameter's name and both shapes. Every linear and conv
/// layer built is recorded in the shared `LayerRegistry` under its full path: that is what LoRA key
/// maps resolve against.
public struct ModuleLoader {
    /// The precision linear and conv weights are stored in as layers are built: bf16 rounds each weight as it is
    /// read (one layer's fp32 values exist at a time, so a model never exists whole in fp32). Bound around model
    /// construction (`StableDiffusionModel(contentsOf:precision:)`); fp32 by default.
    @TaskLocal public static var weightPrecision: ComputePrecision = .fp32

    public let weights: any WeightSource
    /// Dotted module path; empty at the root.
    public let path: String
    public let registry: LayerRegistry

    public init(weights: any WeightSource, path: String = "", registry: LayerRegistry = LayerRegistry()) {
        self.weights = weights
        self.path = path
        self.registry = registry
    }

    /// The loader of a submodule.
    public func child(_ name: String) -> ModuleLoader {
        ModuleLoader(weights: weights, path: key(name), registry: registry)
    }

    public func child(_ name: String, _ index: Int) -> ModuleLoader { child("\(name).\(index)") }

    /// The full parameter name of `name` inside this module.
    public func key(_ name: String) -> String { path.isEmpty ? name : "\(path).\(name)" }

    public func has(_ name: String) -> Bool { weights.contains(key(name)) }

    /// A parameter with a required shape.
    public func tensor(_ name: String, shape: [Int]) throws -> Tensor {
        let full = key(name)
        registry.markUsed(full)
        return try weights.tensor(full, shape: shape)
    }

    /// A parameter whose shape the caller checks itself.
    public func tensor(_ name: String) throws -> Tensor {
        let full = key(name)
        registry.markUsed(full)
        return try weights.tensor(full)
    }

    public func linear(_ name: String, in inFeatures: Int, out outFeatures: Int, bias: Bool = true) throws -> Linear {
        let module = child(name)
        let weight = try module.tensor("weight", shape: [outFeatures, inFeatures])
        let biasTensor = bias ? try module.tensor("bias", shape: [outFeatures]) : nil
        let layer = Linear(path: module.path, weight: weight, bias: biasTensor, precision: Self.weightPrecision)
        registry.register(layer)
        return layer
    }

    /// A linear layer whose bias is optional in the file (present in some exporters, absent in others).
    public func linearAllowingBias(_ name: String, in inFeatures: Int, out outFeatures: Int) throws -> Linear {
        try linear(name, in: inFeatures, out: outFeatures, bias: child(name).has("bias"))
    }

    public func conv2d(
        _ name: String, in inChannels: Int, out outChannels: Int, kernel: Int, stride: Int = 1,
        padding: Padding2D? = nil, bias: Bool = true
    ) throws -> Conv2D {
        let module = child(name)
        let weight = try module.tensor("weight", shape: [outChannels, inChannels, kernel, kernel])
        let biasTensor = bias ? try module.tensor("bias", shape: [outChannels]) : nil
        let layer = Conv2D(
            path: module.path, pytorchWeight: weight, bias: biasTensor, stride: stride,
            padding: padding ?? .uniform(kernel / 2), precision: Self.weightPrecision)
        registry.register(layer)
        return layer
    }

    public func groupNorm(_ name: String, groups: Int, channels: Int, epsilon: Float, affine: Bool = true) throws -> GroupNorm {
        let module = child(name)
        guard groups > 0, channels % groups == 0 else {
            throw ModelError.invalidConfig("\(module.path): \(channels) channels do not divide into \(groups) groups")
        }
        return GroupNorm(
            groups: groups, epsilon: epsilon,
            weight: affine ? try module.tensor("weight", shape: [channels]) : nil,
            bias: affine ? try module.tensor("bias", shape: [channels]) : nil)
    }

    public func layerNorm(_ name: String, dim: Int, epsilon: Float, affine: Bool = true) throws -> LayerNorm {
        let module = child(name)
        return LayerNorm(
            epsilon: epsilon,
            weight: affine ? try module.tensor("weight", shape: [dim]) : nil,
            bias: affine ? try module.tensor("bias", shape: [dim]) : nil)
    }
}

/// The linear and conv layers of a loaded model by full module path, and which file tensors were read.
public final class LayerRegistry: @unchecked Sendable {
    public private(set) var linears: [String: Linear] = [:]
    public private(set) var convs: [String: Conv2D] = [:]
    public private(set) var usedKeys: Set<String> = []

    private let indexLock = NSLock()
    private var underscoredIndex: [String: String]?

    public init() {}

    func register(_ layer: Linear) {
        linears[layer.path] = layer
        indexLock.withLock { underscoredIndex = nil }
    }
    func register(_ layer: Conv2D) {
        convs[layer.path] = layer
        indexLock.withLock { underscoredIndex = nil }
    }
    func markUsed(_ key: String) { usedKeys.insert(key) }

    /// Every LoRA-patchable layer path.
    public var layerPaths: [String] { (Array(linears.keys) + Array(convs.keys)).sorted() }

    /// Every layer path by its underscore-joined spelling (kohya's), also without the text encoder's `text_model.`
    /// prefix. Built once, on first use after loading, so resolving a LoRA costs one lookup per module instead of
    /// re-spelling every layer of the model.
    public var pathsByUnderscoredName: [String: String] {
        indexLock.withLock {
            if let underscoredIndex { return underscoredIndex }
            var index: [String: String] = [:]
            for path in Array(linears.keys) + Array(convs.keys) {
                index[Self.underscored(path)] = path
                if path.hasPrefix("text_model.") { index[Self.underscored(String(path.dropFirst("text_model.".count)))] = path }
            }
            underscoredIndex = index
            return index
        }
    }

    /// Bytes of every registered (LoRA-patchable) layer's weights (as stored: fp32, or bf16 for `--precision bf16`) and
    /// fp32 biases: nearly all of a model's parameters.
    public var parameterBytes: Int {
        let linears = self.linears.values.reduce(0) { $0 + $1.storedWeight.byteCount + 4 * ($1.bias?.count ?? 0) }
        let convs = self.convs.values.reduce(0) { $0 + $1.storedWeight.byteCount + 4 * ($1.bias?.count ?? 0) }
        return linears + convs
    }

    /// `path` with every "." made "_" (byte by byte: Foundation's `replacingOccurrences` was a fifth of resolving a
    /// LoRA).
    public static func underscored(_ path: String) -> String {
        String(decoding: path.utf8.map { $0 == UInt8(ascii: ".") ? UInt8(ascii: "_") : $0 }, as: UTF8.self)
    }
}

/// A model that does not fit its config, or a config the engine cannot build.
public enum ModelError: Error, CustomStringConvertible, Equatable, Sendable {
    case invalidConfig(String)
    case unsupported(String)
    case invalidInput(String)

    public var description: String {
        switch self {
        case .invalidConfig(let message): "invalid model config: \(message)"
        case .unsupported(let message): "unsupported: \(message)"
        case .invalidInput(let message): "invalid input: \(message)"
        }
    }
}
