import Foundation
import Models
import ParityTesting
import XCTest

/// `CLIPTokenizer` against transformers' `CLIPTokenizer` (tools/parity/make_text_goldens.py).
final class CLIPTokenizerTests: XCTestCase {
    /// One prompt's ids from transformers, with the SD 1.x config and with the pad-"!" (SD 2.x) config.
    struct Case: Decodable {
        let text: String
        let tokens: [Int]
        let ids: [Int]
        let tokensPadBang: [Int]
        let idsPadBang: [Int]

        enum CodingKeys: String, CodingKey {
            case text, tokens, ids, tokensPadBang = "tokens_pad_bang", idsPadBang = "ids_pad_bang"
        }
    }

    struct Cases: Decodable {
        let maxLength: Int
        let transformersVersion: String
        let cases: [Case]

        enum CodingKeys: String, CodingKey {
            case maxLength = "max_length", transformersVersion = "transformers_version", cases
        }
    }

    /// The code points the `tokenizers` pre-tokenizer puts in each class, as inclusive ranges.
    struct UnicodeClasses: Decodable {
        let unicodeVersion: String
        let assigned: [[UInt32]]
        let letters: [[UInt32]]
        let numbers: [[UInt32]]
        let whitespace: [[UInt32]]
        let lowercase: [LowercaseMapping]

        enum CodingKeys: String, CodingKey {
            case unicodeVersion = "unicode_version", assigned, letters, numbers, whitespace, lowercase
        }
    }

    /// `[code point, lower-cased text]`.
    struct LowercaseMapping: Decodable {
        let codePoint: UInt32
        let lowered: String

        init(from decoder: Decoder) throws {
            var container = try decoder.unkeyedContainer()
            codePoint = try container.decode(UInt32.self)
            lowered = try container.decode(String.self)
        }
    }

    static let repositoryRoot = Golden.fixturesDirectory.deletingLastPathComponent().deletingLastPathComponent()
    static let tokenizerFolder = repositoryRoot.appendingPathComponent("models/shapes-sd/tokenizer", isDirectory: true)
    static let textFixtures = Golden.fixturesDirectory.appendingPathComponent("text", isDirectory: true)

    /// Loading parses a 1 MB vocabulary and 49k merges; share one instance per configuration.
    nonisolated(unsafe) static var sharedTokenizers: [String: CLIPTokenizer] = [:]

    static func tokenizer(_ folder: URL) throws -> CLIPTokenizer {
        if let cached = sharedTokenizers[folder.path] { return cached }
        let tokenizer = try CLIPTokenizer(folder: folder)
        sharedTokenizers[folder.path] = tokenizer
        return tokenizer
    }

    /// A folder with the real vocabulary and merges and the SD 2.x-style configs from the fixtures.
    static let padBangFolder: URL = {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("clip-tokenizer-pad-bang-\(getpid())")
        try? FileManager.default.removeItem(at: folder)
        try? FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        for name in ["vocab.json", "merges.txt"] {
            try? FileManager.default.copyItem(
                at: tokenizerFolder.appendingPathComponent(name), to: folder.appendingPathComponent(name))
        }
        for name in ["tokenizer_config.json", "special_tokens_map.json"] {
            try? FileManager.default.copyItem(
                at: textFixtures.appendingPathComponent("tokenizer_pad_bang/\(name)"), to: folder.appendingPathComponent(name))
        }
        return folder
    }()

    func loadCases() throws -> Cases {
        let data = try Data(contentsOf: Self.textFixtures.appendingPathComponent("tokenizer_cases.json"))
        return try JSONDecoder().decode(Cases.self, from: data)
    }

    func testSpecialTokensAndLengthFromTheFolder() throws {
        let tokenizer = try Self.tokenizer(Self.tokenizerFolder)
        XCTAssertEqual(tokenizer.bosTokenID, 49406)
        XCTAssertEqual(tokenizer.eosTokenID, 49407)
        XCTAssertEqual(tokenizer.padTokenID, 49407)
        XCTAssertEqual(tokenizer.modelMaxLength, 77)
        XCTAssertEqual(tokenizer.vocabularySize, 49408)
        XCTAssertEqual(tokenizer.id(of: "a</w>"), 320)

        let padBang = try Self.tokenizer(Self.padBangFolder)
        XCTAssertEqual(padBang.padTokenID, 0, "SD 2.x pads with '!'")
        XCTAssertEqual(padBang.eosTokenID, 49407)
        XCTAssertTrue(padBang.addedTokens.contains { $0.content == "<|endoftext|>" && $0.normalized })
    }

