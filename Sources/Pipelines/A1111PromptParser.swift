import Foundation

/// One run of prompt text with its attention weight, as AUTOMATIC1111's `parse_prompt_attention` returns it.
/// A `BREAK` keyword is the entry `("BREAK", -1)`.
public struct A1111PromptSegment: Sendable, Equatable, CustomStringConvertible {
    public var text: String
    public var weight: Double

    public init(_ text: String, _ weight: Double) {
        self.text = text
        self.weight = weight
    }

    /// True for the marker that forces a new 75-token chunk.
    public var isBreak: Bool { text == "BREAK" && weight == -1 }

    public var description: String { "[\(String(reflecting: text)), \(weight)]" }
}

/// Why a prompt could not be read.
public enum A1111PromptError: Error, CustomStringConvertible, Equatable, Sendable {
    /// `(text:weight)` whose weight is not a number (AUTOMATIC1111 fails on these too).
    case invalidWeight(String)
    /// Brackets nested so deeply around so many runs of text that weighing them would take more than `limit`
    /// multiplications (A1111 would spend minutes on it).
    case tooDeeplyNested(limit: Int)

    public var description: String {
        switch self {
        case .invalidWeight(let weight): "prompt emphasis weight '\(weight)' is not a number (write e.g. (word:1.2))"
        case .tooDeeplyNested(let limit):
            "prompt emphasis brackets are nested too deeply: weighing them would take more than \(limit) steps "
                + "(use fewer nested ( ) or [ ])"
        }
    }
}

/// AUTOMATIC1111's prompt emphasis syntax (`modules/prompt_parser.py`, `parse_prompt_attention`), rule for rule:
///
/// - `(text)` multiplies the attention of `text` by 1.1, `[text]` by 1 / 1.1, `(text:1.5)` by 1.5; brackets nest
///   and multiply;
/// - `\(`, `\)`, `\[`, `\]`, `\\` are the literal characters; a backslash before anything else is dropped;
/// - a `)` or `]` without an opening bracket is literal text; brackets left open at the end apply to the rest;
/// - `BREAK` (a whole word, with the spaces around it) becomes the entry `("BREAK", -1)`;
/// - neighbouring runs of equal weight are merged, and an empty prompt is `[("", 1)]`.
///
/// Prompt editing (`[from:to:when]`), alternation (`[a|b]`) and `AND` are not evaluated: they are read as the
/// emphasis parser reads them.
public enum A1111PromptParser {
    static let roundMultiplier = 1.1
    static let squareMultiplier = 1 / 1.1

    /// The most bracket-weight multiplications one prompt may ask for (each closing bracket multiplies every run
    /// of text since its opening bracket). Ordinary prompts need a few hundred; a prompt that nests brackets
    /// thousands deep around thousands of separate runs of text would need billions, and is refused instead.
    public static let maximumWeightingWork = 1 << 22

    /// The weighted runs of `text`. Throws when a `(text:weight)` weight is not a number, or when the brackets
    /// would need more than `maximumWeightingWork` multiplications.
    ///
    /// One pass over the text: consecutive entries that no bracket separates share one weight slot, each closing
    /// bracket multiplies the slots since its opening one in place (in A1111's order, so every weight is the same
    /// product, rounded the same way), and the work of those multiplications is bounded by
    /// `maximumWeightingWork`.
    public static func parseAttention(_ text: String) throws -> [A1111PromptSegment] {
        let scalars = Array(text.unicodeScalars)
        // The entries A1111 builds, each pointing at its weight slot; a slot is shared by entries that no
        // bracket event separates (they are always multiplied together).
        var texts: [String] = []
        var slotOfEntry: [Int] = []
        var weights: [Double] = []
        var lastSlotIsOpen = false
        var lastSlotInitialWeight = 0.0
        var work = 0
        // Positions in `weights` (slot indexes) where brackets opened.
        var roundBrackets: [Int] = []
        var squareBrackets: [Int] = []

        func append(_ entry: String, _ weight: Double) {
            if !(lastSlotIsOpen && lastSlotInitialWeight == weight) {
                weights.append(weight)
                lastSlotIsOpen = true
                lastSlotInitialWeight = weight
            }
            texts.append(entry)
            slotOfEntry.append(weights.count - 1)
        }
        func open() -> Int {
            lastSlotIsOpen = false
            return weights.count
        }
        func multiplyRange(from start: Int, by multiplier: Double) throws {
            lastSlotIsOpen = false
            let count = weights.count - start
            guard count > 0 else { return }
            work += count
            guard work <= maximumWeightingWork else { throw A1111PromptError.tooDeeplyNested(limit: maximumWeightingWork) }
            weights.withUnsafeMutableBufferPointer { slots in
                for p in start..<slots.count { slots[p] *= multiplier }
            }
        }
        func appendPlain(_ run: ArraySlice<Unicode.Scalar>) {
            for (index, part) in splitOnBreak(run).enumerated() {
                if index > 0 { append("BREAK", -1) }
                append(string(part), 1.0)
            }
        }

        var i = 0
        while i < scalars.count {
            let c = scalars[i]
            switch c {
            case "\\":
                // `\(`, `\)`, `\[`, `\]`, `\\` are the character; a lone backslash is dropped (its text[1:] is "").
                if i + 1 < scalars.count, "()[]\\".unicodeScalars.contains(scalars[i + 1]) {
                    append(String(scalars[i + 1]), 1.0)
                    i += 2
                } else {
                    append("", 1.0)
                    i += 1
                }
            case "(":
                roundBrackets.append(open())
                i += 1
            case "[":
                squareBrackets.append(open())
                i += 1
            case ":":
                if let end = weightTokenEnd(scalars, from: i) {
                    let token = scalars[i..<end]
                    if let open = roundBrackets.popLast() {
                        let digits = scalars[(i + 1)..<(end - 1)]
                        guard let weight = pythonFloat(digits) else { throw A1111PromptError.invalidWeight(string(digits)) }
                        try multiplyRange(from: open, by: weight)
                    } else {
                        appendPlain(token)
                    }
                    i = end
                } else {
                    append(":", 1.0)
                    i += 1
                }
            case ")":
                if let open = roundBrackets.popLast() {
                    try multiplyRange(from: open, by: roundMultiplier)
                } else {
                    appendPlain(scalars[i..<(i + 1)])
                }
                i += 1
            case "]":
                if let open = squareBrackets.popLast() {
                    try multiplyRange(from: open, by: squareMultiplier)
                } else {
                    appendPlain(scalars[i..<(i + 1)])
                }
                i += 1
            default:
                var end = i
                while end < scalars.count, !isSyntax(scalars[end]) { end += 1 }
                appendPlain(scalars[i..<end])
                i = end
            }
        }
        // Brackets left open apply to everything after them: refuse before doing work that would be refused.
        let pending = (roundBrackets + squareBrackets).reduce(0) { $0 + max(0, weights.count - $1) }
        guard work + pending <= maximumWeightingWork else { throw A1111PromptError.tooDeeplyNested(limit: maximumWeightingWork) }
        for open in roundBrackets { try multiplyRange(from: open, by: roundMultiplier) }
        for open in squareBrackets { try multiplyRange(from: open, by: squareMultiplier) }
        if texts.isEmpty { return [A1111PromptSegment("", 1.0)] }

        // Merge runs of identical weights.
        var merged: [A1111PromptSegment] = []
        for (entry, slot) in zip(texts, slotOfEntry) {
            let weight = weights[slot]
            if let last = merged.last, last.weight == weight {
                merged[merged.count - 1].text += entry
            } else {
                merged.append(A1111PromptSegment(entry, weight))
            }
        }
        return merged
    }

