import Compute

/// A low-rank update `scale * up(down(x))` added to a layer's output without touching its weight
/// (runtime LoRA). `down` is `[rank, in]` for linear layers and a channels-last kernel
/// `[rank, kh, kw, in]` for convolutions; `up` is `[out, rank]`.
public struct LowRankAdapter: Sendable {
    public let down: Tensor
    public let up: Tensor
    public let scale: Float

    public init(down: Tensor, up: Tensor, scale: Float) {
        self.down = down
        self.up = up
        self.scale = scale
    }

    public var rank: Int { up.shape[1] }
}

/// `y = x W^T + b`, W in PyTorch's `[out, in]` layout.
public final class Linear: @unchecked Sendable {
    public let path: String
    /// The weight in the precision the model was loaded in (`ModuleLoader.weightPrecision`).
    public let storedWeight: LayerWeight
    public let bias: Tensor?
    /// Runtime LoRA updates applied after the base projection.
    public var adapters: [LowRankAdapter] = []

    public init(path: String, weight: Tensor, bias: Tensor?, precision: ComputePrecision = .fp32) {
        self.path = path
        self.storedWeight = .make(weight, precision: precision)
        self.bias = bias
    }

    /// The fp32 weight, which LoRA merging updates in place. Only fp32 layers have one (`storedWeight`).
    public var weight: Tensor { storedWeight.fp32Tensor(path) }
    public var inFeatures: Int { storedWeight.shape[1] }
    public var outFeatures: Int { storedWeight.shape[0] }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        let y = linear(x, weight: storedWeight, bias: bias)
        for adapter in adapters {
            let hidden = linear(x, weight: adapter.down)
            accumulateLinear(into: y, hidden, weight: adapter.up, scale: adapter.scale)
        }
        return y
    }
}

/// 2-D convolution on NHWC activations; the kernel is kept channels-last (`[out, kh, kw, in]`).
public final class Conv2D: @unchecked Sendable {
    public let path: String
    /// Channels-last kernel in the precision the model was loaded in.
    public let storedWeight: LayerWeight
    public let bias: Tensor?
    public let stride: Int
    public let padding: Padding2D
    public var adapters: [LowRankAdapter] = []

    /// Takes the kernel in PyTorch's `[out, in, kh, kw]` layout and converts it once (to bf16 too for bf16 models).
    public init(path: String, pytorchWeight: Tensor, bias: Tensor?, stride: Int, padding: Padding2D, precision: ComputePrecision = .fp32) {
        self.path = path
        self.storedWeight = .make(channelsLastKernel(pytorchWeight), precision: precision)
        self.bias = bias
        self.stride = stride
        self.padding = padding
    }

    /// The fp32 channels-last kernel, which LoRA merging updates in place. Only fp32 layers have one.
    public var weight: Tensor { storedWeight.fp32Tensor(path) }
    public var outChannels: Int { storedWeight.shape[0] }
    public var kernelSize: Int { storedWeight.shape[1] }
    public var inChannels: Int { storedWeight.shape[3] }

    /// `upsample` > 1 convolves the nearest-neighbour upsampling of `x` without making it (`conv2d(..., upsample:)`).
    /// `accumulatingInto` adds the result to that tensor (the output's shape) and returns it.
    public func callAsFunction(_ x: Tensor, upsample: Int = 1, accumulatingInto target: Tensor? = nil) -> Tensor {
        let y = conv2d(
            x, weight: storedWeight, bias: bias, stride: stride, padding: padding, upsample: upsample, accumulatingInto: target)
        for adapter in adapters {
            let hidden = conv2d(x, weight: adapter.down, bias: nil, stride: stride, padding: padding, upsample: upsample)
            accumulateLinear(into: y, hidden, weight: adapter.up, scale: adapter.scale)
        }
        return y
    }
}

extension LayerWeight {
    /// The fp32 tensor of an fp32 weight (the one in-place LoRA merging updates). bf16 layers have none: the
    /// LoRA patcher attaches LoRAs to them at run time instead (`LoRAPatcher.merge`).
    func fp32Tensor(_ path: String) -> Tensor {
        guard case .fp32(let tensor) = self else { preconditionFailure("\(path) holds bf16 weights; it has no fp32 weight to update") }
        return tensor
    }
}

public struct GroupNorm: Sendable {
    public let groups: Int
    public let epsilon: Float
    public let weight: Tensor?
    public let bias: Tensor?

    /// Normalises `[N, ..., C]`; `fusedSiLU` applies SiLU in the same pass. `output` (may be `x`) receives the result.
    @discardableResult
    public func callAsFunction(_ x: Tensor, fusedSiLU: Bool = false, into output: Tensor? = nil) -> Tensor {
        groupNorm(x, groups: groups, weight: weight, bias: bias, epsilon: epsilon, fusedSiLU: fusedSiLU, into: output)
    }
}

public struct LayerNorm: Sendable {
    public let epsilon: Float
    public let weight: Tensor?
    public let bias: Tensor?

    public func callAsFunction(_ x: Tensor) -> Tensor {
        layerNorm(x, weight: weight, bias: bias, epsilon: epsilon)
    }
}
