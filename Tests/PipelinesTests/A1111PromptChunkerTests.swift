import Models
import ParityTesting
import Pipelines
import XCTest

/// `A1111PromptChunker` against AUTOMATIC1111's `tokenize_line` rules, on the tiny sd1 tokenizer (every single letter
/// and the comma are one token: "a" 320, "b" 321, "," 267; BOS 998, EOS 999).
final class A1111PromptChunkerTests: XCTestCase {
    static let tokenizer: CLIPTokenizer = {
        try! CLIPTokenizer(folder: Golden.fixturesDirectory.appendingPathComponent("models/sd1/tokenizer"))
    }()
    let chunker = A1111PromptChunker(tokenizer: A1111PromptChunkerTests.tokenizer)
    var a: Int { Self.tokenizer.tokenize("a")[0] }
    var b: Int { Self.tokenizer.tokenize("b")[0] }
    var comma: Int { Self.tokenizer.tokenize(",")[0] }
    let bos = 998
    let eos = 999

    private func words(_ word: String, _ count: Int) -> String { Array(repeating: word, count: count).joined(separator: " ") }

    /// BOS + content + EOS padding to 76 + EOS.
    private func chunk(_ content: [Int]) -> [Int] { [bos] + content + Array(repeating: eos, count: 76 - content.count) }

    func testFixtureTokens() {
        XCTAssertEqual(Self.tokenizer.tokenize("a b , a"), [a, b, comma, a])
        XCTAssertEqual([Self.tokenizer.bosTokenID, Self.tokenizer.eosTokenID], [bos, eos])
    }

    func testChunkBoundaries() throws {
        XCTAssertEqual(try chunker.chunks(for: "").map(\.tokens), [chunk([])])
        XCTAssertEqual(try chunker.chunks(for: words("a", 75)).map(\.tokens), [chunk(Array(repeating: a, count: 75))])
        XCTAssertEqual(
            try chunker.chunks(for: words("a", 76)).map(\.tokens), [chunk(Array(repeating: a, count: 75)), chunk([a])])
        XCTAssertEqual(
            try chunker.chunks(for: words("a", 150)).map(\.tokens),
            Array(repeating: chunk(Array(repeating: a, count: 75)), count: 2))
        XCTAssertEqual(try chunker.chunks(for: words("a", 151)).count, 3)
        for chunk in try chunker.chunks(for: words("a", 151)) {
            XCTAssertEqual(chunk.tokens.count, 77)
            XCTAssertEqual(chunk.multipliers, Array(repeating: 1, count: 77))
        }
        // A1111's token count: 75 per closed chunk, the used length of the last.
        XCTAssertEqual(chunker.chunks(for: try A1111PromptParser.parseAttention(words("a", 76))).tokenCount, 76)
        XCTAssertEqual(chunker.chunks(for: try A1111PromptParser.parseAttention("")).tokenCount, 0)
    }

    func testCommaBacktracking() throws {
        // 70 a, comma, 10 b: full at the 76th token with the comma 5 back, so the 4 b's after it move on.
        let near = try chunker.chunks(for: words("a", 70) + " , " + words("b", 10)).map(\.tokens)
        XCTAssertEqual(near, [chunk(Array(repeating: a, count: 70) + [comma]), chunk(Array(repeating: b, count: 10))])
        // Comma exactly 20 back: still moved (the limit is inclusive).
        let limit = try chunker.chunks(for: words("a", 55) + " , " + words("b", 25)).map(\.tokens)
        XCTAssertEqual(limit, [chunk(Array(repeating: a, count: 55) + [comma]), chunk(Array(repeating: b, count: 25))])
        // 21 back: a plain cut at 75.
        let far = try chunker.chunks(for: words("a", 54) + " , " + words("b", 25)).map(\.tokens)
        XCTAssertEqual(
            far,
            [
                chunk(Array(repeating: a, count: 54) + [comma] + Array(repeating: b, count: 20)),
                chunk(Array(repeating: b, count: 5)),
            ])
        // A comma that is itself the 76th token starts the next chunk and is forgotten there.
        let commaFirst = try chunker.chunks(for: words("a", 75) + " , " + words("b", 2)).map(\.tokens)
        XCTAssertEqual(commaFirst, [chunk(Array(repeating: a, count: 75)), chunk([comma, b, b])])
        // With backtracking off: a plain cut.
        var plain = chunker
        plain.commaBacktrack = 0
        XCTAssertEqual(
            try plain.chunks(for: words("a", 70) + " , " + words("b", 10)).map(\.tokens),
            [
                chunk(Array(repeating: a, count: 70) + [comma] + Array(repeating: b, count: 4)),
                chunk(Array(repeating: b, count: 6)),
            ])
    }

    func testBreakStartsANewChunk() throws {
        XCTAssertEqual(try chunker.chunks(for: "a BREAK b").map(\.tokens), [chunk([a]), chunk([b])])
        XCTAssertEqual(try chunker.chunks(for: "a BREAK").map(\.tokens), [chunk([a])])
        XCTAssertEqual(try chunker.chunks(for: "BREAK a").map(\.tokens), [chunk([]), chunk([a])])
        // BREAK on a full chunk closes it; no empty chunk follows.
        XCTAssertEqual(
            try chunker.chunks(for: words("a", 75) + " BREAK b").map(\.tokens),
            [chunk(Array(repeating: a, count: 75)), chunk([b])])
    }

    func testMultipliersFollowTheWeights() throws {
        let chunks = try chunker.chunks(for: "(a) [b] (a b:1.5) a")
        XCTAssertEqual(chunks.count, 1)
        XCTAssertEqual(chunks[0].tokens, chunk([a, b, a, b, a]))
        XCTAssertEqual(Array(chunks[0].multipliers.prefix(7)), [1, Float(1.1), Float(1 / 1.1), 1.5, 1.5, 1, 1])
        XCTAssertEqual(Array(chunks[0].multipliers.suffix(71)), Array(repeating: 1, count: 71))
    }

    func testPaddingIDForEncodersThatPadWithAnotherToken() {
        let chunk = A1111PromptChunk(tokens: chunk([a, b]), multipliers: Array(repeating: 1, count: 77))
        XCTAssertEqual(chunk.encoderIDs(endOfText: eos, padding: eos), chunk.tokens)
        XCTAssertEqual(chunk.encoderIDs(endOfText: eos, padding: 0), [bos, a, b, eos] + Array(repeating: 0, count: 73))
    }
}
