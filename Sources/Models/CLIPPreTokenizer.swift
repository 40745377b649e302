import Foundation

/// The text pipeline in front of CLIP's BPE, exactly as transformers' `CLIPTokenizer` configures the
/// `tokenizers` library: normalise (NFC, every run of Unicode whitespace to one space, per-character
/// lower-casing), split with CLIP's pattern
/// `<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+`
/// (whitespace dropped), then split each piece again with the byte-level pre-tokenizer's GPT-2 pattern and
/// spell it in GPT-2's byte-to-unicode alphabet.
///
/// Hand-written scanners instead of regexes: the patterns are short, and a scanner over Unicode scalars with
/// Swift's Unicode properties gives the same classes as Oniguruma's (checked code point by code point against
/// `tokenizers` in CLIPTokenizerTests) without depending on a regex engine's Unicode tables.
enum CLIPPreTokenizer {
    /// NFC, whitespace runs to " ", lower-case; transformers' `normalizers.Sequence([NFC(), Replace(\s+, " "),
    /// Lowercase()])`. Lower-casing maps each scalar on its own (Rust's `char::to_lowercase`), so a final
    /// capital sigma becomes "σ", not "ς", and "İ" becomes "i" + U+0307.
    static func normalize(_ text: Substring) -> [Unicode.Scalar] {
        let composed = String(text).precomposedStringWithCanonicalMapping
        var out: [Unicode.Scalar] = []
        out.reserveCapacity(composed.unicodeScalars.count)
        var inWhitespace = false
        for scalar in composed.unicodeScalars {
            if scalar.properties.isWhitespace {
                if !inWhitespace { out.append(" ") }
                inWhitespace = true
                continue
            }
            inWhitespace = false
            let lower = scalar.properties.lowercaseMapping.unicodeScalars
            if lower.count == 1, let only = lower.first, only == scalar {
                out.append(scalar)
            } else {
                out.append(contentsOf: lower)
            }
        }
        return out
    }

    /// The pieces of normalised text that become BPE words, in order.
    static func split(_ text: ArraySlice<Unicode.Scalar>) -> [ArraySlice<Unicode.Scalar>] {
        var pieces: [ArraySlice<Unicode.Scalar>] = []
        for piece in clipSplit(text) {
            pieces.append(contentsOf: byteLevelSplit(piece))
        }
        return pieces
    }

    // MARK: - Character classes

    @inline(__always) static func isLetter(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: true
        default: false
        }
    }

    @inline(__always) static func isNumber(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.properties.generalCategory {
        case .decimalNumber, .letterNumber, .otherNumber: true
        default: false
        }
    }

    @inline(__always) static func isWhitespace(_ scalar: Unicode.Scalar) -> Bool { scalar.properties.isWhitespace }

    /// `[^\s\p{L}\p{N}]`
    @inline(__always) static func isOther(_ scalar: Unicode.Scalar) -> Bool {
        !isWhitespace(scalar) && !isLetter(scalar) && !isNumber(scalar)
    }

    // MARK: - Scanners

    static let specialLiterals: [[Unicode.Scalar]] = ["<|startoftext|>", "<|endoftext|>"].map { Array($0.unicodeScalars) }

    /// Length of the contraction (`'s 't 're 've 'm 'll 'd`) starting at `i`, or nil.
    private static func contractionLength(_ text: ArraySlice<Unicode.Scalar>, at i: Int) -> Int? {
        guard text[i] == "'", i + 1 < text.endIndex else { return nil }
        switch text[i + 1] {
        case "s", "t", "m", "d": return 2
        case "r", "v":
            return i + 2 < text.endIndex && text[i + 2] == "e" ? 3 : nil
        case "l":
            return i + 2 < text.endIndex && text[i + 2] == "l" ? 3 : nil
        default: return nil
        }
    }

    /// The end of the run of scalars satisfying `belongs`, starting at `i`.
    private static func runEnd(
        _ text: ArraySlice<Unicode.Scalar>, from i: Int, _ belongs: (Unicode.Scalar) -> Bool
    ) -> Int {
        var end = i
        while end < text.endIndex && belongs(text[end]) { end += 1 }
        return end
    }

    /// CLIP's split pattern, leftmost-first alternation at each match start as Oniguruma runs it.
    static func clipSplit(_ text: ArraySlice<Unicode.Scalar>) -> [ArraySlice<Unicode.Scalar>] {
        var pieces: [ArraySlice<Unicode.Scalar>] = []
        var i = text.startIndex
        while i < text.endIndex {
            let scalar = text[i]
            if isWhitespace(scalar) {
                i += 1
                continue
            }
            var end: Int
            if let literal = specialLiterals.first(where: { text[i...].starts(with: $0) }) {
                end = i + literal.count
            } else if let length = contractionLength(text, at: i) {
                end = i + length
            } else if isLetter(scalar) {
                end = runEnd(text, from: i, isLetter)
            } else if isNumber(scalar) {
                end = i + 1
            } else {
                end = runEnd(text, from: i, isOther)
            }
            pieces.append(text[i..<end])
            i = end
        }
        return pieces
    }

    /// The byte-level pre-tokenizer's GPT-2 pattern (`'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+|
    /// ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`) on one whitespace-free piece. It only changes the pieces that spell
    /// a special token in normalised text (an upper-case `<|ENDOFTEXT|>`, say): `<|`, `endoftext`, `|>`.
    static func byteLevelSplit(_ piece: ArraySlice<Unicode.Scalar>) -> [ArraySlice<Unicode.Scalar>] {
        var pieces: [ArraySlice<Unicode.Scalar>] = []
        var i = piece.startIndex
        while i < piece.endIndex {
            let scalar = piece[i]
            let end: Int
            if let length = contractionLength(piece, at: i) {
                end = i + length
            } else if isLetter(scalar) {
                end = runEnd(piece, from: i, isLetter)
            } else if isNumber(scalar) {
                end = runEnd(piece, from: i, isNumber)
            } else if isWhitespace(scalar) {
                end = runEnd(piece, from: i, isWhitespace)
            } else {
                end = runEnd(piece, from: i, isOther)
            }
            pieces.append(piece[i..<end])
            i = end
        }
        return pieces
    }

    // MARK: - Byte-level alphabet

    /// GPT-2's `bytes_to_unicode`: printable Latin-1 bytes stand for themselves, the other 68 bytes for
    /// U+0100 upwards, in byte order. BPE vocabularies are spelled in this alphabet.
    static let byteToScalar: [Unicode.Scalar] = {
        let printable = Set(Array(33...126) + Array(161...172) + Array(174...255))
        var next: UInt32 = 256
        return (0..<256).map { byte in
            if printable.contains(byte) { return Unicode.Scalar(UInt8(byte)) }
            defer { next += 1 }
            return Unicode.Scalar(next) ?? "?"
        }
    }()

    /// The inverse of `byteToScalar`.
    static let scalarToByte: [Unicode.Scalar: UInt8] = Dictionary(
        uniqueKeysWithValues: byteToScalar.enumerated().map { ($1, UInt8($0)) })
}
