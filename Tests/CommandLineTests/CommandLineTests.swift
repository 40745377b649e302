import Compute
import Foundation
import ParityTesting
import Weights
import XCTest

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

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

    private func run(
        _ arguments: [String], environment extra: [String: String] = [:], in directory: URL? = nil, file: StaticString = #filePath,
        line: UInt = #line
    ) throws -> Run {
        guard let executable = Self.executable else {
            XCTFail("swiftdiffusion is not built next to the tests (run `swift build` first)", file: file, line: line)
            throw CocoaError(.fileNoSuchFile)
        }
        var environment = ProcessInfo.processInfo.environment
        environment["SWIFTDIFFUSION_THREADS"] = "2"
        environment.merge(extra) { $1 }
        return try Self.execute(executable, arguments, environment: environment, in: directory)
    }

    /// A failed helper step of a command-line test (a psql call, a server that did not come up), with its output.
    struct HelperError: Error, CustomStringConvertible { let description: String }

    /// Runs one SQL statement with `psql` against `base` (a PostgreSQL URL) and returns its unaligned output.
    static func psql(_ base: String, _ sql: String) throws -> String {
        let result = try execute(
            URL(fileURLWithPath: "/usr/bin/psql"), [base, "-At", "-v", "ON_ERROR_STOP=1", "-c", sql],
            environment: ProcessInfo.processInfo.environment)
        guard result.status == 0 else { throw HelperError(description: "psql failed: \(result.stderr)") }
        return result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Submits a native job (`POST /v1/images/jobs`) to the server at `base`, asserts the 202 and returns the job's id.
    static func submitJob(_ base: String, _ body: [String: Any], file: StaticString = #filePath, line: UInt = #line) async throws -> String {
        var request = URLRequest(url: URL(string: base + "/v1/images/jobs")!)
        request.httpMethod = "POST"
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        request.httpBody = try JSONSerialization.data(withJSONObject: body)
        let (data, response) = try await URLSession.shared.data(for: request)
        XCTAssertEqual((response as? HTTPURLResponse)?.statusCode, 202, String(decoding: data, as: UTF8.self), file: file, line: line)
        return try XCTUnwrap((try JSONSerialization.jsonObject(with: data) as? [String: Any])?["id"] as? String, file: file, line: line)
    }

    /// Runs a program to completion with its output captured.
    static func execute(_ executable: URL, _ arguments: [String], environment: [String: String], in directory: URL? = nil) throws -> Run {
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        process.environment = environment
        if let directory { process.currentDirectoryURL = directory }
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        // Read stderr on another thread while this one reads stdout: a full pipe would block the child.
        final class Box: @unchecked Sendable { var data = Data() }
        let stderr = Box()
        let group = DispatchGroup()
        let errHandle = err.fileHandleForReading
        DispatchQueue.global().async(group: group) { stderr.data = errHandle.readDataToEndOfFile() }
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        group.wait()
        process.waitUntilExit()
        return Run(
            status: process.terminationStatus, stdout: String(decoding: stdout, as: UTF8.self),
            stderr: String(decoding: stderr.data, as: UTF8.self))
    }

    /// A command line as a user types it, through `/bin/sh`.
    static func shell(_ command: String, in directory: URL, environment: [String: String]) throws -> Run {
        try execute(URL(fileURLWithPath: "/bin/sh"), ["-c", command], environment: environment, in: directory)
    }

    /// A long-running process started through `/bin/sh -c 'exec ...'` (so signals reach the program), its
    /// output going to files.
    struct Background {
        let process: Process
        let stderrFile: URL

        func stderrText() -> String { (try? String(contentsOf: stderrFile, encoding: .utf8)) ?? "" }
    }

    static func startShell(_ command: String, in directory: URL, environment: [String: String]) throws -> Background {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", "exec " + command]
        process.environment = environment
        process.currentDirectoryURL = directory
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("swiftdiffusion-serve-\(UUID().uuidString).log")
        FileManager.default.createFile(atPath: log.path, contents: nil)
        let handle = try FileHandle(forWritingTo: log)
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        return Background(process: process, stderrFile: log)
    }

    static func waitForExit(_ process: Process, seconds: Double) async -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while process.isRunning, Date() < deadline { try? await Task.sleep(for: .milliseconds(100)) }
        return !process.isRunning
    }

    /// Ends a process this test started (no-op once it has exited).
    static func stop(_ process: Process) {
        guard process.isRunning else { return }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    /// Ends the process and removes its log file.
    static func stop(_ background: Background) {
        stop(background.process)
        try? FileManager.default.removeItem(at: background.stderrFile)
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
            (["generate", "--model", "/nonexistent/model", "--quiet", "x"], "no such file: /nonexistent/model"),
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

    /// `--precision`: a bad value and bf16 on a processor without bf16 arithmetic (forced with SWIFTDIFFUSION_ISA, so the
    /// check runs on every machine) are usage errors with a message, on every command that takes the flag; auto falls
    /// back to fp32 there and says so; bf16 (or auto on a processor with it) says which back end runs.
    func testPrecisionFlagIsParsedAndBF16NeedsTheProcessor() throws {
        let noBF16 = ["SWIFTDIFFUSION_ISA": "avx512"]
        let commands: [[String]] = [
            ["generate", "--model", Self.model, "--width", "32", "--height", "32", "--steps", "1", "x"],
            ["batch", "--manifest", "/nonexistent.jsonl", "--out", directory.path],
            ["serve", "--database", "memory", "--port", "0"],
            ["bench", "unet", "--resolution", "64"],
            ["bench", "pipeline", "--resolution", "64", "--steps", "1"],
        ]
        for command in commands {
            let bogus = try run(command + ["--precision", "fp16"])
            // A usage error (64) where the flag is parsed; serve reads it with its other settings (exit 1).
            XCTAssertEqual(bogus.status, command[0] == "serve" ? 1 : 64, "\(command): \(bogus.stderr)")
            XCTAssertTrue(bogus.stderr.contains("--precision must be fp32, bf16 or auto"), "\(command): \(bogus.stderr)")
            let refused = try run(command + ["--precision", "bf16"], environment: noBF16)
            XCTAssertNotEqual(refused.status, 0, "\(command)")
            XCTAssertLessThan(refused.status, 128, "\(command) crashed: \(refused.stderr)")
            XCTAssertTrue(refused.stderr.contains("needs a processor with AVX512-BF16 or AMX"), "\(command): \(refused.stderr)")
        }
        let png = directory.appendingPathComponent("auto.png")
        let generate = ["generate", "--model", Self.model, "--width", "32", "--height", "32", "--steps", "2", "--seed", "3", "-o", png.path, "x"]
        let fallback = try run(generate + ["--precision", "auto"], environment: noBF16)
        XCTAssertEqual(fallback.status, 0, fallback.stderr)
        XCTAssertTrue((fallback.stdout + fallback.stderr).contains("precision: fp32"), fallback.stdout + fallback.stderr)
        if ProcessorFeatures.Available.current.hasBF16 {
            let bf16 = try run(generate + ["--precision", "bf16"])
            XCTAssertEqual(bf16.status, 0, bf16.stderr)
            XCTAssertTrue((bf16.stdout + bf16.stderr).contains("precision: bf16"), bf16.stdout + bf16.stderr)
            XCTAssertTrue((bf16.stdout + bf16.stderr).contains("oneDNN"), bf16.stdout + bf16.stderr)
        }
    }

    /// Every command reports a path that is not there as `no such file: PATH`, exit code 1, no error dump.
    func testMissingFilesAreNoSuchFileFromEveryCommand() throws {
        let manifest = directory.appendingPathComponent("m.jsonl")
        try #"{"prompt": "a dot", "width": 32, "height": 32, "steps": 1, "lora": {"file": "/nonexistent-lora.safetensors"}}"#
            .write(to: manifest, atomically: true, encoding: .utf8)
        let image = directory.appendingPathComponent("missing-control.png").path
        let cases: [([String], String)] = [
            (["generate", "--model", "/nonexistent/model", "x"], "/nonexistent/model"),
            (["generate", "--model", Self.model, "--lora", "/nonexistent.safetensors:0.5", "x"], "/nonexistent.safetensors"),
            (["generate", "--model", Self.model, "--taesd", "/nonexistent-taesd", "x"], "/nonexistent-taesd"),
            (["generate", "--model", Self.model, "--tokenizer", "/nonexistent-tokenizer", "x"], "/nonexistent-tokenizer"),
            (["generate", "--model", Self.model, "--init-image", "/nonexistent.png", "x"], "/nonexistent.png"),
            (["generate", "--model", Self.model, "--init-latents", "/nonexistent.npy", "x"], "/nonexistent.npy"),
            (["generate", "--model", Self.model, "--control", "/nonexistent-controlnet:\(image)", "x"], "/nonexistent-controlnet"),
            (["generate", "--model", Self.model, "--control", "\(Self.model)-controlnet:\(image)", "x"], image),
            (["batch", "--manifest", "/nonexistent.jsonl", "--out", directory.path], "/nonexistent.jsonl"),
            (["batch", "--model", "/nonexistent/model", "--manifest", manifest.path, "--out", directory.path], "/nonexistent/model"),
            (["batch", "--model", Self.model, "--manifest", manifest.path, "--out", directory.path], "/nonexistent-lora.safetensors"),
            (["tokenize", "--model", "/nonexistent/model", "x"], "/nonexistent/model"),
            (["serve", "--models", "/nonexistent-models"], "/nonexistent-models"),
            (["serve", "--config", "/nonexistent-config.json"], "/nonexistent-config.json"),
            (["serve", "--database", "/nonexistent-folder/jobs.sqlite"], "/nonexistent-folder"),
            (["bench", "generate", "--model", "/nonexistent/model"], "/nonexistent/model"),
            (["bench", "unet", "--torch-python", "/nonexistent/python"], "/nonexistent/python"),
            (["bench", "lora", "--torch-python", "/nonexistent/python"], "/nonexistent/python"),
            (["bench", "load", "--models", "/nonexistent-models"], "/nonexistent-models"),
        ]
        let state = directory.appendingPathComponent("state").path
        for (arguments, path) in cases {
            let result = try run(arguments, environment: ["XDG_STATE_HOME": state])
            XCTAssertEqual(result.status, 1, "\(arguments): \(result.stderr)")
            XCTAssertTrue(result.stderr.contains("no such file: \(path)"), "\(arguments): \(result.stderr)")
            XCTAssertFalse(
                result.stderr.contains("NSCocoaErrorDomain") || result.stderr.contains("Error Domain"), "\(arguments): \(result.stderr)")
            XCTAssertLessThan(result.stderr.split(separator: "\n").count, 3, "\(arguments): a message, not a dump: \(result.stderr)")
        }
        // A models "folder" that is a file is an error too.
        let result = try run(["serve", "--models", manifest.path], environment: ["XDG_STATE_HOME": state])
        XCTAssertEqual(result.status, 1)
        XCTAssertTrue(result.stderr.contains("not a folder: \(manifest.path)"), result.stderr)
    }

    /// Placement settings that cannot work are refused before the server starts: an unknown `--placement` (exit 2,
    /// ArgumentParser's usage error, 64) and a negative or infinite `--locality-wait` (exit 1, the settings check).
    func testServeRefusesBadPlacementSettings() throws {
        let state = directory.appendingPathComponent("state").path
        let unknown = try run(["serve", "--database", "memory", "--placement", "nearest"], environment: ["XDG_STATE_HOME": state])
        XCTAssertEqual(unknown.status, 64, unknown.stderr)
        XCTAssertTrue(unknown.stderr.contains("'nearest' is invalid for '--placement"), unknown.stderr)
        for wait in ["-1", "inf"] {
            let bad = try run(["serve", "--database", "memory", "--locality-wait=\(wait)"], environment: ["XDG_STATE_HOME": state])
            XCTAssertEqual(bad.status, 1, bad.stderr)
            XCTAssertTrue(bad.stderr.contains("queue.locality_wait must be >= 0"), bad.stderr)
        }
    }

    /// `serve` keeps its job database in the XDG state folder: `$XDG_STATE_HOME/swiftdiffusion/jobs.sqlite`,
    /// else (no or a relative XDG_STATE_HOME) `$HOME/.local/state/swiftdiffusion/jobs.sqlite`; never the
    /// working directory. The folders are created as needed.
    func testServeKeepsItsJobDatabaseInTheStateFolder() async throws {
        let executable = try XCTUnwrap(Self.executable)
        let home = directory.appendingPathComponent("home"), work = directory.appendingPathComponent("work")
        try FileManager.default.createDirectory(at: home, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        for (xdg, expected) in [
            ("relative/state", home.appendingPathComponent(".local/state/swiftdiffusion/jobs.sqlite")),
            (directory.appendingPathComponent("xdg").path, directory.appendingPathComponent("xdg/swiftdiffusion/jobs.sqlite")),
        ] {
            var environment = ProcessInfo.processInfo.environment
            environment["HOME"] = home.path
            environment["XDG_STATE_HOME"] = xdg
            environment["SWIFTDIFFUSION_PORT"] = "\(try READMECommandTests.freeLoopbackPort())"
            environment["SWIFTDIFFUSION_THREADS"] = "2"
            let server = try Self.startShell("'\(executable.path)' serve --host 127.0.0.1", in: work, environment: environment)
            defer { Self.stop(server) }
            let deadline = Date().addingTimeInterval(60)
            while !FileManager.default.fileExists(atPath: expected.path), server.process.isRunning, Date() < deadline {
                try await Task.sleep(for: .milliseconds(100))
            }
            XCTAssertTrue(FileManager.default.fileExists(atPath: expected.path), "XDG_STATE_HOME=\(xdg): no \(expected.path)\n\(server.stderrText())")
            kill(server.process.processIdentifier, SIGINT)
            let stopped = await Self.waitForExit(server.process, seconds: 30)
            XCTAssertTrue(stopped, "serve did not stop on SIGINT")
            XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: work.path), [], "serve wrote into its working directory")
            XCTAssertFalse(FileManager.default.fileExists(atPath: work.appendingPathComponent("relative").path))
        }
    }

    /// Without --width/--height/--sampler/--steps/--cfg, `generate` and `batch` use the model's profile: the
    /// embedded model's native 128x128 and its evaluation settings (DPM++ 2M, 20 steps, CFG 7); the tiny
    /// fixture model's native size is its own (8 latents x 2).
    func testGenerateAndBatchDefaultToTheModelsOwnSettings() throws {
        let png = directory.appendingPathComponent("default.png")
        let embedded = try run(["generate", "--seed", "1", "--quiet", "-o", png.path, "a red circle on a blue background"])
        XCTAssertEqual(embedded.status, 0, embedded.stderr)
        let parameters = String(decoding: try Data(contentsOf: png), as: UTF8.self)
        for field in ["Size: 128x128", "Steps: 20", "Sampler: DPM++ 2M,", "CFG scale: 7,"] {
            XCTAssertTrue(parameters.contains(field), "the embedded model's default: \(field) missing")
        }
        XCTAssertEqual(try Self.pngSize(png), [128, 128])

        // Explicit values win over the profile.
        let explicit = directory.appendingPathComponent("explicit.png")
        let chosen = try run([
            "generate", "--seed", "1", "--quiet", "--width", "64", "--height", "32", "--steps", "3", "--sampler", "euler", "--cfg", "4.5",
            "-o", explicit.path, "a red circle",
        ])
        XCTAssertEqual(chosen.status, 0, chosen.stderr)
        let chosenParameters = String(decoding: try Data(contentsOf: explicit), as: UTF8.self)
        for field in ["Size: 64x32", "Steps: 3", "Sampler: Euler,", "CFG scale: 4.5"] {
            XCTAssertTrue(chosenParameters.contains(field), "explicit \(field) missing")
        }

        // batch: an entry without size or sampler fields takes the model's; one with them keeps its own.
        let manifest = directory.appendingPathComponent("defaults.jsonl")
        try """
            {"id": "plain", "prompt": "a red circle on a blue background", "seed": 2}
            {"id": "sized", "prompt": "a red circle on a blue background", "seed": 2, "width": 64, "height": 64, "steps": 2, "sampler": "euler"}
            """.write(to: manifest, atomically: true, encoding: .utf8)
        let out = directory.appendingPathComponent("batch")
        let batch = try run(["batch", "--quiet", "--manifest", manifest.path, "--out", out.path])
        XCTAssertEqual(batch.status, 0, batch.stderr)
        XCTAssertEqual(try Self.pngSize(out.appendingPathComponent("plain.png")), [128, 128])
        let plain = String(decoding: try Data(contentsOf: out.appendingPathComponent("plain.png")), as: UTF8.self)
        XCTAssertTrue(plain.contains("Steps: 20, Sampler: DPM++ 2M, CFG scale: 7,"), "batch defaults")
        XCTAssertEqual(try Self.pngSize(out.appendingPathComponent("sized.png")), [64, 64])

        // The fixture SD 1.x model: sample_size 8, VAE factor 2 -> 16x16.
        let tiny = directory.appendingPathComponent("tiny.png")
        let fixture = try run(["generate", "--model", Self.model, "--steps", "2", "--seed", "1", "--quiet", "-o", tiny.path, "x"])
        XCTAssertEqual(fixture.status, 0, fixture.stderr)
        XCTAssertEqual(try Self.pngSize(tiny), [16, 16])
    }

    func testBatchHelpDocumentsEveryManifestField() throws {
        let help = try run(["batch", "--help"])
        XCTAssertEqual(help.status, 0)
        // Every key BatchCommand reads from an entry.
        let source = try String(
            contentsOf: READMECommandTests.repository.appendingPathComponent("Sources/SwiftDiffusionCLI/Commands/BatchCommand.swift"),
            encoding: .utf8)
        let expression = try NSRegularExpression(pattern: #"(?:entry|spec|control)\[\"([a-z_]+)\"\]|(?:number|integer|value)\(\"([a-z_]+)\""#)
        var keys = Set<String>()
        for match in expression.matches(in: source, range: NSRange(source.startIndex..., in: source)) {
            for group in 1...2 {
                if let range = Range(match.range(at: group), in: source) { keys.insert(String(source[range])) }
            }
        }
        XCTAssertTrue(keys.isSuperset(of: ["prompt", "id", "width", "seed", "lora", "control", "file", "scale", "image"]), "\(keys.sorted())")
        for key in keys.sorted() + ["seconds", "manifest.jsonl"] {
            XCTAssertTrue(help.stdout.contains(key), "batch --help does not document '\(key)'")
        }
        // The manifest text is laid out for 80 columns (ArgumentParser rewraps wider lines and breaks the table).
        let wide = help.stdout.split(separator: "\n").filter { $0.count > 80 && !$0.hasPrefix("USAGE:") }
        XCTAssertEqual(wide, [], "help lines wider than 80 columns")
    }

    /// `swiftdiffusion` run through a link on PATH (what scripts/install.sh makes), from a folder far from the
    /// repository: it still finds the embedded model next to the real binary.
    func testEmbeddedModelIsFoundThroughALinkOnPATH() throws {
        let executable = try XCTUnwrap(Self.executable)
        let bin = directory.appendingPathComponent("bin"), elsewhere = directory.appendingPathComponent("elsewhere")
        for folder in [bin, elsewhere] { try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true) }
        try FileManager.default.createSymbolicLink(at: bin.appendingPathComponent("swiftdiffusion"), withDestinationURL: executable)
        var environment = ProcessInfo.processInfo.environment
        environment["PATH"] = bin.path + ":" + (environment["PATH"] ?? "/usr/bin:/bin")
        environment["SWIFTDIFFUSION_DEFAULT_MODEL"] = nil
        environment["SWIFTDIFFUSION_THREADS"] = "2"
        let result = try Self.shell(
            "swiftdiffusion generate --quiet --steps 2 --seed 1 -o first.png 'a red circle on a blue background'", in: elsewhere,
            environment: environment)
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertEqual(try Self.pngSize(elsewhere.appendingPathComponent("first.png")), [128, 128], "the embedded model draws 128x128")
    }

    /// The engine's features and limits from the command line, the same as the server's: AUTOMATIC1111 prompt syntax,
    /// guess mode per ControlNet (`:guess`) or for all (`--guess-mode`), bounded asynchronous LoRA loading, and the
    /// server's CFG limit with its message.
    func testEngineFeaturesAndLimitsMatchTheServers() throws {
        let fixtures = Golden.fixturesDirectory.appendingPathComponent("models")
        let control = Golden.fixturesDirectory.appendingPathComponent("pipelines/control_ring.png").path
        let common = ["generate", "--model", Self.model, "--width", "32", "--height", "32", "--steps", "2", "--seed", "3", "--quiet"]
        func png(_ name: String, _ extra: [String], prompt: String = "a red circle") throws -> Data {
            let file = directory.appendingPathComponent(name)
            let result = try run(common + extra + ["-o", file.path, prompt])
            XCTAssertEqual(result.status, 0, "\(extra): \(result.stderr)")
            return try Data(contentsOf: file)
        }
        let cfg = try run(common + ["--cfg", "60", "x"])
        XCTAssertEqual(cfg.status, 1)
        XCTAssertTrue(cfg.stderr.contains("cfg must be between 0 and 50"), cfg.stderr)
        let syntax = try run(common + ["--prompt-syntax", "bogus", "x"])
        XCTAssertNotEqual(syntax.status, 0)
        XCTAssertTrue(syntax.stderr.contains("prompt-syntax"), syntax.stderr)

        // Emphasis changes the picture only when the prompt is read as AUTOMATIC1111's.
        let plain = try png("plain.png", [], prompt: "a (red:1.6) circle")
        let a1111 = try png("a1111.png", ["--prompt-syntax", "a1111"], prompt: "a (red:1.6) circle")
        XCTAssertNotEqual(plain, a1111)

        let controlnet = fixtures.appendingPathComponent("sd1-controlnet").path + ":" + control
        let normal = try png("control.png", ["--control", controlnet, "--control-preprocessor", "none"])
        let guessOne = try png("guess-one.png", ["--control", controlnet + ":1:0:1:guess", "--control-preprocessor", "none"])
        let guessAll = try png("guess-all.png", ["--control", controlnet, "--guess-mode", "--control-preprocessor", "none"])
        XCTAssertNotEqual(normal, guessOne, "guess mode changed nothing")
        XCTAssertEqual(guessOne, guessAll, "':guess' and --guess-mode differ")

        // A LoRA loaded beside denoising, patched in by the deadline: the run completes with the LoRA in the infotext.
        let lora = fixtures.appendingPathComponent("sd1-lora.safetensors").path
        let late = try png("late.png", ["--lora", lora, "--lora-deadline", "0.5"])
        XCTAssertTrue(String(decoding: late, as: UTF8.self).contains("sd1-lora: 1"))
        XCTAssertNotEqual(try run(common + ["--lora-deadline", "2", "x"]).status, 0)

        // batch runs the same engine: the same request as a manifest line gives the same PNG, byte for byte.
        let manifest = directory.appendingPathComponent("same.jsonl")
        try """
            {"id": "same", "prompt": "a (red:1.6) circle", "seed": 3, "width": 32, "height": 32, "steps": 2, "prompt_syntax": "a1111", \
            "control": {"image": "\(control)", "guess_mode": true}}
            """.write(to: manifest, atomically: true, encoding: .utf8)
        let out = directory.appendingPathComponent("same-batch")
        let batch = try run([
            "batch", "--quiet", "--model", Self.model, "--controlnet", fixtures.appendingPathComponent("sd1-controlnet").path, "--manifest",
            manifest.path, "--out", out.path,
        ])
        XCTAssertEqual(batch.status, 0, batch.stderr)
        let single = try png(
            "same.png", ["--prompt-syntax", "a1111", "--control", controlnet + ":guess", "--control-resize", "just_resize", "--control-preprocessor", "none"],
            prompt: "a (red:1.6) circle")
        XCTAssertEqual(try Data(contentsOf: out.appendingPathComponent("same.png")), single, "batch and generate differ")
    }

    /// Width and height of a PNG from its IHDR chunk.
    static func pngSize(_ url: URL) throws -> [Int] {
        let bytes = [UInt8](try Data(contentsOf: url))
        guard bytes.count > 24 else { return [] }
        let number = { (offset: Int) in bytes[offset..<offset + 4].reduce(0) { $0 << 8 | Int($1) } }
        return [number(16), number(20)]
    }
}
