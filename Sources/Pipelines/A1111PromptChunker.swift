import Foundation
import Models

/// One 77-token window of an AUTOMATIC1111 prompt: BOS, 75 prompt tokens (padded with EOS), EOS, and a
/// multiplier per token (1 for BOS, EOS and padding).
public struct A1111PromptChunk: Sendable, Equatable {
    public var tokens: [Int]
    public var multipliers: [Float]

    public init(tokens: [Int], multipliers: [Float]) {
        self.tokens = tokens
        self.multipliers = multipliers
    }

    /// The ids the text encoder sees: where the model pads with another id than EOS (SD 2.x, SDXL's second
    /// encoder), everything after the first EOS becomes that id, as A1111's `process_tokens` does.
    public func encoderIDs(endOfText: Int, padding: Int) -> [Int] {
        guard endOfText != padding, let end = tokens.firstIndex(of: endOfText) else { return tokens }
        var ids = tokens
        for i in (end + 1)..<ids.count { ids[i] = padding }
        return ids
    }
}

/// AUTOMATIC1111's prompt chunking (`modules/sd_hijack_clip.py`, `tokenize_line`): each weighted run is tokenised
/// on its own (no BOS/EOS), tokens are gathered into chunks of 75, and
///
/// - when a chunk is full and the last comma is at most `commaBacktrack` tokens back, the tokens after that comma
///   move to the next chunk (`comma_padding_backtrack`, 20 by default);
/// - `BREAK` closes the current chunk;
/// - each chunk is padded with EOS to 75 and wrapped as BOS + 75 + EOS; an empty prompt is one empty chunk.
///
/// Textual-inversion embeddings are not looked up (their names are tokenised as text).
public struct A1111PromptChunker: Sendable {
    public let tokenizer: CLIPTokenizer
    public var chunkLength = 75
    public var commaBacktrack = 20

    public init(tokenizer: CLIPTokenizer) {
        self.tokenizer = tokenizer
    }

    /// Parses and chunks `prompt`.
    public func chunks(for prompt: String) throws -> [A1111PromptChunk] {
        chunks(for: try A1111PromptParser.parseAttention(prompt)).chunks
    }

    /// The chunks of parsed `segments`, and A1111's token count (75 per full chunk, the used length of the last).
    public func chunks(for segments: [A1111PromptSegment]) -> (chunks: [A1111PromptChunk], tokenCount: Int) {
        let comma = tokenizer.id(of: "," + CLIPTokenizer.endOfWordSuffix)
        let (start, end) = (tokenizer.bosTokenID, tokenizer.eosTokenID)
        var chunks: [A1111PromptChunk] = []
        var tokens: [Int] = []
        var multipliers: [Float] = []
        var tokenCount = 0
        var lastComma = -1

        func nextChunk(isLast: Bool = false) {
            tokenCount += isLast ? tokens.count : chunkLength
            let padding = chunkLength - tokens.count
            if padding > 0 {
                tokens += Array(repeating: end, count: padding)
                multipliers += Array(repeating: 1, count: padding)
            }
            chunks.append(A1111PromptChunk(tokens: [start] + tokens + [end], multipliers: [1] + multipliers + [1]))
            tokens = []
            multipliers = []
            lastComma = -1
        }

        for segment in segments {
            if segment.isBreak {
                nextChunk()
                continue
            }
            let weight = Float(segment.weight)
            for token in tokenizer.tokenize(segment.text) {
                if token == comma {
                    lastComma = tokens.count
                } else if commaBacktrack != 0, tokens.count == chunkLength, lastComma != -1,
                    tokens.count - lastComma <= commaBacktrack
                {
                    // Full at a non-comma with a comma close behind: the words after the comma go to the next chunk.
                    let breakLocation = lastComma + 1
                    let movedTokens = Array(tokens[breakLocation...])
                    let movedMultipliers = Array(multipliers[breakLocation...])
                    tokens.removeSubrange(breakLocation...)
                    multipliers.removeSubrange(breakLocation...)
                    nextChunk()
                    tokens = movedTokens
                    multipliers = movedMultipliers
                }
                if tokens.count == chunkLength { nextChunk() }
                tokens.append(token)
                multipliers.append(weight)
            }
        }
        if !tokens.isEmpty || chunks.isEmpty { nextChunk(isLast: true) }
        return (chunks, tokenCount)
    }
}