    func testIdsMatchTransformers() throws {
        let cases = try loadCases()
        XCTAssertGreaterThanOrEqual(cases.cases.count, 60)
        let sd1 = try Self.tokenizer(Self.tokenizerFolder)
        let sd2 = try Self.tokenizer(Self.padBangFolder)
        var mismatches = 0
        for item in cases.cases {
            for (label, tokenizer, tokens, ids) in [
                ("pad <|endoftext|>", sd1, item.tokens, item.ids), ("pad !", sd2, item.tokensPadBang, item.idsPadBang),
            ] {
                let actualTokens = tokenizer.tokenize(item.text)
                let actualIds = tokenizer.encode(item.text, maxLength: cases.maxLength)
                if actualTokens != tokens || actualIds != ids {
                    mismatches += 1
                    XCTFail(
                        "\(label) \(item.text.debugDescription):\n  tokens \(actualTokens)\n  expected \(tokens)\n"
                            + "  ids \(actualIds)\n  expected \(ids)")
                }
                XCTAssertEqual(tokenizer.encode(item.text), ids, "default maxLength is model_max_length")
            }
        }
        print(
            "[parity] CLIP tokenizer: \(cases.cases.count) prompts x 2 configs, \(mismatches) mismatches "
                + "(transformers \(cases.transformersVersion))")
    }

    func testGoldenSetCoversTruncationAndTheBangQuirk() throws {
        let cases = try loadCases().cases
        XCTAssertTrue(cases.contains { $0.tokens.count > 75 }, "a prompt must need truncation")
        XCTAssertTrue(cases.contains { $0.tokens != $0.tokensPadBang }, "a prompt must tokenise differently with pad '!'")
        let long = try XCTUnwrap(cases.first { $0.tokens.count > 75 })
        XCTAssertEqual(long.ids.last, 49407, "truncation keeps EOS last")
    }

    func testWrapAndDecode() throws {
        let tokenizer = try Self.tokenizer(Self.tokenizerFolder)
        let prompt = "a red circle on a blue background"
        let tokens = tokenizer.tokenize(prompt)
        XCTAssertEqual(tokenizer.wrap(tokens, maxLength: 77), tokenizer.encode(prompt))
        XCTAssertEqual(tokenizer.wrap([], maxLength: 4), [49406, 49407, 49407, 49407])
        XCTAssertEqual(tokenizer.wrap([1, 2, 3, 4], maxLength: 4), [49406, 1, 2, 49407])
        XCTAssertEqual(tokenizer.decode(tokenizer.encode(prompt)), prompt)
        XCTAssertEqual(tokenizer.decode(tokenizer.tokenize("Café, 3.14!")), "café , 3 . 1 4 !")
        XCTAssertEqual(
            tokenizer.decode([49406] + tokens + [49407], skipSpecialTokens: false),
            "<|startoftext|>a red circle on a blue background <|endoftext|>")
    }

    func testConcurrentTokenizationAgrees() throws {
        let tokenizer = try CLIPTokenizer(folder: Self.tokenizerFolder)
        let prompts = try loadCases().cases.map(\.text)
        let expected = try loadCases().cases.map(\.tokens)
        let failures = LockedCounter()
        DispatchQueue.concurrentPerform(iterations: 8) { worker in
            for (i, prompt) in prompts.enumerated() where (i + worker) % 2 == 0 {
                if tokenizer.tokenize(prompt) != expected[i] { failures.increment() }
            }
        }
        XCTAssertEqual(failures.value, 0)
    }

    /// Every code point assigned in the fixture's Unicode version is classified as the `tokenizers`
    /// pre-tokenizer classifies it (letter run, single number, other run, whitespace), and lower-cased alike.
    func testUnicodeClassesMatchTokenizers() throws {
        let data = try Data(contentsOf: Self.textFixtures.appendingPathComponent("unicode_classes.json"))
        let classes = try JSONDecoder().decode(UnicodeClasses.self, from: data)
        func set(_ ranges: [[UInt32]]) -> Set<UInt32> { Set(ranges.flatMap { $0[0]...$0[1] }) }
        let letters = set(classes.letters), numbers = set(classes.numbers), whitespace = set(classes.whitespace)
        var wrong: [String] = []
        var checked = 0
        for range in classes.assigned {
            for value in range[0]...range[1] {
                guard let scalar = Unicode.Scalar(value) else { continue }
                checked += 1
                let character = String(Character(scalar))
                let isWhitespace = CLIPTokenizer.normalize("a" + character + "b") == "a b"
                let joinsLetters = CLIPTokenizer.preTokenize("a" + character).count == 1
                let standsAlone = CLIPTokenizer.preTokenize(character + character).count == 2
                let swiftClass =
                    isWhitespace ? "whitespace" : joinsLetters ? "letter" : standsAlone ? "number" : "other"
                let expected =
                    whitespace.contains(value)
                    ? "whitespace"
                    : letters.contains(value)
                        ? "letter" : numbers.contains(value) ? "number" : "other"
                if swiftClass != expected && wrong.count < 20 {
                    wrong.append("U+\(String(value, radix: 16, uppercase: true)) \(swiftClass) (tokenizers: \(expected))")
                }
            }
        }
        var lowercaseWrong: [String] = []
        for mapping in classes.lowercase {
            guard let scalar = Unicode.Scalar(mapping.codePoint) else { continue }
            let lowered = CLIPTokenizer.normalize(String(Character(scalar)))
            if Array(lowered.unicodeScalars) != Array(mapping.lowered.unicodeScalars) && lowercaseWrong.count < 20 {
                lowercaseWrong.append("U+\(String(mapping.codePoint, radix: 16, uppercase: true))")
            }
        }
        print(
            "[parity] CLIP pre-tokenizer classes: \(checked) code points (Unicode \(classes.unicodeVersion)), "
                + "\(wrong.count) differ; \(classes.lowercase.count) lower-case mappings, \(lowercaseWrong.count) differ")
        XCTAssertEqual(wrong, [])
        XCTAssertEqual(lowercaseWrong, [])
    }

