import Compute
import Foundation
import Weights

/// Which hidden states a pipeline takes from a CLIP text encoder as the UNet's context.
///
/// diffusers' SD 1.x/2.x pipelines use `last_hidden_state`, or with `clip_skip = n`
/// `final_layer_norm(hidden_states[-(n + 1)])`; SDXL takes `hidden_states[-(clip_skip + 2)]` of both
/// encoders without the final norm.
public struct CLIPTextLayerSelection: Sendable, Equatable {
    /// How many of the last encoder layers' outputs are skipped: 0 is the last layer's output.
    public var skippedLayers: Int
    /// Whether `final_layer_norm` is applied to the selected layer's output.
    public var appliesFinalLayerNorm: Bool

    public init(skippedLayers: Int, appliesFinalLayerNorm: Bool) {
        self.skippedLayers = skippedLayers
        self.appliesFinalLayerNorm = appliesFinalLayerNorm
    }

    /// `last_hidden_state`: the last layer's output after the final norm.
    public static let lastHiddenState = CLIPTextLayerSelection(skippedLayers: 0, appliesFinalLayerNorm: true)

    /// diffusers `StableDiffusionPipeline.encode_prompt(clip_skip:)`.
    public static func stableDiffusion(clipSkip: Int?) -> CLIPTextLayerSelection {
        CLIPTextLayerSelection(skippedLayers: clipSkip ?? 0, appliesFinalLayerNorm: true)
    }

    /// diffusers `StableDiffusionXLPipeline.encode_prompt(clip_skip:)`: the penultimate layer by default.
    public static func stableDiffusionXL(clipSkip: Int?) -> CLIPTextLayerSelection {
        CLIPTextLayerSelection(skippedLayers: (clipSkip ?? 0) + 1, appliesFinalLayerNorm: false)
    }
}

/// Everything one forward pass of a CLIP text encoder produces, named as in transformers.
public struct CLIPTextModelOutput: Sendable {
    /// `final_layer_norm` of the last layer's output, `[B, T, D]`.
    public var lastHiddenState: Tensor
    /// transformers' `hidden_states` tuple: `[0]` is the embeddings' output, `[i]` the output of encoder
    /// layer `i` (no final norm); `layers + 1` tensors of `[B, T, D]`.
    public var hiddenStates: [Tensor]
    /// `pooler_output`: `lastHiddenState` at each sequence's EOS position, `[B, D]`.
    public var pooledOutput: Tensor
}

/// What a pipeline needs from a text encoder for one batch of token ids.
public struct CLIPTextEncoding: Sendable {
    /// The selected layer's hidden states, `[B, T, D]`: the UNet's `encoder_hidden_states`.
    public var hiddenStates: Tensor
    /// `pooler_output`, `[B, D]`.
    public var pooled: Tensor
    /// `text_embeds` (the projected pooled output, `[B, projection_dim]`) of `CLIPTextModelWithProjection`:
    /// SDXL's `pooled_prompt_embeds`. Nil for a plain `CLIPTextModel`.
    public var textEmbeds: Tensor?
}

/// transformers `CLIPTextModel`: token + position embeddings, pre-norm causal transformer layers, final
/// LayerNorm; built from its `config.json`, so SD 1.x (quick_gelu), SD 2.x (gelu, 1024 wide) and SDXL's
/// first encoder share this code.
///
/// Parameters are read under `text_model.` (real checkpoints, transformers 4.x); files that transformers 5.x
/// writes without that prefix are read too. Layer paths in `registry` always carry the `text_model.` prefix,
/// whichever the file used, so LoRA key maps resolve against one spelling.
public final class CLIPTextModel: @unchecked Sendable {
    public let configuration: CLIPTextConfiguration
    /// Every linear layer by its parameter path (for LoRA).
    public let registry: LayerRegistry

    let embeddings: CLIPTextEmbeddings
    let layers: [CLIPEncoderLayer]
    let finalLayerNorm: LayerNorm

    /// Reads `text_encoder/`: its config and weights.
    public convenience init(component: ComponentFolder) throws {
        try self.init(
            configData: component.configData, weights: component.weights(),
            source: component.url.appendingPathComponent("config.json").path)
    }

    public convenience init(configData: Data, weights: any WeightSource, source: String = "text_encoder/config.json") throws {
        try self.init(configuration: decodeConfig(CLIPTextConfiguration.self, from: configData, source: source), weights: weights)
    }

