import Compute
import Foundation
import ParityTesting
import Weights
import XCTest

/// The `swiftdiffusion` executable as users run it: a subprocess with arguments, stdout, stderr and an exit code.
/// Runs on the tiny SD 1.x fixture model, so each generation takes a fraction of a second.
final class CommandLineTests: XCTestCase {
    static let model = Golden.fixturesDirectory.appendingPathComponent("models/sd1").path

    /// The binary built next to the test bundle (`swift build --build-tests` builds every product).
    static let executable: URL? = {
        let candidates = [
            URL(fileURLWithPath: ProcessInfo.processInfo.arguments[0]).deletingLastPathComponent().appendingPathComponent("swiftdiffusion"),
            Golden.fixturesDirectory.deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent(".build/debug/swiftdiffusion"),
        ]
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0.path) }
    }()

    struct Run {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    private func run(_ arguments: [String], file: StaticString = #filePath, line: UInt = #line) throws -> Run {
        guard let executable = Self.executable else {
            XCTFail("swiftdiffusion is not built next to the tests (run `swift build` first)", file: file, line: line)
            throw CocoaError(.fileNoSuchFile)
        }
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        var environment = ProcessInfo.processInfo.environment
        environment["SWIFTDIFFUSION_THREADS"] = "2"
        process.environment = environment
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        // Read before waiting: a full pipe would block the child.
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        let stderr = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Run(status: process.terminationStatus, stdout: String(decoding: stdout, as: UTF8.self), stderr: String(decoding: stderr, as: UTF8.self))
    }

    private var directory: URL!
    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("swiftdiffusion-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }
    override func tearDown() { try? FileManager.default.removeItem(at: directory) }

    func testTokenizePrintsSeventySevenIDs() throws {
        // The embedded model's tokenizer: the real CLIP BPE vocabulary.
        let result = try run(["tokenize", "a red circle on a blue background"])
        XCTAssertEqual(result.status, 0, result.stderr)
        let ids = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [Int]
        XCTAssertEqual(ids?.count, 77)
        // <|startoftext|>, CLIP's ids for "a red circle on a blue background", then <|endoftext|> padding.
        XCTAssertEqual(Array(ids?.prefix(8) ?? []), [49406, 320, 736, 7117, 525, 320, 1746, 5994])
        XCTAssertEqual(ids?.dropFirst(8).allSatisfy { $0 == 49407 }, true)
    }

    func testGenerateWritesPNGWithParametersAndLatents() throws {
        let png = directory.appendingPathComponent("out.png"), latents = directory.appendingPathComponent("latents.npy")
        let arguments = [
            "generate", "--model", Self.model, "--width", "32", "--height", "32", "--steps", "2", "--seed", "42", "--cfg", "5",
            "--sampler", "Euler a", "-o", png.path, "--output-latents", latents.path, "--quiet", "a red circle",
        ]
        let result = try run(arguments)
        XCTAssertEqual(result.status, 0, result.stderr)
        let bytes = try Data(contentsOf: png)
        XCTAssertEqual(Array(bytes.prefix(8)), [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A])
        let text = String(decoding: bytes, as: UTF8.self)
        XCTAssertTrue(text.contains("parameters"), "no A1111 parameters chunk")
        XCTAssertTrue(text.contains("Seed: 42"), "seed missing from the parameters")
        XCTAssertTrue(text.contains("Sampler: Euler a"), "sampler missing from the parameters")
        let saved = try NumPy.read(contentsOf: latents)
        XCTAssertEqual(saved.shape, [1, 4, 16, 16])  // NCHW, the tiny VAE downsamples by 2

        // The same seed again: the same latents, bit for bit; img2img from them works.
        let again = directory.appendingPathComponent("again.npy")
        var second = arguments
        second[second.firstIndex(of: latents.path)!] = again.path
        XCTAssertEqual(try run(second).status, 0)
        XCTAssertTrue(try NumPy.read(contentsOf: again).isBitwiseEqual(to: saved))
    }

    func testBadInputIsAMessageAndAnExitCodeNotACrash() throws {
        let cases: [([String], String)] = [
            (["generate", "--model", Self.model, "--steps", "0", "--quiet", "x"], "steps"),
            (["generate", "--model", Self.model, "--width", "33", "--quiet", "x"], "multiple"),
            (["generate", "--model", "/nonexistent/model", "--quiet", "x"], "/nonexistent/model"),
            (["generate", "--model", Self.model, "--sampler", "bogus", "--quiet", "x"], "bogus"),
            (["generate", "--model", Self.model, "--lora-mode", "bogus", "--quiet", "x"], "lora-mode"),
            (["generate", "--model", Self.model, "--lora", "/nonexistent.safetensors", "--quiet", "x"], "nonexistent"),
            (["generate", "--model", Self.model, "--taesd", "/nonexistent-taesd", "--quiet", "x"], "nonexistent-taesd"),
            (["batch", "--manifest", "/nonexistent.jsonl", "--out", directory.path], "nonexistent.jsonl"),
        ]
        for (arguments, expected) in cases {
            let result = try run(arguments)
            XCTAssertNotEqual(result.status, 0, "\(arguments)")
            XCTAssertLessThan(result.status, 128, "\(arguments) crashed: \(result.stderr)")
            XCTAssertTrue(result.stderr.localizedCaseInsensitiveContains(expected), "\(arguments): \(result.stderr)")
        }
    }
}