    func testPreTokenizerPieces() {
        XCTAssertEqual(CLIPTokenizer.normalize("  A\u{2003}\tB  Σ "), " a b σ ")
        XCTAssertEqual(CLIPTokenizer.normalize("Cafe\u{301}"), "caf\u{e9}")
        XCTAssertEqual(CLIPTokenizer.preTokenize("it's 3.14, ok!'s"), ["it", "'s", "3", ".", "1", "4", ",", "ok", "!'", "s"])
        XCTAssertEqual(CLIPTokenizer.preTokenize("<|endoftext|>x"), ["<|", "endoftext", "|>", "x"])
    }

    // MARK: - Errors

    func temporaryFolder(_ name: String) throws -> URL {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("clip-tokenizer-\(name)-\(getpid())")
        try? FileManager.default.removeItem(at: folder)
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        return folder
    }

    func assertTokenizerError(
        _ folder: URL, matches predicate: (CLIPTokenizerError) -> Bool, file: StaticString = #filePath, line: UInt = #line
    ) {
        XCTAssertThrowsError(try CLIPTokenizer(folder: folder), file: file, line: line) { error in
            guard let error = error as? CLIPTokenizerError else {
                return XCTFail("unexpected error \(error)", file: file, line: line)
            }
            XCTAssertTrue(predicate(error), "unexpected error: \(error)", file: file, line: line)
        }
    }

    func testMissingAndCorruptFilesFailClearly() throws {
        let missing = FileManager.default.temporaryDirectory.appendingPathComponent("clip-tokenizer-nowhere-\(getpid())")
        assertTokenizerError(missing) { if case .missingFile = $0 { true } else { false } }

        let noVocabulary = try temporaryFolder("no-vocab")
        try "#version: 0.2\na b\n".write(to: noVocabulary.appendingPathComponent("merges.txt"), atomically: true, encoding: .utf8)
        assertTokenizerError(noVocabulary) {
            if case .missingFile(let path, _) = $0 { path.hasSuffix("vocab.json") } else { false }
        }

        let corruptVocabulary = try temporaryFolder("corrupt-vocab")
        try "{\"a\": 1,".write(to: corruptVocabulary.appendingPathComponent("vocab.json"), atomically: true, encoding: .utf8)
        try "a b\n".write(to: corruptVocabulary.appendingPathComponent("merges.txt"), atomically: true, encoding: .utf8)
        assertTokenizerError(corruptVocabulary) {
            if case .invalidFile(let path, _) = $0 { path.hasSuffix("vocab.json") } else { false }
        }

        let badMerges = try temporaryFolder("bad-merges")
        try FileManager.default.copyItem(
            at: Self.tokenizerFolder.appendingPathComponent("vocab.json"), to: badMerges.appendingPathComponent("vocab.json"))
        try "#version: 0.2\ni n\nthree parts here\n".write(
            to: badMerges.appendingPathComponent("merges.txt"), atomically: true, encoding: .utf8)
        assertTokenizerError(badMerges) { if case .invalidFile(_, let reason) = $0 { reason.contains("line 3") } else { false } }

        let unknownMerge = try temporaryFolder("unknown-merge")
        try FileManager.default.copyItem(
            at: Self.tokenizerFolder.appendingPathComponent("vocab.json"), to: unknownMerge.appendingPathComponent("vocab.json"))
        try "#version: 0.2\n\u{4e00}\u{4e00} x\n".write(
            to: unknownMerge.appendingPathComponent("merges.txt"), atomically: true, encoding: .utf8)
        assertTokenizerError(unknownMerge) {
            if case .invalidFile(_, let reason) = $0 { reason.contains("merge 1") } else { false }
        }

        let unknownPad = try temporaryFolder("unknown-pad")
        for name in ["vocab.json", "merges.txt"] {
            try FileManager.default.copyItem(
                at: Self.tokenizerFolder.appendingPathComponent(name), to: unknownPad.appendingPathComponent(name))
        }
        try "{\"pad_token\": \"<pad>\"}".write(
            to: unknownPad.appendingPathComponent("tokenizer_config.json"), atomically: true, encoding: .utf8)
        assertTokenizerError(unknownPad) {
            if case .unknownToken(let token, let role, _) = $0 { token == "<pad>" && role == "pad_token" } else { false }
        }
    }
}

/// A counter safe to bump from concurrent workers.
final class LockedCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0

    func increment() {
        lock.lock()
        count += 1
        lock.unlock()
    }

    var value: Int {
        lock.lock()
        defer { lock.unlock() }
        return count
    }
}
