import Foundation
import Models
import ParityTesting
@testable import Pipelines
import XCTest

/// Seeded random prompts and mutations of real ones through the A1111 prompt parsers (issue 10, "Done when"):
/// nothing crashes, and the one-pass parsers give exactly what the straightforward (quadratic) transcription of
/// A1111's rules below gives, weights compared bit for bit.
final class A1111PromptFuzzTests: XCTestCase {
    /// A1111's `parse_prompt_attention` transcribed directly: every closing bracket multiplies every entry since its
    /// opening one (the parser before it was made linear).
    static func referenceAttention(_ text: String) throws -> [A1111PromptSegment] {
        typealias P = A1111PromptParser
        let scalars = Array(text.unicodeScalars)
        var result: [(text: String, weight: Double)] = []
        var roundBrackets: [Int] = []
        var squareBrackets: [Int] = []
        func multiplyRange(from start: Int, by multiplier: Double) {
            for p in start..<result.count { result[p].weight *= multiplier }
        }
        func appendPlain(_ run: ArraySlice<Unicode.Scalar>) {
            for (index, part) in P.splitOnBreak(run).enumerated() {
                if index > 0 { result.append(("BREAK", -1)) }
                result.append((P.string(part), 1.0))
            }
        }
        var i = 0
        while i < scalars.count {
            switch scalars[i] {
            case "\\":
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
                if let end = P.weightTokenEnd(scalars, from: i) {
                    if let open = roundBrackets.popLast() {
                        let digits = scalars[(i + 1)..<(end - 1)]
                        guard let weight = P.pythonFloat(digits) else { throw A1111PromptError.invalidWeight(P.string(digits)) }
                        multiplyRange(from: open, by: weight)
                    } else {
                        appendPlain(scalars[i..<end])
                    }
                    i = end
                } else {
                    result.append((":", 1.0))
                    i += 1
                }
            case ")":
                if let open = roundBrackets.popLast() { multiplyRange(from: open, by: 1.1) } else { appendPlain(scalars[i..<(i + 1)]) }
                i += 1
            case "]":
                if let open = squareBrackets.popLast() { multiplyRange(from: open, by: 1 / 1.1) } else { appendPlain(scalars[i..<(i + 1)]) }
                i += 1
            default:
                var end = i
                while end < scalars.count, !"\\()[]:".unicodeScalars.contains(scalars[end]) { end += 1 }
                appendPlain(scalars[i..<end])
                i = end
            }
        }
        for open in roundBrackets { multiplyRange(from: open, by: 1.1) }
        for open in squareBrackets { multiplyRange(from: open, by: 1 / 1.1) }
        if result.isEmpty { result = [("", 1.0)] }
        var merged: [(text: String, weight: Double)] = []
        for entry in result {
            if let last = merged.last, last.weight == entry.weight { merged[merged.count - 1].text += entry.text } else { merged.append(entry) }
        }
        return merged.map { A1111PromptSegment($0.text, $0.weight) }
    }

    /// `re.sub(r"<(\w+):([^>]+)>", "", prompt)` with the tags it removed, scanning afresh from every `<`.
    static func referenceExtraNetworks(_ prompt: String) -> (prompt: String, tags: [A1111ExtraNetworkTag]) {
        let scalars = Array(prompt.unicodeScalars)
        var kept = String.UnicodeScalarView()
        var tags: [A1111ExtraNetworkTag] = []
        var i = 0
        scan: while i < scalars.count {
            if scalars[i] == "<" {
                var j = i + 1
                while j < scalars.count, A1111PromptParser.isWordCharacter(scalars[j]) { j += 1 }
                if j > i + 1, j < scalars.count, scalars[j] == ":" {
                    let typeEnd = j
                    j += 1
                    let argumentsStart = j
                    while j < scalars.count, scalars[j] != ">" { j += 1 }
                    if j > argumentsStart, j < scalars.count {
                        tags.append(
                            A1111ExtraNetworkTag(
                                type: A1111PromptParser.string(scalars[(i + 1)..<typeEnd]),
                                arguments: A1111PromptParser.string(scalars[argumentsStart..<j])))
                        i = j + 1
                        continue scan
                    }
                }
            }
            kept.append(scalars[i])
            i += 1
        }
        return (String(kept), tags)
    }

