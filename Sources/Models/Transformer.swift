import Compute

/// diffusers `Attention` (self- or cross-attention) with its `to_q/to_k/to_v/to_out.0` projections.
///
/// The VAE variant adds a group norm before the projections and a residual connection after them.
public final class Attention: @unchecked Sendable {
    let heads: Int
    let toQuery: Linear
    let toKey: Linear
    let toValue: Linear
    let toOut: Linear
    let groupNorm: GroupNorm?
    let residualConnection: Bool
    let rescaleOutputFactor: Float

    public init(
        _ loader: ModuleLoader, queryDim: Int, contextDim: Int? = nil, heads: Int, headDim: Int, bias: Bool = false,
        outBias: Bool = true, groupNormGroups: Int? = nil, groupNormEpsilon: Float = 1e-5,
        residualConnection: Bool = false, rescaleOutputFactor: Float = 1
    ) throws {
        let inner = heads * headDim
        self.heads = heads
        toQuery = try loader.linear("to_q", in: queryDim, out: inner, bias: bias)
        toKey = try loader.linear("to_k", in: contextDim ?? queryDim, out: inner, bias: bias)
        toValue = try loader.linear("to_v", in: contextDim ?? queryDim, out: inner, bias: bias)
        toOut = try loader.linear("to_out.0", in: inner, out: queryDim, bias: outBias)
        groupNorm = try groupNormGroups.map {
            try loader.groupNorm("group_norm", groups: $0, channels: queryDim, epsilon: groupNormEpsilon)
        }
        self.residualConnection = residualConnection
        self.rescaleOutputFactor = rescaleOutputFactor
    }

    /// `x` is `[B, tokens, dim]` or an NHWC image `[B, H, W, C]` (then attention runs over its pixels);
    /// `context` is `[B, contextTokens, contextDim]` for cross-attention.
    public func callAsFunction(_ x: Tensor, context: Tensor? = nil) -> Tensor {
        let shape = x.shape
        let tokens = x.rank == 4 ? x.reshaped([shape[0], shape[1] * shape[2], shape[3]]) : x
        let normalized = groupNorm.map { $0(tokens) } ?? tokens
        let source = context ?? normalized
        let attended = attention(
            query: toQuery(normalized), key: toKey(source), value: toValue(source), heads: heads)
        var out = toOut(attended)
        if residualConnection { out = out + tokens }
        if rescaleOutputFactor != 1 { out = out * (1 / rescaleOutputFactor) }
        return out.reshaped(shape)
    }
}

/// diffusers `FeedForward`: `net.0` (GEGLU or GELU projection to the inner width), `net.2` back.
public final class FeedForward: @unchecked Sendable {
    public enum Activation: String, Sendable {
        case geglu
        case gelu
        case geluApproximate = "gelu-approximate"
    }

    let activation: Activation
    let projectIn: Linear
    let projectOut: Linear

    public init(_ loader: ModuleLoader, dim: Int, innerDim: Int? = nil, activation: Activation = .geglu) throws {
        let inner = innerDim ?? dim * 4
        self.activation = activation
        projectIn = try loader.linear("net.0.proj", in: dim, out: activation == .geglu ? inner * 2 : inner)
        projectOut = try loader.linear("net.2", in: inner, out: dim)
    }

    /// Rows at a time (diffusers' feed-forward chunking): the inner activation, the largest of a transformer block
    /// (`[tokens, 8 x dim]` for GEGLU, 40 MiB at SD 1.5's 64x64 latents), is made a chunk at a time, so it never
    /// adds more than `chunkBytes` to the peak. Each chunk is still a large GEMM (256 rows and more).
    public func callAsFunction(_ x: Tensor) -> Tensor {
        let width = x.shape.last ?? 0, rows = x.count / max(width, 1)
        let chunkRows = max(256, Self.chunkBytes / max(1, 4 * projectIn.outFeatures)) / 64 * 64
        if rows <= chunkRows { return forward(x) }
        let out = Tensor(uninitializedShape: Array(x.shape.dropLast()) + [projectOut.outFeatures])
        for start in stride(from: 0, to: rows, by: chunkRows) {
            let range = start..<min(rows, start + chunkRows)
            copyInPlace(out.rows(range), from: forward(x.rows(range)))
        }
        return out
    }

    /// The inner activation's size per chunk.
    static let chunkBytes = 8 << 20

