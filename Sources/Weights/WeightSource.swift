import Compute

/// A set of named tensors: one safetensors file, a sharded set, a folder's weights, or tensors in memory.
///
/// Model loaders take a `WeightSource` and ask for parameters by their checkpoint names, so the same
/// loader reads a diffusers folder, a sharded download, a golden fixture or weights built in a test.
public protocol WeightSource: Sendable {
    /// Every tensor name, sorted.
    var names: [String] { get }
    /// Where the tensors come from (a path), for error messages.
    var sourceDescription: String { get }
    func contains(_ name: String) -> Bool
    /// The tensor's shape, without loading its data.
    func shape(of name: String) throws -> [Int]
    /// The tensor as Float32 (a fresh copy the caller owns).
    func tensor(_ name: String) throws -> Tensor
    /// The tensor, which must have `shape` (the shape the architecture needs). Sources that synthesise
    /// parameters (random weights for benchmarks) implement this; files use the default, which checks.
    func tensor(_ name: String, shape: [Int]) throws -> Tensor
    /// Several tensors kept in the format the source stores them (`StoredTensor`: fp16 and bf16 stay narrow, fp32 as is,
    /// other formats widened to fp32), in the order of `names`, with the bytes they hold together. Each is handed to
    /// `prepare` (its index in `names`, the tensor) as soon as it is ready, while its values are still in cache, and kept
    /// as `prepare` returns it: a LoRA checks its factors and reorders a convolution's there, instead of in passes over
    /// all of them afterwards. Each is the caller's own, so `prepare` may change it in place. A file read into memory
    /// gives views of its buffer (no copy); sources in memory give fp32 copies (the default).
    func storedTensors(_ names: [String], prepare: (Int, StoredTensor) throws -> StoredTensor) throws -> (tensors: [StoredTensor], bytes: Int)
}

extension WeightSource {
    public func storedTensors(
        _ names: [String], prepare: (Int, StoredTensor) throws -> StoredTensor
    ) throws -> (tensors: [StoredTensor], bytes: Int) {
        var bytes = 0
        let tensors = try names.enumerated().map { index, name in
            let tensor = StoredTensor(try tensor(name))
            bytes += tensor.byteCount
            return try prepare(index, tensor)
        }
        return (tensors, bytes)
    }

    /// Several tensors as Float32, in the order of `names`.
    public func tensors(_ names: [String]) throws -> [Tensor] { try names.map { try tensor($0) } }

    /// The tensor, checked to have `shape`; a loader's way to say which shape a parameter must have.
    public func tensor(_ name: String, shape expected: [Int]) throws -> Tensor {
        let actual = try shape(of: name)
        guard actual == expected else {
            throw WeightsError.shapeMismatch(source: sourceDescription, tensor: name, expected: expected, actual: actual)
        }
        return try tensor(name)
    }

    /// The tensors whose names start with `prefix`, with the prefix removed (e.g. `"model.diffusion_model."`
    /// of a single-file checkpoint, or `"param."` of a golden fixture).
    public func scoped(to prefix: String) -> PrefixedWeights {
        PrefixedWeights(base: self, prefix: prefix)
    }
}

/// A view of another source restricted to one name prefix, with the prefix stripped.
public struct PrefixedWeights: WeightSource {
    public let base: any WeightSource
    public let prefix: String
    public let names: [String]

    public init(base: any WeightSource, prefix: String) {
        self.base = base
        self.prefix = prefix
        self.names = base.names.filter { $0.hasPrefix(prefix) }.map { String($0.dropFirst(prefix.count)) }
    }

    public var sourceDescription: String { "\(base.sourceDescription) [\(prefix)*]" }
    public func contains(_ name: String) -> Bool { base.contains(prefix + name) }
    public func shape(of name: String) throws -> [Int] { try base.shape(of: prefix + name) }
    public func tensor(_ name: String) throws -> Tensor { try base.tensor(prefix + name) }
    public func tensor(_ name: String, shape: [Int]) throws -> Tensor { try base.tensor(prefix + name, shape: shape) }
}

/// Tensors held in memory, for tests and for weights computed at run time (e.g. merged LoRA).
public struct InMemoryWeights: WeightSource {
    public let tensors: [String: Tensor]
    public let names: [String]
    public let sourceDescription: String

    public init(_ tensors: [String: Tensor], description: String = "<memory>") {
        self.tensors = tensors
        self.names = tensors.keys.sorted()
        self.sourceDescription = description
    }

    public func contains(_ name: String) -> Bool { tensors[name] != nil }

    public func shape(of name: String) throws -> [Int] {
        guard let tensor = tensors[name] else {
            throw WeightsError.tensorNotFound(source: sourceDescription, tensor: name)
        }
        return tensor.shape
    }

    public func tensor(_ name: String) throws -> Tensor {
        guard let tensor = tensors[name] else {
            throw WeightsError.tensorNotFound(source: sourceDescription, tensor: name)
        }
        return tensor.copy()
    }
}

/// Parameters drawn at random for any name and shape asked for: builds a full-size architecture without
/// any weight file (benchmarks). Weights ~ U(-a, a) with a = sqrt(3 / fan_in), so activations keep their
/// scale through deep stacks; 1-D parameters (biases, norm shifts) are small, norm scales are near one.
public struct RandomWeights: WeightSource {
    public let seed: UInt64

    public init(seed: UInt64 = 0) { self.seed = seed }

    public var names: [String] { [] }
    public var sourceDescription: String { "<random weights, seed \(seed)>" }
    public func contains(_ name: String) -> Bool { true }

    public func shape(of name: String) throws -> [Int] {
        throw WeightsError.tensorNotFound(source: sourceDescription, tensor: name + " (random weights need the shape)")
    }

    public func tensor(_ name: String) throws -> Tensor {
        throw WeightsError.tensorNotFound(source: sourceDescription, tensor: name + " (random weights need the shape)")
    }

    public func tensor(_ name: String, shape: [Int]) throws -> Tensor {
        var state = seed ^ UInt64(truncatingIfNeeded: name.hashValueStable)
        let fanIn = shape.count >= 2 ? shape.dropFirst().reduce(1, *) : 1
        let isNormScale = shape.count == 1 && name.hasSuffix("weight")
        let amplitude: Float = shape.count >= 2 ? (3 / Float(max(fanIn, 1))).squareRoot() : 0.05
        return Tensor(shape: shape) { buffer in
            for i in buffer.indices {
                state = state &* 6364136223846793005 &+ 1442695040888963407
                let unit = Float(state >> 40) / Float(1 << 24) * 2 - 1
                buffer[i] = (isNormScale ? 1 : 0) + amplitude * unit
            }
        }
    }
}

extension String {
    /// FNV-1a: a hash that is the same in every process (Swift's `hashValue` is randomly seeded).
    var hashValueStable: UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x100_0000_01b3
        }
        return hash
    }
}
