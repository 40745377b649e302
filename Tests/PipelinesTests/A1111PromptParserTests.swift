import Pipelines
import XCTest

/// `A1111PromptParser` against AUTOMATIC1111's `parse_prompt_attention`: its docstring examples, and more cases
/// worked through its rules (weights compared exactly: the multiplications happen in the same order).
final class A1111PromptParserTests: XCTestCase {
    private func parse(_ text: String) throws -> [A1111PromptSegment] { try A1111PromptParser.parseAttention(text) }

    private func check(_ text: String, _ expected: [(String, Double)], file: StaticString = #filePath, line: UInt = #line) throws
    {
        XCTAssertEqual(
            try parse(text), expected.map { A1111PromptSegment($0.0, $0.1) }, "parse of \(String(reflecting: text))", file: file,
            line: line)
    }

    func testDocstringExamples() throws {
        try check("normal text", [("normal text", 1.0)])
        try check("an (important) word", [("an ", 1.0), ("important", 1.1), (" word", 1.0)])
        try check("(unbalanced", [("unbalanced", 1.1)])
        try check(#"\(literal\]"#, [("(literal]", 1.0)])
        try check("(unnecessary)(parens)", [("unnecessaryparens", 1.1)])
        try check(
            "a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
            [
                ("a ", 1.0), ("house", 1.5730000000000004), (" ", 1.1), ("on", 1.0), (" a ", 1.1), ("hill", 0.55),
                (", sun, ", 1.1),
                ("sky", 1.4641000000000006), (".", 1.1),
            ])
    }

    func testBrackets() throws {
        let square = 1 / 1.1
        try check("", [("", 1.0)])
        try check("[a]", [("a", 1.0 * square)])
        try check("[[a]] b", [("a", 1.0 * square * square), (" b", 1.0)])
        try check("((a))", [("a", 1.0 * 1.1 * 1.1)])
        try check("(a:1.5)", [("a", 1.5)])
        // (b:1.) has weight 1 and merges with the spaces around it.
        try check("(a:.5) (b:1.) (c:+2) (d:-1)", [("a", 0.5), (" b ", 1.0), ("c", 2.0), (" ", 1.0), ("d", -1.0)])
        try check("([a:0.5])", [("a:0.5", 1.0 * square * 1.1)])
        // Weight syntax without an open "(" is text; ")" and "]" without an opening bracket are text.
        try check("a:1.5)", [("a:1.5)", 1.0)])
        try check("a) b] c", [("a) b] c", 1.0)])
        // An unclosed "(" whose ":number" has no ")" is text under 1.1.
        try check("(a:1.5", [("a:1.5", 1.1)])
        // Brackets left open at the end apply to everything after them, the round ones first.
        try check("[a (b", [("a ", 1.0 * square), ("b", 1.0 * 1.1 * square)])
        // Colons are text.
        try check("a: b", [("a: b", 1.0)])
        // Equal weights from different brackets merge.
        try check("(a)(b:1.1) c", [("ab", 1.1), (" c", 1.0)])
    }

    func testEscapes() throws {
        try check(#"\(a\) \[b\]"#, [("(a) [b]", 1.0)])
        try check(#"a\\b"#, [(#"a\b"#, 1.0)])
        // A backslash before anything else is dropped.
        try check(#"a\b"#, [("ab", 1.0)])
        try check(#"(a\)b)"#, [("a)b", 1.1)])
    }

    func testBreak() throws {
        try check("a BREAK b", [("a", 1.0), ("BREAK", -1), ("b", 1.0)])
        try check("a\n  BREAK\tb", [("a", 1.0), ("BREAK", -1), ("b", 1.0)])
        try check("BREAK", [("", 1.0), ("BREAK", -1), ("", 1.0)])
        try check("a BREAK BREAK b", [("a", 1.0), ("BREAK", -1), ("", 1.0), ("BREAK", -1), ("b", 1.0)])
        // Only the whole word.
        try check("a BREAKfast, xBREAK, break", [("a BREAKfast, xBREAK, break", 1.0)])
        try check("a,BREAK,b", [("a,", 1.0), ("BREAK", -1), (",b", 1.0)])
        // Inside brackets the marker is multiplied too and so stops being a break (as in A1111).
        let segments = try parse("(a BREAK b)")
        XCTAssertEqual(segments, [A1111PromptSegment("a", 1.1), A1111PromptSegment("BREAK", -1.1), A1111PromptSegment("b", 1.1)])
        XCTAssertFalse(segments[1].isBreak)
        XCTAssertTrue(try parse("a BREAK b")[1].isBreak)
    }

    func testInvalidWeightThrows() {
        XCTAssertThrowsError(try parse("(a:1.2.3)")) { error in
            XCTAssertEqual(error as? A1111PromptError, .invalidWeight("1.2.3"))
        }
        XCTAssertThrowsError(try parse("(a:.)"))
        XCTAssertThrowsError(try parse("(a:+.)"))
        // Without an open bracket the same text is just text.
        XCTAssertEqual(try parse("a:1.2.3)"), [A1111PromptSegment("a:1.2.3)", 1.0)])
    }

    func testExtraNetworkTags() throws {
        let parsed = A1111ExtraNetworks.parse(
            "a cat <lora:sd1-lora:0.8>, <lora:b:0.5:0.25> <hypernet:h:1> <lora:c:te=0.3:unet=0.7> done")
        XCTAssertEqual(parsed.prompt, "a cat ,    done")
        XCTAssertEqual(parsed.tags.map(\.type), ["lora", "lora", "hypernet", "lora"])
        let loras = try parsed.tags.filter(\.isLoRA).map(A1111LoRATag.init)
        XCTAssertEqual(
            loras,
            [
                A1111LoRATag(name: "sd1-lora", textEncoderWeight: 0.8, unetWeight: 0.8),
                // A1111's order: <lora:name:te:unet>.
                A1111LoRATag(name: "b", textEncoderWeight: 0.5, unetWeight: 0.25),
                A1111LoRATag(name: "c", textEncoderWeight: 0.3, unetWeight: 0.7),
            ])
        XCTAssertEqual(
            try A1111LoRATag(A1111ExtraNetworks.parse("<lora:x>").tags[0]),
            A1111LoRATag(name: "x", textEncoderWeight: 1, unetWeight: 1))
        XCTAssertThrowsError(try A1111LoRATag(A1111ExtraNetworks.parse("<lora:x:heavy>").tags[0]))
        // Not tags: no type, no colon, no closing bracket, empty arguments.
        for text in ["<:x:1>", "<lora>", "<lora:x", "<lora:>", "a < b > c"] {
            XCTAssertEqual(A1111ExtraNetworks.parse(text).prompt, text)
            XCTAssertTrue(A1111ExtraNetworks.parse(text).tags.isEmpty, text)
        }
        // "<a <lora:x:1>": the first "<" starts no tag; the second does.
        XCTAssertEqual(A1111ExtraNetworks.parse("<a <lora:x:1>").prompt, "<a ")
    }

    /// A prompt of every kind of nesting, 300k characters each: parsed (or refused) in a single pass.
    func testLongNestedPromptsParseInLinearTime() throws {
        let n = 100_000
        func timed<T>(_ label: String, _ body: () throws -> T) rethrows -> T {
            let start = Date()
            defer {
                let elapsed = Date().timeIntervalSince(start)
                print("\(label): \(elapsed) s")
                XCTAssertLessThan(elapsed, 0.5, "\(label) took \(elapsed) s")
            }
            return try body()
        }
        // Nested around one word: exact weights, as A1111 computes them (1.1 applied 150k times overflows).
        let deepRound = String(repeating: "(", count: 150_000) + "a" + String(repeating: ")", count: 150_000)
        func repeatedProduct(_ multiplier: Double, _ count: Int) -> Double {
            var weight = 1.0
            for _ in 0..<count { weight *= multiplier }
            return weight
        }
        XCTAssertEqual(try timed("((a))") { try parse(deepRound) }, [A1111PromptSegment("a", repeatedProduct(1.1, 150_000))])
        let deepSquare = String(repeating: "[", count: 150_000) + "a" + String(repeating: "]", count: 150_000)
        XCTAssertEqual(try timed("[[a]]") { try parse(deepSquare) }, [A1111PromptSegment("a", repeatedProduct(1 / 1.1, 150_000))])
        // Unclosed brackets, each before a word: A1111 needs ~n^2/2 multiplications; refused instead.
        for (open, label) in [("(", "(a(a"), ("[", "[a[a"), ("([", "([a([a")] {
            let text = String(repeating: open + "a", count: 300_000 / (open.count + 1))
            XCTAssertThrowsError(try timed(label) { try parse(text) }, label) { error in
                XCTAssertEqual(error as? A1111PromptError, .tooDeeplyNested(limit: A1111PromptParser.maximumWeightingWork))
                XCTAssertTrue("\(error)".contains("nested too deeply"), "\(error)")
            }
        }
        // Nested and closed, each level with its own word, 64 deep (within the limit): every weight exact.
        let depth = 64
        let nested = String(repeating: "(a ", count: depth) + String(repeating: ")", count: depth)
        let block = nested + " "
        let blocks = String(repeating: block, count: 300_000 / block.count)
        let segments = try timed("(a (a ... ) ) repeated") { try parse(blocks) }
        var expected = [Double](repeating: 1, count: depth)
        for level in 0..<depth { for inner in level..<depth { expected[inner] *= 1.1 } }
        // Each block: one segment per level, then the space between blocks.
        XCTAssertEqual(segments.count, (depth + 1) * (300_000 / block.count))
        XCTAssertEqual(Array(segments.prefix(depth)).map(\.weight), expected)
        XCTAssertEqual(segments[depth].text, " ")
        // Many short bracket groups, escapes, colons and BREAKs: linear too.
        let unit = "(a:1.2) [b] \\( c: BREAK "
        let flat = String(repeating: unit, count: 300_000 / unit.count)
        let flatSegments = try timed("flat") { try parse(flat) }
        XCTAssertEqual(flatSegments.filter(\.isBreak).count, 300_000 / unit.count)
        XCTAssertEqual(Array(flatSegments.prefix(4)), [
            A1111PromptSegment("a", 1.2), A1111PromptSegment(" ", 1), A1111PromptSegment("b", 1 / 1.1),
            A1111PromptSegment(" ( c:", 1),
        ])
        // Extra-network tags: many "<" without ">", nested "<", and many real tags.
        let unclosed = String(repeating: "<lora:x", count: n / 2)
        XCTAssertEqual(timed("<lora:x") { A1111ExtraNetworks.parse(unclosed) }.prompt, unclosed)
        let nestedAngles = String(repeating: "<a:", count: n) + String(repeating: ">", count: n)
        let parsedAngles = timed("<a:<a:>>") { A1111ExtraNetworks.parse(nestedAngles) }
        XCTAssertEqual(parsedAngles.tags.count, 1)
        XCTAssertEqual(parsedAngles.tags[0].type, "a")
        XCTAssertEqual(parsedAngles.tags[0].positional.count, n)
        XCTAssertEqual(parsedAngles.prompt, String(repeating: ">", count: n - 1))
        let many = String(repeating: "<lora:x:0.5>, ", count: 300_000 / 14)
        let parsedMany = timed("<lora:x:0.5> repeated") { A1111ExtraNetworks.parse(many) }
        XCTAssertEqual(parsedMany.tags.count, 300_000 / 14)
        XCTAssertEqual(parsedMany.prompt, String(repeating: ", ", count: 300_000 / 14))
    }
}