    private func forward(_ x: Tensor) -> Tensor {
        let projected = projectIn(x)
        let hidden: Tensor =
            switch activation {
            case .geglu: geglu(projected)
            case .gelu: gelu(projected)
            case .geluApproximate: gelu(projected, approximation: .tanh)
            }
        return projectOut(hidden)
    }
}

/// diffusers `BasicTransformerBlock` as Stable Diffusion uses it: self-attention, cross-attention and a
/// GEGLU feed-forward, each pre-normalised with LayerNorm and added back.
public final class BasicTransformerBlock: @unchecked Sendable {
    let norm1: LayerNorm
    let selfAttention: Attention
    let norm2: LayerNorm
    let crossAttention: Attention
    let norm3: LayerNorm
    let feedForward: FeedForward
    let onlyCrossAttention: Bool

    public init(
        _ loader: ModuleLoader, dim: Int, heads: Int, headDim: Int, contextDim: Int, onlyCrossAttention: Bool = false
    ) throws {
        norm1 = try loader.layerNorm("norm1", dim: dim, epsilon: 1e-5)
        selfAttention = try Attention(
            loader.child("attn1"), queryDim: dim, contextDim: onlyCrossAttention ? contextDim : nil, heads: heads,
            headDim: headDim)
        norm2 = try loader.layerNorm("norm2", dim: dim, epsilon: 1e-5)
        crossAttention = try Attention(loader.child("attn2"), queryDim: dim, contextDim: contextDim, heads: heads, headDim: headDim)
        norm3 = try loader.layerNorm("norm3", dim: dim, epsilon: 1e-5)
        feedForward = try FeedForward(loader.child("ff"), dim: dim)
        self.onlyCrossAttention = onlyCrossAttention
    }

    public func callAsFunction(_ x: Tensor, context: Tensor) -> Tensor {
        var h = x + selfAttention(norm1(x), context: onlyCrossAttention ? context : nil)
        h = h + crossAttention(norm2(h), context: context)
        return h + feedForward(norm3(h))
    }
}

/// diffusers `Transformer2DModel` (continuous input): group norm, projection in, transformer blocks,
/// projection out, residual. SD 1.x projects with 1x1 convs, SD 2.x / SDXL with linears; on channels-last
/// activations both are the same product, so only the parameter shapes differ.
public final class Transformer2DModel: @unchecked Sendable {
    let norm: GroupNorm
    let projectIn: Linear
    let blocks: [BasicTransformerBlock]
    let projectOut: Linear

    public init(
        _ loader: ModuleLoader, channels: Int, heads: Int, headDim: Int, layers: Int, contextDim: Int, groups: Int,
        useLinearProjection: Bool, onlyCrossAttention: Bool = false
    ) throws {
        let inner = heads * headDim
        norm = try loader.groupNorm("norm", groups: groups, channels: channels, epsilon: 1e-6)
        projectIn = try Self.projection(loader, "proj_in", in: channels, out: inner, linear: useLinearProjection)
        blocks = try (0..<layers).map {
            try BasicTransformerBlock(
                loader.child("transformer_blocks", $0), dim: inner, heads: heads, headDim: headDim, contextDim: contextDim,
                onlyCrossAttention: onlyCrossAttention)
        }
        projectOut = try Self.projection(loader, "proj_out", in: inner, out: channels, linear: useLinearProjection)
    }

    /// A 1x1 conv kernel `[out, in, 1, 1]` is loaded as the `[out, in]` linear it is.
    private static func projection(_ loader: ModuleLoader, _ name: String, in inFeatures: Int, out outFeatures: Int, linear: Bool) throws -> Linear {
        if linear { return try loader.linear(name, in: inFeatures, out: outFeatures) }
        let module = loader.child(name)
        let weight = try module.tensor("weight", shape: [outFeatures, inFeatures, 1, 1]).reshaped([outFeatures, inFeatures])
        let bias = try module.tensor("bias", shape: [outFeatures])
        let layer = Linear(path: module.path, weight: weight, bias: bias, precision: ModuleLoader.weightPrecision)
        loader.registry.register(layer)
        return layer
    }

    /// `x` is `[B, H, W, C]`; `context` is `[B, tokens, contextDim]`.
    public func callAsFunction(_ x: Tensor, context: Tensor) -> Tensor {
        let (batch, height, width, channels) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        var h = projectIn(norm(x).reshaped([batch, height * width, channels]))
        for block in blocks { h = block(h, context: context) }
        let projected = projectOut(h)
        return projected.reshaped([batch, height, width, channels]) + x
    }
}
