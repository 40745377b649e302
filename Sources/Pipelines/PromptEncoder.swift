import Compute
import Models

/// The UNet conditioning of a batch: `[negative x count, positive x count]` with guidance, else `positive x count`.
struct EncodedPrompt {
    var conditioning: UNetConditioning
    /// The positive half only (guess-mode ControlNets see only it).
    var positive: UNetConditioning
}

/// Turns prompts into UNet conditioning the way diffusers' `encode_prompt` does for each model family, or the way
/// AUTOMATIC1111 does for `.a1111` prompt syntax (A1111PromptEncoding.swift).
struct PromptEncoder {
    let model: StableDiffusionModel

    func encode(_ request: GenerationRequest) throws -> EncodedPrompt {
        switch (model.family, request.promptSyntax) {
        case (.sd1, .plain), (.sd2, .plain): return try encodeSD(request)
        case (.sdxl, .plain): return try encodeSDXL(request)
        case (.sd1, .a1111), (.sd2, .a1111): return try encodeSDA1111(request)
        case (.sdxl, .a1111): return try encodeSDXLA1111(request)
        }
    }

    /// SD 1.x/2.x: `last_hidden_state` (or `final_layer_norm(hidden_states[-(clip_skip + 1)])`).
    private func encodeSD(_ request: GenerationRequest) throws -> EncodedPrompt {
        let selection = CLIPTextLayerSelection.stableDiffusion(clipSkip: request.clipSkip)
        let positive = try model.textEncoder.encode([model.tokenizer.encode(request.prompt)], layer: selection).hiddenStates
        let positiveBatch = repeatBatch(positive, request.count)
        guard request.usesGuidance else {
            let conditioning = UNetConditioning(context: positiveBatch)
            return EncodedPrompt(conditioning: conditioning, positive: conditioning)
        }
        let negative = try model.textEncoder.encode([model.tokenizer.encode(request.negativePrompt ?? "")], layer: selection).hiddenStates
        return EncodedPrompt(
            conditioning: UNetConditioning(context: concat([repeatBatch(negative, request.count), positiveBatch], axis: 0)),
            positive: UNetConditioning(context: positiveBatch))
    }

    /// SDXL: both encoders' penultimate hidden states side by side, the second encoder's projected pooled
    /// output, and the size/crop time ids.
    private func encodeSDXL(_ request: GenerationRequest) throws -> EncodedPrompt {
        guard let tokenizer2 = model.tokenizer2, let textEncoder2 = model.textEncoder2 else {
            throw GenerationError.invalidRequest("SDXL model without a second text encoder")
        }
        let selection = CLIPTextLayerSelection.stableDiffusionXL(clipSkip: request.clipSkip)
        func encodeBoth(_ text: String) throws -> (context: Tensor, pooled: Tensor) {
            let first = try model.textEncoder.encode([model.tokenizer.encode(text)], layer: selection)
            let second = try textEncoder2.encode([tokenizer2.encode(text)], layer: selection)
            guard let pooled = second.textEmbeds else { throw GenerationError.invalidRequest("SDXL second encoder gave no text embeds") }
            return (concat([first.hiddenStates, second.hiddenStates], axis: 2), pooled)
        }
        let positive = try encodeBoth(request.prompt)
        let timeIds = Tensor(shape: [1, 6], values: [Float(request.height), Float(request.width), 0, 0, Float(request.height), Float(request.width)])
        let positiveConditioning = UNetConditioning(
            context: repeatBatch(positive.context, request.count), textEmbeds: repeatBatch(positive.pooled, request.count),
            timeIds: repeatBatch(timeIds, request.count))
        guard request.usesGuidance else { return EncodedPrompt(conditioning: positiveConditioning, positive: positiveConditioning) }

        let negative: (context: Tensor, pooled: Tensor)
        if request.negativePrompt == nil && model.forceZerosForEmptyPrompt {
            negative = (Tensor.zeros(positive.context.shape), Tensor.zeros(positive.pooled.shape))
        } else {
            negative = try encodeBoth(request.negativePrompt ?? "")
        }
        let conditioning = UNetConditioning(
            context: concat([repeatBatch(negative.context, request.count), positiveConditioning.context], axis: 0),
            textEmbeds: concat([repeatBatch(negative.pooled, request.count), repeatBatch(positive.pooled, request.count)], axis: 0),
            timeIds: repeatBatch(timeIds, 2 * request.count))
        return EncodedPrompt(conditioning: conditioning, positive: positiveConditioning)
    }
}

/// `x` (batch 1) repeated `count` times along the batch axis.
func repeatBatch(_ x: Tensor, _ count: Int) -> Tensor {
    count == 1 ? x : concat(Array(repeating: x, count: count), axis: 0)
}