    public convenience init(configuration: CLIPTextConfiguration, weights: any WeightSource) throws {
        try self.init(
            configuration: configuration,
            loader: ModuleLoader(weights: try CLIPTextWeights.canonical(weights)).child("text_model"))
    }

    /// Builds the model from a loader positioned at the `text_model` module.
    init(configuration config: CLIPTextConfiguration, loader: ModuleLoader) throws {
        try config.validate()
        configuration = config
        registry = loader.registry
        let width = config.hiddenSize
        embeddings = try CLIPTextEmbeddings(
            loader.child("embeddings"), vocabularySize: config.vocabSize, positions: config.maxPositionEmbeddings, dim: width)
        let activation = try config.activation
        layers = try (0..<config.numHiddenLayers).map {
            try CLIPEncoderLayer(
                loader.child("encoder.layers", $0), dim: width, heads: config.numAttentionHeads,
                intermediateSize: config.intermediateSize, activation: activation, epsilon: config.layerNormEps)
        }
        finalLayerNorm = try loader.layerNorm("final_layer_norm", dim: width, epsilon: config.layerNormEps)
    }

    /// The full forward pass over `ids` (`[B][T]`, every row the same length, T <= max_position_embeddings).
    public func callAsFunction(_ ids: [[Int]]) throws -> CLIPTextModelOutput {
        var hidden = try embeddings(ids, vocabularySize: configuration.vocabSize)
        var hiddenStates = [hidden]
        for layer in layers {
            hidden = layer(hidden)
            hiddenStates.append(hidden)
        }
        let last = finalLayerNorm(hidden)
        return CLIPTextModelOutput(
            lastHiddenState: last, hiddenStates: hiddenStates, pooledOutput: pooled(last, ids: ids))
    }

    /// The selected layer's hidden states and the pooled output: what a pipeline's `encode_prompt` takes.
    public func encode(_ ids: [[Int]], layer selection: CLIPTextLayerSelection = .lastHiddenState) throws -> CLIPTextEncoding {
        let output = try self(ids)
        return CLIPTextEncoding(hiddenStates: try select(selection, from: output), pooled: output.pooledOutput, textEmbeds: nil)
    }

    /// `hidden_states[-(skipped + 1)]`, with the final norm when asked for.
    func select(_ selection: CLIPTextLayerSelection, from output: CLIPTextModelOutput) throws -> Tensor {
        let index = output.hiddenStates.count - 1 - selection.skippedLayers
        guard selection.skippedLayers >= 0, index >= 0 else {
            throw ModelError.invalidInput(
                "cannot skip \(selection.skippedLayers) layers of a \(layers.count)-layer CLIP text encoder")
        }
        if selection.skippedLayers == 0 && selection.appliesFinalLayerNorm { return output.lastHiddenState }
        let states = output.hiddenStates[index]
        return selection.appliesFinalLayerNorm ? finalLayerNorm(states) : states
    }

    /// `pooler_output`: each row of `last` at its EOS position. transformers' rule: configs with
    /// `eos_token_id == 2` (written before the fix in transformers PR #24773) take the position of the largest
    /// id, which is EOS in CLIP's vocabulary; others the first position holding `eos_token_id` (position 0
    /// when there is none). Ties take the first position, as `argmax` does.
    func pooled(_ last: Tensor, ids: [[Int]]) -> Tensor {
        let (batch, tokens, width) = (last.shape[0], last.shape[1], last.shape[2])
        let rows = last.reshaped([batch * tokens, width])
        let picked = ids.enumerated().map { b, row in
            let position = b * tokens + eosPosition(in: row)
            return slice(rows, axis: 0, position..<(position + 1))
        }
        return concat(picked, axis: 0)
    }

    /// The position the pooled output is read from (see `pooled`).
    public func eosPosition(in row: [Int]) -> Int {
        if configuration.eosTokenID == 2 {
            var best = 0
            for (i, id) in row.enumerated() where id > row[best] { best = i }
            return best
        }
        return row.firstIndex(of: configuration.eosTokenID) ?? 0
    }
}

/// transformers `CLIPTextModelWithProjection` (SDXL's second text encoder): `CLIPTextModel` plus
/// `text_projection` (no bias) applied to the pooled output, giving `text_embeds`.
public final class CLIPTextModelWithProjection: @unchecked Sendable {
    public let textModel: CLIPTextModel
    let textProjection: Linear

