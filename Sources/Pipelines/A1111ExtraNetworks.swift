import Foundation

/// One `<type:arg:arg...>` tag of AUTOMATIC1111's extra-networks syntax (`modules/extra_networks.py`): the
/// arguments split at `:`, those of the form `key=value` named, the others positional (the first is the name).
public struct A1111ExtraNetworkTag: Sendable, Equatable {
    /// "lora" (or its alias "lyco"), "hypernet", ...
    public var type: String
    public var positional: [String]
    public var named: [String: String]
    /// The tag as written, `<type:arguments>`.
    public var source: String

    public init(type: String, arguments: String) {
        self.type = type
        source = "<\(type):\(arguments)>"
        positional = []
        named = [:]
        for item in arguments.split(separator: ":", omittingEmptySubsequences: false).map(String.init) {
            let parts = item.split(separator: "=", maxSplits: 2, omittingEmptySubsequences: false)
            if parts.count == 2 {
                named[String(parts[0])] = String(parts[1])
            } else {
                positional.append(item)
            }
        }
    }

    /// True for the LoRA extra network (`lora`, and `lyco` as A1111's networks extension also registers).
    public var isLoRA: Bool { type == "lora" || type == "lyco" }
}

/// A LoRA named in a prompt: `<lora:name>`, `<lora:name:weight>`, or `<lora:name:te_weight:unet_weight>` (A1111's
/// order: the text-encoder multiplier first; `te=`/`unet=` named arguments override).
public struct A1111LoRATag: Sendable, Equatable {
    public var name: String
    public var textEncoderWeight: Float
    public var unetWeight: Float

    public init(name: String, textEncoderWeight: Float, unetWeight: Float) {
        self.name = name
        self.textEncoderWeight = textEncoderWeight
        self.unetWeight = unetWeight
    }

    /// The LoRA of a `lora` tag; throws when a multiplier is not a number.
    public init(_ tag: A1111ExtraNetworkTag) throws {
        func number(_ text: String) throws -> Float {
            guard let value = Double(text.trimmingCharacters(in: .whitespaces)), value.isFinite else {
                throw A1111PromptError.invalidWeight(text)
            }
            return Float(value)
        }
        name = tag.positional.first ?? ""
        var te: Float = tag.positional.count > 1 ? try number(tag.positional[1]) : 1
        if let named = tag.named["te"] { te = try number(named) }
        var unet = tag.positional.count > 2 ? try number(tag.positional[2]) : te
        if let named = tag.named["unet"] { unet = try number(named) }
        textEncoderWeight = te
        unetWeight = unet
    }
}

/// Finds and removes extra-network tags, as A1111's `parse_prompt` does (regex `<(\w+):([^>]+)>`, each tag replaced
/// by nothing). One pass: the search for a tag's closing `>` is remembered, so text with many `<` and no `>`
/// is not scanned again from every `<`.
public enum A1111ExtraNetworks {
    public static func parse(_ prompt: String) -> (prompt: String, tags: [A1111ExtraNetworkTag]) {
        let scalars = Array(prompt.unicodeScalars)
        var kept = String.UnicodeScalarView()
        var tags: [A1111ExtraNetworkTag] = []
        var closing = ClosingBracketFinder()
        var i = 0
        while i < scalars.count {
            if scalars[i] == "<", let (tag, end) = tag(in: scalars, at: i, closing: &closing) {
                tags.append(tag)
                i = end
            } else {
                kept.append(scalars[i])
                i += 1
            }
        }
        return (String(kept), tags)
    }

    /// The first `>` at or after a position; the positions asked for never decrease, so all calls together scan
    /// the text once.
    struct ClosingBracketFinder {
        private var searched = false
        /// The first `>` at or after every position asked for since the last scan (`scalars.count`: none).
        private var result = 0

        mutating func first(in scalars: [Unicode.Scalar], from start: Int) -> Int? {
            if !searched || start > result {
                var j = start
                while j < scalars.count, scalars[j] != ">" { j += 1 }
                result = j
                searched = true
            }
            return result < scalars.count ? result : nil
        }
    }

    /// The tag starting at `start` (a `<`) and the index after its `>`, or nil. `start` must not decrease
    /// between calls sharing `closing`.
    static func tag(in scalars: [Unicode.Scalar], at start: Int, closing: inout ClosingBracketFinder) -> (A1111ExtraNetworkTag, Int)? {
        var j = start + 1
        while j < scalars.count, A1111PromptParser.isWordCharacter(scalars[j]) { j += 1 }
        guard j > start + 1, j < scalars.count, scalars[j] == ":" else { return nil }
        let typeEnd = j
        let argumentsStart = j + 1
        guard let end = closing.first(in: scalars, from: argumentsStart), end > argumentsStart else { return nil }
        let tag = A1111ExtraNetworkTag(
            type: A1111PromptParser.string(scalars[(start + 1)..<typeEnd]),
            arguments: A1111PromptParser.string(scalars[argumentsStart..<end]))
        return (tag, end + 1)
    }
}
