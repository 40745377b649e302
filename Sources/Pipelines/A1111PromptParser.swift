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

    public var description: String {
        switch self {
        case .invalidWeight(let weight): "prompt emphasis weight '\(weight)' is not a number (write e.g. (word:1.2))"
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

    /// The weighted runs of `text`. Throws when a `(text:weight)` weight is not a number.
    public static func parseAttention(_ text: String) throws -> [A1111PromptSegment] {
        let scalars = Array(text.unicodeScalars)
        var result: [(text: String, weight: Double)] = []
        var roundBrackets: [Int] = []
        var squareBrackets: [Int] = []

        func multiplyRange(from start: Int, by multiplier: Double) {
            for p in start..<result.count { result[p].weight *= multiplier }
        }
        func appendPlain(_ run: ArraySlice<Unicode.Scalar>) {
            for (index, part) in splitOnBreak(run).enumerated() {
                if index > 0 { result.append(("BREAK", -1)) }
                result.append((string(part), 1.0))
            }
        }

        var i = 0
        while i < scalars.count {
            let c = scalars[i]
            switch c {
            case "\\":
                // `\(`, `\)`, `\[`, `\]`, `\\` are the character; a lone backslash is dropped (its text[1:] is "").
                if i + 1 < scalars.count, "()[]\\".unicodeScalars.contains(scalars[i + 1]) {
                    result.append((String(scalars[i + 1]), 1.0))
                    i += 2
                } else {
                    result.append(("", 1.0))
                    i += 1
                }
            case "(":
                roundBrackets.append(result.count)
                i += 1
            case "[":
                squareBrackets.append(result.count)
                i += 1
            case ":":
                if let end = weightTokenEnd(scalars, from: i) {
                    let token = scalars[i..<end]
                    if let open = roundBrackets.popLast() {
                        let digits = scalars[(i + 1)..<(end - 1)]
                        guard let weight = pythonFloat(digits) else { throw A1111PromptError.invalidWeight(string(digits)) }
                        multiplyRange(from: open, by: weight)
                    } else {
                        appendPlain(token)
                    }
                    i = end
                } else {
                    result.append((":", 1.0))
                    i += 1
                }
            case ")":
                if let open = roundBrackets.popLast() {
                    multiplyRange(from: open, by: roundMultiplier)
                } else {
                    appendPlain(scalars[i..<(i + 1)])
                }
                i += 1
            case "]":
                if let open = squareBrackets.popLast() {
                    multiplyRange(from: open, by: squareMultiplier)
                } else {
                    appendPlain(scalars[i..<(i + 1)])
                }
                i += 1
            default:
                var end = i
                while end < scalars.count, !"\\()[]:".unicodeScalars.contains(scalars[end]) { end += 1 }
                appendPlain(scalars[i..<end])
                i = end
            }
        }
        for open in roundBrackets { multiplyRange(from: open, by: roundMultiplier) }
        for open in squareBrackets { multiplyRange(from: open, by: squareMultiplier) }
        if result.isEmpty { result = [("", 1.0)] }

        // Merge runs of identical weights.
        var merged: [(text: String, weight: Double)] = []
        for entry in result {
            if let last = merged.last, last.weight == entry.weight {
                merged[merged.count - 1].text += entry.text
            } else {
                merged.append(entry)
            }
        }
        return merged.map { A1111PromptSegment($0.text, $0.weight) }
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
        scalar.properties.numericType == .decimal
    }

    /// Python's `\w` (Unicode letters, digits and the underscore).
    static func isWordCharacter(_ scalar: Unicode.Scalar) -> Bool {
        scalar == "_" || scalar.properties.isAlphabetic || scalar.properties.numericType != nil
    }

    /// `re.split(r"\s*\bBREAK\b\s*", text)`.
    static func splitOnBreak(_ run: ArraySlice<Unicode.Scalar>) -> [ArraySlice<Unicode.Scalar>] {
        let keyword = Array("BREAK".unicodeScalars)
        var parts: [ArraySlice<Unicode.Scalar>] = []
        var partStart = run.startIndex
        var i = run.startIndex
        while i + keyword.count <= run.endIndex {
            let matches = run[i..<(i + keyword.count)].elementsEqual(keyword)
            let boundaryBefore = i == run.startIndex || !isWordCharacter(run[i - 1])
            let boundaryAfter = i + keyword.count == run.endIndex || !isWordCharacter(run[i + keyword.count])
            guard matches, boundaryBefore, boundaryAfter else {
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