    public var configuration: CLIPTextConfiguration { textModel.configuration }
    /// Every linear layer by its parameter path, `text_projection` included.
    public var registry: LayerRegistry { textModel.registry }

    /// Reads `text_encoder_2/`: its config and weights.
    public convenience init(component: ComponentFolder) throws {
        try self.init(
            configData: component.configData, weights: component.weights(),
            source: component.url.appendingPathComponent("config.json").path)
    }

    public convenience init(configData: Data, weights: any WeightSource, source: String = "text_encoder_2/config.json") throws {
        try self.init(configuration: decodeConfig(CLIPTextConfiguration.self, from: configData, source: source), weights: weights)
    }

    public init(configuration: CLIPTextConfiguration, weights: any WeightSource) throws {
        guard let projectionDim = configuration.projectionDim, projectionDim > 0 else {
            throw ModelError.invalidConfig("CLIPTextModelWithProjection needs a positive projection_dim in its config")
        }
        let root = ModuleLoader(weights: try CLIPTextWeights.canonical(weights))
        textModel = try CLIPTextModel(configuration: configuration, loader: root.child("text_model"))
        textProjection = try root.linear("text_projection", in: configuration.hiddenSize, out: projectionDim, bias: false)
    }

    /// The full forward pass and `text_embeds` (`[B, projection_dim]`).
    public func callAsFunction(_ ids: [[Int]]) throws -> (output: CLIPTextModelOutput, textEmbeds: Tensor) {
        let output = try textModel(ids)
        return (output, textProjection(output.pooledOutput))
    }

    /// The selected layer's hidden states, the pooled output and `text_embeds`.
    public func encode(_ ids: [[Int]], layer selection: CLIPTextLayerSelection = .lastHiddenState) throws -> CLIPTextEncoding {
        let (output, textEmbeds) = try self(ids)
        return CLIPTextEncoding(
            hiddenStates: try textModel.select(selection, from: output), pooled: output.pooledOutput, textEmbeds: textEmbeds)
    }
}

/// transformers `CLIPTextEmbeddings`: `token_embedding(ids) + position_embedding(0..<T)`.
struct CLIPTextEmbeddings {
    let tokenEmbedding: Tensor
    let positionEmbedding: Tensor

    init(_ loader: ModuleLoader, vocabularySize: Int, positions: Int, dim: Int) throws {
        tokenEmbedding = try loader.tensor("token_embedding.weight", shape: [vocabularySize, dim])
        positionEmbedding = try loader.tensor("position_embedding.weight", shape: [positions, dim])
    }

    /// `[B, T, D]` for `ids` `[B][T]`; rejects ragged batches, overlong rows and ids outside the vocabulary.
    func callAsFunction(_ ids: [[Int]], vocabularySize: Int) throws -> Tensor {
        let tokens = ids.first?.count ?? 0
        guard !ids.isEmpty, tokens > 0 else {
            throw ModelError.invalidInput("CLIP text encoder needs at least one non-empty row of token ids")
        }
        guard ids.allSatisfy({ $0.count == tokens }) else {
            throw ModelError.invalidInput("CLIP text encoder rows differ in length: \(ids.map(\.count))")
        }
        let positions = positionEmbedding.shape[0]
        guard tokens <= positions else {
            throw ModelError.invalidInput("\(tokens) tokens exceed the CLIP text encoder's \(positions) positions")
        }
        let flat = ids.flatMap { $0 }
        if let bad = flat.first(where: { $0 < 0 || $0 >= vocabularySize }) {
            throw ModelError.invalidInput("token id \(bad) is outside the CLIP text encoder's vocabulary of \(vocabularySize)")
        }
        let dim = tokenEmbedding.shape[1]
        let tokensEmbedded = embedding(flat, table: tokenEmbedding).reshaped([ids.count, tokens, dim])
        return tokensEmbedded + slice(positionEmbedding, axis: 0, 0..<tokens)
    }
}

/// transformers `CLIPEncoderLayer`: `x += self_attn(layer_norm1(x))`, `x += mlp(layer_norm2(x))`.
final class CLIPEncoderLayer: @unchecked Sendable {
    let layerNorm1: LayerNorm
    let selfAttention: CLIPAttention
    let layerNorm2: LayerNorm
    let mlp: CLIPMLP

