import Compute
import Models

/// One CLIP text encoder read the AUTOMATIC1111 way: the prompt in 75-token chunks, each chunk encoded as
/// BOS + 75 + EOS, its hidden states multiplied by the per-token weights and rescaled so the chunk keeps its mean
/// (A1111's default "Original" emphasis: `z * w; z *= original_mean / new_mean`), chunks joined along the token axis.
public struct A1111TextEncoding: Sendable {
    public let chunker: A1111PromptChunker
    private let run: @Sendable ([[Int]]) throws -> CLIPTextEncoding

    /// SD 1.x/2.x and SDXL's first encoder, reading `layer`.
    public init(tokenizer: CLIPTokenizer, encoder: CLIPTextModel, layer: CLIPTextLayerSelection) {
        chunker = A1111PromptChunker(tokenizer: tokenizer)
        run = { try encoder.encode($0, layer: layer) }
    }

    /// SDXL's second encoder (its `text_embeds` are the pooled output).
    public init(tokenizer: CLIPTokenizer, encoder: CLIPTextModelWithProjection, layer: CLIPTextLayerSelection) {
        chunker = A1111PromptChunker(tokenizer: tokenizer)
        run = { try encoder.encode($0, layer: layer) }
    }

    /// What a prompt encodes to: the weighted hidden states `[1, 77 * chunks, C]`, and the first chunk's pooled output
    /// `[1, D]` and text embeds `[1, P]` (SDXL conditions on the second encoder's).
    public typealias Encoding = (hiddenStates: Tensor, pooled: Tensor, textEmbeds: Tensor?)

    public func encode(_ prompt: String) throws -> Encoding {
        try encode(try chunker.chunks(for: prompt))
    }

    public func encode(_ chunks: [A1111PromptChunk]) throws -> Encoding {
        let tokenizer = chunker.tokenizer
        let ids = chunks.map { $0.encoderIDs(endOfText: tokenizer.eosTokenID, padding: tokenizer.padTokenID) }
        let encoding = try run(ids)
        let states = encoding.hiddenStates
        let (count, tokens, width) = (states.shape[0], states.shape[1], states.shape[2])
        let weighted = Self.applyEmphasis(states, multipliers: chunks.map(\.multipliers))
        return (
            weighted.reshaped([1, count * tokens, width]), slice(encoding.pooled, axis: 0, 0..<1),
            encoding.textEmbeds.map { slice($0, axis: 0, 0..<1) }
        )
    }

    /// A1111's "Original" emphasis on `z` (`[chunks, tokens, C]`): each chunk's hidden states times its tokens'
    /// multipliers, then scaled by `mean(z) / mean(z * w)` over the chunk. Chunks whose multipliers are all 1 are
    /// returned unchanged (the formula gives them back exactly).
    public static func applyEmphasis(_ z: Tensor, multipliers: [[Float]]) -> Tensor {
        let (count, tokens, width) = (z.shape[0], z.shape[1], z.shape[2])
        precondition(
            multipliers.count == count && multipliers.allSatisfy { $0.count == tokens }, "one multiplier per token and chunk")
        let out = z.copy()
        let size = tokens * width
        out.withUnsafeMutableBufferPointer { values in
            for chunk in 0..<count where multipliers[chunk].contains(where: { $0 != 1 }) {
                let base = chunk * size
                var sum = 0.0
                for i in base..<(base + size) { sum += Double(values[i]) }
                let originalMean = Float(sum / Double(size))
                var newSum = 0.0
                for t in 0..<tokens {
                    let w = multipliers[chunk][t]
                    for c in 0..<width {
                        let i = base + t * width + c
                        values[i] *= w
                        newSum += Double(values[i])
                    }
                }
                let newMean = Float(newSum / Double(size))
                guard newMean != 0, newMean.isFinite else { continue }
                let ratio = originalMean / newMean
                for i in base..<(base + size) { values[i] *= ratio }
            }
        }
        return out
    }

    /// `[1, T, C]` extended to `tokens` with copies of `empty` (`[1, 77, C]`): A1111 pads the shorter of the
    /// conditional and unconditional embeddings with the empty prompt's chunk so the two can be batched.
    static func pad(_ x: Tensor, to tokens: Int, with empty: () throws -> Tensor) rethrows -> Tensor {
        guard x.shape[1] < tokens else { return x }
        let filler = try empty()
        let repeats = (tokens - x.shape[1]) / filler.shape[1]
        return concat([x] + Array(repeating: filler, count: repeats), axis: 1)
    }
}

