import Foundation

/// transformers' `CLIPTextConfig` (a text encoder's `config.json`), with transformers' defaults for absent fields.
///
/// One struct serves SD 1.x (quick_gelu, 768 wide), SD 2.x (gelu, 1024 wide) and both SDXL encoders; a full
/// `CLIPConfig` (text and vision towers in one file) is read through its `text_config`.
public struct CLIPTextConfiguration: Decodable, Sendable, Equatable {
    public var vocabSize: Int
    public var hiddenSize: Int
    public var intermediateSize: Int
    public var projectionDim: Int?
    public var numHiddenLayers: Int
    public var numAttentionHeads: Int
    public var maxPositionEmbeddings: Int
    public var hiddenAct: String
    public var layerNormEps: Float
    /// Decides how the pooled output is found: 2 (configs written before transformers PR #24773) means
    /// "the position of the largest id", anything else "the first position holding this id".
    public var eosTokenID: Int
    /// `architectures[0]` when the file names it (`CLIPTextModel`, `CLIPTextModelWithProjection`).
    public var architecture: String?

    enum CodingKeys: String, CodingKey {
        case vocabSize = "vocab_size", hiddenSize = "hidden_size", intermediateSize = "intermediate_size"
        case projectionDim = "projection_dim", numHiddenLayers = "num_hidden_layers"
        case numAttentionHeads = "num_attention_heads", maxPositionEmbeddings = "max_position_embeddings"
        case hiddenAct = "hidden_act", layerNormEps = "layer_norm_eps", eosTokenID = "eos_token_id"
        case architectures, textConfig = "text_config"
    }

    public init(
        vocabSize: Int = 49408, hiddenSize: Int = 512, intermediateSize: Int = 2048, projectionDim: Int? = 512,
        numHiddenLayers: Int = 12, numAttentionHeads: Int = 8, maxPositionEmbeddings: Int = 77,
        hiddenAct: String = "quick_gelu", layerNormEps: Float = 1e-5, eosTokenID: Int = 49407, architecture: String? = nil
    ) {
        self.vocabSize = vocabSize
        self.hiddenSize = hiddenSize
        self.intermediateSize = intermediateSize
        self.projectionDim = projectionDim
        self.numHiddenLayers = numHiddenLayers
        self.numAttentionHeads = numAttentionHeads
        self.maxPositionEmbeddings = maxPositionEmbeddings
        self.hiddenAct = hiddenAct
        self.layerNormEps = layerNormEps
        self.eosTokenID = eosTokenID
        self.architecture = architecture
    }

    public init(from decoder: Decoder) throws {
        let root = try decoder.container(keyedBy: CodingKeys.self)
        let architectures = try root.decodeIfPresent([String].self, forKey: .architectures)
        // A CLIPConfig keeps the text tower's settings in `text_config`.
        let c =
            root.contains(.textConfig) && !root.contains(.hiddenSize)
            ? try root.nestedContainer(keyedBy: CodingKeys.self, forKey: .textConfig) : root
        let defaults = CLIPTextConfiguration()
        vocabSize = try c.value(.vocabSize, default: defaults.vocabSize)
        hiddenSize = try c.value(.hiddenSize, default: defaults.hiddenSize)
        intermediateSize = try c.value(.intermediateSize, default: defaults.intermediateSize)
        projectionDim =
            c.contains(.projectionDim)
            ? try c.decodeIfPresent(Int.self, forKey: .projectionDim) : defaults.projectionDim
        numHiddenLayers = try c.value(.numHiddenLayers, default: defaults.numHiddenLayers)
        numAttentionHeads = try c.value(.numAttentionHeads, default: defaults.numAttentionHeads)
        maxPositionEmbeddings = try c.value(.maxPositionEmbeddings, default: defaults.maxPositionEmbeddings)
        hiddenAct = try c.value(.hiddenAct, default: defaults.hiddenAct)
        layerNormEps = try c.value(.layerNormEps, default: defaults.layerNormEps)
        // transformers allows a list here; the pooling code only works with a single id.
        if let list = try? c.decodeIfPresent([Int].self, forKey: .eosTokenID) {
            guard list.count == 1 else {
                throw ModelError.unsupported("CLIP text config eos_token_id \(list): pooling needs exactly one EOS id")
            }
            eosTokenID = list[0]
        } else {
            eosTokenID = try c.value(.eosTokenID, default: defaults.eosTokenID)
        }
        architecture = architectures?.first
    }

    /// The feed-forward activation named by `hidden_act`.
    public var activation: CLIPActivation {
        get throws {
            guard let activation = CLIPActivation(rawValue: hiddenAct) else {
                throw ModelError.unsupported(
                    "CLIP text encoder hidden_act '\(hiddenAct)' (supported: "
                        + CLIPActivation.allCases.map(\.rawValue).joined(separator: ", ") + ")")
            }
            return activation
        }
    }

    /// Rejects sizes the model cannot be built with, naming the field.
    func validate() throws {
        let positive: [(String, Int)] = [
            ("vocab_size", vocabSize), ("hidden_size", hiddenSize), ("intermediate_size", intermediateSize),
            ("num_hidden_layers", numHiddenLayers), ("num_attention_heads", numAttentionHeads),
            ("max_position_embeddings", maxPositionEmbeddings),
        ]
        for (field, value) in positive where value <= 0 {
            throw ModelError.invalidConfig("CLIP text config \(field) must be positive, got \(value)")
        }
        guard hiddenSize % numAttentionHeads == 0 else {
            throw ModelError.invalidConfig(
                "CLIP text config hidden_size \(hiddenSize) does not split into \(numAttentionHeads) attention heads")
        }
        _ = try activation
    }
}

/// The activations transformers' `ACT2FN` provides under the names CLIP configs use.
public enum CLIPActivation: String, CaseIterable, Sendable {
    /// `x * sigmoid(1.702 x)`: OpenAI CLIP (SD 1.x).
    case quickGELU = "quick_gelu"
    /// Exact erf GELU: OpenCLIP ViT-H / bigG (SD 2.x, SDXL).
    case gelu
    /// tanh-approximated GELU under its two transformers names.
    case geluNew = "gelu_new"
    case geluPyTorchTanh = "gelu_pytorch_tanh"
}
