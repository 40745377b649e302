import Compute

/// Memory layout of a latent tensor: PyTorch's `[N, C, H, W]` or the engine's channels-last `[N, H, W, C]`.
public enum LatentLayout: Sendable {
    case nchw
    case nhwc
}

/// Where fresh Gaussian noise comes from: the initial latents, img2img's `add_noise` noise, and the noise that
/// stochastic samplers (Euler a, LCM, DDIM with eta > 0) draw every step.
public protocol NoiseSource {
    /// Standard normal noise of `shape` (in this source's layout), as diffusers'
    /// `randn_tensor(shape, generator=...)` draws it.
    mutating func randn(shape: [Int]) -> Tensor
}

/// diffusers' `randn_tensor` over PyTorch-compatible generators, for latents in either layout.
///
/// With one generator a `[N, C, H, W]` tensor is drawn in one call (all images share the stream, which is what
/// a single `generator=` does); with one generator per image each draws its own `[1, C, H, W]` (diffusers'
/// list of generators, e.g. AUTOMATIC1111-style "seed + i" per image). For `.nhwc` the NCHW tensor is drawn
/// and then permuted, so values land where diffusers has them.
public struct LatentNoise: NoiseSource, Sendable {
    public var generators: [TorchGenerator]
    public let layout: LatentLayout

    /// One generator shared by the whole batch.
    public init(generator: TorchGenerator, layout: LatentLayout = .nhwc) {
        self.generators = [generator]
        self.layout = layout
    }

    /// One generator per image (`generators.count` must equal the batch size of every draw).
    public init(generators: [TorchGenerator], layout: LatentLayout = .nhwc) {
        precondition(!generators.isEmpty, "LatentNoise needs at least one generator")
        self.generators = generators
        self.layout = layout
    }

    public mutating func randn(shape: [Int]) -> Tensor {
        guard shape.count == 4 else { return drawTorchOrder(shape) }
        let torchShape = layout == .nchw ? shape : [shape[0], shape[3], shape[1], shape[2]]
        let drawn = drawTorchOrder(torchShape)
        return layout == .nchw ? drawn : nchwToNHWC(drawn)
    }

    /// Draws `shape` in PyTorch order: whole, or image by image when there is one generator per image.
    private mutating func drawTorchOrder(_ shape: [Int]) -> Tensor {
        if generators.count == 1 || shape.isEmpty {
            return generators[0].randn(shape)
        }
        precondition(
            shape[0] == generators.count,
            "batch of \(shape[0]) needs one generator per image, have \(generators.count)")
        let imageShape = [1] + shape.dropFirst()
        let images = (0..<generators.count).map { generators[$0].randn(imageShape) }
        return concat(images, axis: 0)
    }
}