extension PromptEncoder {
    /// SD 1.x/2.x with A1111 prompt syntax: weighted chunks; the negative prompt (or the positive) padded with empty
    /// chunks to the same length. CLIP skip applies to SD 1.x only: A1111's SD 2.x (OpenCLIP) encoder always reads
    /// its penultimate layer, which is the last layer of a diffusers SD 2.x text encoder.
    func encodeSDA1111(_ request: GenerationRequest) throws -> EncodedPrompt {
        let clipSkip = model.family == .sd2 ? nil : request.clipSkip
        let text = A1111TextEncoding(
            tokenizer: model.tokenizer, encoder: model.textEncoder, layer: .stableDiffusion(clipSkip: clipSkip))
        var positive = try text.encode(request.prompt).hiddenStates
        guard request.usesGuidance else {
            let conditioning = UNetConditioning(context: repeatBatch(positive, request.count))
            return EncodedPrompt(conditioning: conditioning, positive: conditioning)
        }
        var negative = try text.encode(request.negativePrompt ?? "").hiddenStates
        let length = max(positive.shape[1], negative.shape[1])
        var empty: Tensor?
        let emptyChunk = { () throws -> Tensor in
            if let empty { return empty }
            empty = try text.encode("").hiddenStates
            return empty!
        }
        positive = try A1111TextEncoding.pad(positive, to: length, with: emptyChunk)
        negative = try A1111TextEncoding.pad(negative, to: length, with: emptyChunk)
        let positiveBatch = repeatBatch(positive, request.count)
        return EncodedPrompt(
            conditioning: UNetConditioning(context: concat([repeatBatch(negative, request.count), positiveBatch], axis: 0)),
            positive: UNetConditioning(context: positiveBatch))
    }

    /// SDXL with A1111 prompt syntax: both encoders chunk and weight the prompt on their own, their hidden states
    /// side by side; the pooled output is the second encoder's for the first chunk; an empty negative prompt is
    /// zeros (A1111's `force_zero_negative_prompt`). Both encoders read their penultimate layer whatever the CLIP
    /// skip, as A1111 does for SDXL (its `sdxl_clip_l_skip` is off by default).
    func encodeSDXLA1111(_ request: GenerationRequest) throws -> EncodedPrompt {
        guard let tokenizer2 = model.tokenizer2, let textEncoder2 = model.textEncoder2 else {
            throw GenerationError.invalidRequest("SDXL model without a second text encoder")
        }
        let layer = CLIPTextLayerSelection.stableDiffusionXL(clipSkip: nil)
        let first = A1111TextEncoding(tokenizer: model.tokenizer, encoder: model.textEncoder, layer: layer)
        let second = A1111TextEncoding(tokenizer: tokenizer2, encoder: textEncoder2, layer: layer)
        func encodeBoth(_ text: String) throws -> (context: Tensor, pooled: Tensor) {
            var a = try first.encode(text).hiddenStates
            let encodedB = try second.encode(text)
            var b = encodedB.hiddenStates
            let length = max(a.shape[1], b.shape[1])
            a = try A1111TextEncoding.pad(a, to: length) { try first.encode("").hiddenStates }
            b = try A1111TextEncoding.pad(b, to: length) { try second.encode("").hiddenStates }
            guard let pooled = encodedB.textEmbeds else {
                throw GenerationError.invalidRequest("SDXL second encoder gave no text embeds")
            }
            return (concat([a, b], axis: 2), pooled)
        }
        var positive = try encodeBoth(request.prompt)
        let timeIds = Tensor(
            shape: [1, 6],
            values: [Float(request.height), Float(request.width), 0, 0, Float(request.height), Float(request.width)])
        guard request.usesGuidance else {
            let conditioning = UNetConditioning(
                context: repeatBatch(positive.context, request.count), textEmbeds: repeatBatch(positive.pooled, request.count),
                timeIds: repeatBatch(timeIds, request.count))
            return EncodedPrompt(conditioning: conditioning, positive: conditioning)
        }
        let negativeText = request.negativePrompt ?? ""
        var negative: (context: Tensor, pooled: Tensor)
        if negativeText.isEmpty {
            let width = positive.context.shape[2]
            negative = (Tensor.zeros([1, 77, width]), Tensor.zeros(positive.pooled.shape))
        } else {
            negative = try encodeBoth(negativeText)
        }
        let length = max(positive.context.shape[1], negative.context.shape[1])
        var empty: Tensor?
        let emptyChunk = { () throws -> Tensor in
            if let empty { return empty }
            empty = try encodeBoth("").context
            return empty!
        }
        positive.context = try A1111TextEncoding.pad(positive.context, to: length, with: emptyChunk)
        negative.context = try A1111TextEncoding.pad(negative.context, to: length, with: emptyChunk)
        let positiveConditioning = UNetConditioning(
            context: repeatBatch(positive.context, request.count), textEmbeds: repeatBatch(positive.pooled, request.count),
            timeIds: repeatBatch(timeIds, request.count))
        let conditioning = UNetConditioning(
            context: concat([repeatBatch(negative.context, request.count), positiveConditioning.context], axis: 0),
            textEmbeds: concat(
                [repeatBatch(negative.pooled, request.count), repeatBatch(positive.pooled, request.count)], axis: 0),
            timeIds: repeatBatch(timeIds, 2 * request.count))
        return EncodedPrompt(conditioning: conditioning, positive: positiveConditioning)
    }
}