    init(_ loader: ModuleLoader, dim: Int, heads: Int, intermediateSize: Int, activation: CLIPActivation, epsilon: Float) throws {
        layerNorm1 = try loader.layerNorm("layer_norm1", dim: dim, epsilon: epsilon)
        selfAttention = try CLIPAttention(loader.child("self_attn"), dim: dim, heads: heads)
        layerNorm2 = try loader.layerNorm("layer_norm2", dim: dim, epsilon: epsilon)
        mlp = try CLIPMLP(loader.child("mlp"), dim: dim, intermediateSize: intermediateSize, activation: activation)
    }

    func callAsFunction(_ x: Tensor) -> Tensor {
        let h = x + selfAttention(layerNorm1(x))
        return h + mlp(layerNorm2(h))
    }
}

/// transformers `CLIPAttention` as the text tower runs it: causal multi-head self-attention with biased
/// `q_proj`/`k_proj`/`v_proj`/`out_proj` and scale `head_dim^-0.5`.
final class CLIPAttention: @unchecked Sendable {
    let heads: Int
    let queryProjection: Linear
    let keyProjection: Linear
    let valueProjection: Linear
    let outProjection: Linear

    init(_ loader: ModuleLoader, dim: Int, heads: Int) throws {
        self.heads = heads
        queryProjection = try loader.linear("q_proj", in: dim, out: dim)
        keyProjection = try loader.linear("k_proj", in: dim, out: dim)
        valueProjection = try loader.linear("v_proj", in: dim, out: dim)
        outProjection = try loader.linear("out_proj", in: dim, out: dim)
    }

    func callAsFunction(_ x: Tensor) -> Tensor {
        let attended = attention(
            query: queryProjection(x), key: keyProjection(x), value: valueProjection(x), heads: heads, causal: true)
        return outProjection(attended)
    }
}

/// transformers `CLIPMLP`: `fc2(act(fc1(x)))`.
final class CLIPMLP: @unchecked Sendable {
    let fc1: Linear
    let fc2: Linear
    let activation: CLIPActivation

    init(_ loader: ModuleLoader, dim: Int, intermediateSize: Int, activation: CLIPActivation) throws {
        fc1 = try loader.linear("fc1", in: dim, out: intermediateSize)
        fc2 = try loader.linear("fc2", in: intermediateSize, out: dim)
        self.activation = activation
    }

    func callAsFunction(_ x: Tensor) -> Tensor {
        let hidden = fc1(x)
        let activated: Tensor =
            switch activation {
            case .quickGELU: quickGELU(hidden)
            case .gelu: gelu(hidden)
            case .geluNew, .geluPyTorchTanh: gelu(hidden, approximation: .tanh)
            }
        return fc2(activated)
    }
}

/// Presents a CLIP text encoder's weights under transformers' canonical `text_model.` names.
enum CLIPTextWeights {
    static let prefix = "text_model."
    static let probe = "embeddings.token_embedding.weight"

    /// `weights` itself when it uses `text_model.` names, or a view adding that prefix when the file was
    /// written without it (transformers 5.x `CLIPTextModel.save_pretrained`).
    static func canonical(_ weights: any WeightSource) throws -> any WeightSource {
        if weights.contains(prefix + probe) { return weights }
        if weights.contains(probe) { return TextModelPrefixedWeights(base: weights) }
        throw ModelError.invalidConfig(
            "\(weights.sourceDescription) is not a CLIP text encoder: it has neither '\(prefix)\(probe)' nor '\(probe)'")
    }
}

/// A text encoder file without the `text_model.` prefix, seen with it: `text_model.X` reads `X`; names outside
/// the text model (`text_projection.weight`) are passed through unchanged.
struct TextModelPrefixedWeights: WeightSource {
    let base: any WeightSource
    let names: [String]

    init(base: any WeightSource) {
        self.base = base
        names = base.names.map { $0.hasPrefix("text_projection.") ? $0 : CLIPTextWeights.prefix + $0 }.sorted()
    }

    var sourceDescription: String { base.sourceDescription }

    func contains(_ name: String) -> Bool { base.contains(baseName(name)) }

    func shape(of name: String) throws -> [Int] { try base.shape(of: baseName(name)) }

    func tensor(_ name: String) throws -> Tensor { try base.tensor(baseName(name)) }

    private func baseName(_ name: String) -> String {
        name.hasPrefix(CLIPTextWeights.prefix) ? String(name.dropFirst(CLIPTextWeights.prefix.count)) : name
    }
}