    static let alphabet = [
        "(", ")", "[", "]", "(", ")", "\\", ":", "1", ".", "5", "0", "-", "+", "a", "b", "cat", " ", " ", ",", "BREAK", " BREAK ",
        "<", ">", "lora", "lora:x:0.5", "te=0.2", "=", ":1.2)", ":.5)", ":1.2.3)", "\n", "\t", "é", "٣", "_", "AND", "|", "𝟙", "\u{301}",
    ]

    static let seedPrompts = [
        "a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).", "an (important) word", "(unbalanced", #"\(literal\]"#,
        "a BREAK b", "a cat <lora:sd1-lora:0.8>, <lora:b:0.5:0.25> <hypernet:h:1> <lora:c:te=0.3:unet=0.7> done",
        "([a:0.5])", "(a:.5) (b:1.) (c:+2) (d:-1)", "[a (b", "a,BREAK,b", "((masterpiece)), best quality, [[blurry]]",
    ]

    private func checkSame(_ prompt: String, file: StaticString = #filePath, line: UInt = #line) {
        let label = String(reflecting: prompt)
        switch (Result { try A1111PromptParser.parseAttention(prompt) }, Result { try Self.referenceAttention(prompt) }) {
        case (.success(let fast), .success(let reference)):
            XCTAssertEqual(fast.map(\.text), reference.map(\.text), label, file: file, line: line)
            // Bit for bit (NaN from 0 * inf included).
            XCTAssertEqual(fast.map(\.weight.bitPattern), reference.map(\.weight.bitPattern), label, file: file, line: line)
        case (.failure(let fast), .failure(let reference)):
            XCTAssertEqual(fast as? A1111PromptError, reference as? A1111PromptError, label, file: file, line: line)
        case (let fast, let reference):
            XCTFail("\(label): \(fast) vs reference \(reference)", file: file, line: line)
        }
        let networks = A1111ExtraNetworks.parse(prompt), referenceNetworks = Self.referenceExtraNetworks(prompt)
        XCTAssertEqual(networks.prompt, referenceNetworks.prompt, label, file: file, line: line)
        XCTAssertEqual(networks.tags, referenceNetworks.tags, label, file: file, line: line)
        for tag in networks.tags where tag.isLoRA { _ = try? A1111LoRATag(tag) }
    }

    func testRandomPromptsMatchTheReference() throws {
        var random = FuzzRandom(seed: 0xA1_1117)
        for prompt in Self.seedPrompts { checkSame(prompt) }
        let seedBytes = Self.seedPrompts.map { Array($0.utf8) }
        for _ in 0..<5000 {
            let prompt: String
            if random.chance(0.5) {
                prompt = FuzzMutator.text(from: Self.alphabet, length: random.below(60), using: &random)
            } else {
                // Byte mutations, read back as UTF-8 (invalid sequences become U+FFFD).
                prompt = String(decoding: FuzzMutator.mutate(random.pick(seedBytes), others: seedBytes, maximumSteps: 8, using: &random), as: UTF8.self)
            }
            checkSame(prompt)
        }
    }

    /// Fuzzed prompts also chunk into 77-token windows without trouble.
    func testRandomPromptsChunk() throws {
        let tokenizer = try CLIPTokenizer(folder: Golden.fixturesDirectory.appendingPathComponent("models/sd1/tokenizer"))
        let chunker = A1111PromptChunker(tokenizer: tokenizer)
        var random = FuzzRandom(seed: 0xC4_0E4C)
        var chunked = 0
        for _ in 0..<1500 {
            let prompt = FuzzMutator.text(from: Self.alphabet, length: random.below(200), using: &random)
            guard let segments = try? A1111PromptParser.parseAttention(A1111ExtraNetworks.parse(prompt).prompt) else { continue }
            let (chunks, tokenCount) = chunker.chunks(for: segments)
            XCTAssertFalse(chunks.isEmpty)
            XCTAssertLessThanOrEqual(tokenCount, chunks.count * 75)
            for chunk in chunks {
                XCTAssertEqual(chunk.tokens.count, 77)
                XCTAssertEqual(chunk.multipliers.count, 77)
            }
            chunked += 1
        }
        XCTAssertGreaterThan(chunked, 500)
    }
}