    /// The characters that end a run of plain text.
    static func isSyntax(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar {
        case "\\", "(", ")", "[", "]", ":": true
        default: false
        }
    }

    /// The end of `:NUMBER)` starting at `start` (the regex `:([+-]?[.\d]+)\)`), or nil.
    static func weightTokenEnd(_ scalars: [Unicode.Scalar], from start: Int) -> Int? {
        var j = start + 1
        if j < scalars.count, scalars[j] == "+" || scalars[j] == "-" { j += 1 }
        let digitsStart = j
        while j < scalars.count, scalars[j] == "." || isDecimalDigit(scalars[j]) { j += 1 }
        guard j > digitsStart, j < scalars.count, scalars[j] == ")" else { return nil }
        return j + 1
    }

    /// Python's `float()` on what the weight regex matched: an optional sign, digits (any script's decimal
    /// digits, as `\d` and `float` accept them) and dots; nil where Python raises (`1.2.3`, `.`).
    static func pythonFloat(_ scalars: ArraySlice<Unicode.Scalar>) -> Double? {
        var ascii = ""
        for scalar in scalars {
            if scalar == "+" || scalar == "-" || scalar == "." {
                ascii.unicodeScalars.append(scalar)
            } else if let value = scalar.properties.numericValue, isDecimalDigit(scalar) {
                ascii += String(Int(value))
            } else {
                return nil
            }
        }
        let body = ascii.drop { $0 == "+" || $0 == "-" }
        guard body.filter({ $0 == "." }).count <= 1, body.contains(where: \.isNumber) else { return nil }
        return Double(ascii)
    }

    static func isDecimalDigit(_ scalar: Unicode.Scalar) -> Bool {
        if scalar.isASCII { return scalar.value >= 0x30 && scalar.value <= 0x39 }
        return scalar.properties.numericType == .decimal
    }

    /// Python's `\w` (Unicode letters, digits and the underscore).
    static func isWordCharacter(_ scalar: Unicode.Scalar) -> Bool {
        if scalar.isASCII {
            let value = scalar.value | 0x20  // lower case for letters
            return scalar == "_" || (scalar.value >= 0x30 && scalar.value <= 0x39) || (value >= 0x61 && value <= 0x7A)
        }
        return scalar.properties.isAlphabetic || scalar.properties.numericType != nil
    }

    /// `re.split(r"\s*\bBREAK\b\s*", text)`.
    static func splitOnBreak(_ run: ArraySlice<Unicode.Scalar>) -> [ArraySlice<Unicode.Scalar>] {
        let keyword = Array("BREAK".unicodeScalars)
        var parts: [ArraySlice<Unicode.Scalar>] = []
        var partStart = run.startIndex
        var i = run.startIndex
        while i + keyword.count <= run.endIndex {
            guard run[i] == "B", run[i..<(i + keyword.count)].elementsEqual(keyword),
                i == run.startIndex || !isWordCharacter(run[i - 1]),
                i + keyword.count == run.endIndex || !isWordCharacter(run[i + keyword.count])
            else {
                i += 1
                continue
            }
            // The leading `\s*` takes the whitespace right before the keyword (not what an earlier match took).
            var matchStart = i
            while matchStart > partStart, run[matchStart - 1].properties.isWhitespace { matchStart -= 1 }
            var matchEnd = i + keyword.count
            while matchEnd < run.endIndex, run[matchEnd].properties.isWhitespace { matchEnd += 1 }
            parts.append(run[partStart..<matchStart])
            partStart = matchEnd
            i = matchEnd
        }
        parts.append(run[partStart..<run.endIndex])
        return parts
    }

    static func string(_ scalars: ArraySlice<Unicode.Scalar>) -> String {
        var text = ""
        text.unicodeScalars.append(contentsOf: scalars)
        return text
    }
}
