import Foundation
import XCTest

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// The README's commands as a newcomer runs them: every ```` ```sh ```` block, line by line, through `/bin/sh`,
/// with `swiftdiffusion` on PATH (a link to the built debug binary), from a fresh folder that has the
/// repository's `models/` and `docs/` (what the commands read) and nothing else. `swiftdiffusion serve` is
/// started, checked (`/healthz`, the web page) and stopped.
///
/// A block preceded by `<!-- readme-test: skip (REASON) -->` is not run; such a block may hold no
/// `swiftdiffusion` command, and the scripts it names must exist and be executable.
final class READMECommandTests: XCTestCase {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    static let skipMarker = "<!-- readme-test: skip ("

    struct Block {
        var line: Int
        var commands: [String]
        var skipReason: String?
    }

    /// The ```` ```sh ```` blocks of a Markdown text: commands with `\` continuations joined, comments and
    /// blank lines dropped.
    static func shellBlocks(in text: String) -> [Block] {
        var blocks: [Block] = []
        var current: Block?
        var pending = ""
        var previous = ""
        for (index, raw) in text.components(separatedBy: "\n").enumerated() {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if var block = current {
                if line == "```" {
                    if !pending.isEmpty { block.commands.append(pending) }
                    blocks.append(block)
                    current = nil
                    pending = ""
                } else if line.hasSuffix("\\") {
                    pending += line.dropLast().trimmingCharacters(in: .whitespaces) + " "
                    current = block
                } else {
                    let command = pending + line
                    pending = ""
                    if !command.isEmpty && !command.hasPrefix("#") { block.commands.append(command) }
                    current = block
                }
            } else if line == "```sh" {
                var reason: String?
                if previous.hasPrefix(skipMarker), previous.hasSuffix(") -->") {
                    reason = String(previous.dropFirst(skipMarker.count).dropLast(") -->".count))
                }
                current = Block(line: index + 1, commands: [], skipReason: reason)
            }
            if !line.isEmpty { previous = line }
        }
        return blocks
    }

    func testShellBlockParsing() {
        let text = """
            <!-- readme-test: skip (needs a build) -->
            ```sh
            ./build.sh   # comment
            ```
            text
            ```sh
            # a comment line
            swiftdiffusion generate --seed 1 \\
                "a prompt"

            swiftdiffusion tokenize x
            ```
            ```text
            not a command
            ```
            """
        let blocks = Self.shellBlocks(in: text)
        XCTAssertEqual(blocks.count, 2)
        XCTAssertEqual(blocks.first?.skipReason, "needs a build")
        XCTAssertEqual(blocks.first?.commands, ["./build.sh   # comment"])
        XCTAssertNil(blocks.last?.skipReason)
        XCTAssertEqual(blocks.last?.commands, ["swiftdiffusion generate --seed 1 \"a prompt\"", "swiftdiffusion tokenize x"])
    }

    func testREADMECommandBlocksRunAsWritten() async throws {
        let readme = try String(contentsOf: Self.repository.appendingPathComponent("README.md"), encoding: .utf8)
        let blocks = Self.shellBlocks(in: readme)
        let executable = try XCTUnwrap(CommandLineTests.executable, "swiftdiffusion is not built (run `swift build` first)")

        // A fresh folder: `swiftdiffusion` on PATH, the repository's models and docs, a state folder of its own.
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("swiftdiffusion-readme-\(UUID().uuidString)")
        let work = folder.appendingPathComponent("work"), bin = folder.appendingPathComponent("bin")
        let state = folder.appendingPathComponent("state")
        for directory in [work, bin] { try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true) }
        defer { try? FileManager.default.removeItem(at: folder) }
        try FileManager.default.createSymbolicLink(at: bin.appendingPathComponent("swiftdiffusion"), withDestinationURL: executable)
        for name in ["models", "docs"] {
            try FileManager.default.createSymbolicLink(
                at: work.appendingPathComponent(name), withDestinationURL: Self.repository.appendingPathComponent(name))
        }
        var environment = ProcessInfo.processInfo.environment
        environment["PATH"] = bin.path + ":" + (environment["PATH"] ?? "/usr/bin:/bin")
        environment["SWIFTDIFFUSION_THREADS"] = "2"
        environment["XDG_STATE_HOME"] = state.path
        environment["SWIFTDIFFUSION_DEFAULT_MODEL"] = nil

        var ran: [String] = []
        for block in blocks {
            if let reason = block.skipReason {
                XCTAssertFalse(reason.trimmingCharacters(in: .whitespaces).isEmpty, "README line \(block.line): a skip needs a reason")
                for command in block.commands {
                    XCTAssertFalse(command.hasPrefix("swiftdiffusion"), "README line \(block.line): '\(command)' must run, not be skipped")
                    let program = String(command.split(separator: " ").first ?? "")
                    if program.hasPrefix("./") {
                        XCTAssertTrue(
                            FileManager.default.isExecutableFile(atPath: Self.repository.appendingPathComponent(program).path),
                            "README line \(block.line): \(program) is not an executable file of the repository")
                    }
                }
                continue
            }
            for command in block.commands {
                if command.hasPrefix("swiftdiffusion serve") {
                    try await Self.checkServe(command, in: work, environment: environment, state: state)
                } else {
                    let result = try CommandLineTests.shell(command, in: work, environment: environment)
                    XCTAssertEqual(result.status, 0, "README line \(block.line): `\(command)` failed:\n\(result.stderr)")
                    if command.hasPrefix("swiftdiffusion generate") {
                        // It prints the files it wrote: PNGs that exist.
                        let files = result.stdout.split(separator: "\n").map(String.init)
                        XCTAssertFalse(files.isEmpty, "`\(command)` printed no file")
                        for file in files {
                            let url = file.hasPrefix("/") ? URL(fileURLWithPath: file) : work.appendingPathComponent(file)
                            let bytes = (try? Data(contentsOf: url)) ?? Data()
                            XCTAssertEqual(Array(bytes.prefix(4)), [0x89, 0x50, 0x4E, 0x47], "`\(command)`: \(file) is not a PNG")
                        }
                    } else {
                        XCTAssertFalse(result.stdout.isEmpty, "`\(command)` printed nothing")
                    }
                }
                ran.append(command)
            }
        }
        // The test must not pass by finding nothing: the README shows a first picture, LoRA, ControlNet,
        // img2img, batch, tokenize and the server.
        XCTAssertGreaterThanOrEqual(ran.count, 8, "README commands run: \(ran)")
        for expected in ["swiftdiffusion generate", "swiftdiffusion batch", "swiftdiffusion tokenize", "swiftdiffusion serve"] {
            XCTAssertTrue(ran.contains { $0.hasPrefix(expected) }, "no `\(expected)` command ran")
        }
        // Nothing the commands did put a database in the working folder.
        let left = try FileManager.default.contentsOfDirectory(atPath: work.path)
        XCTAssertEqual(left.filter { $0.hasSuffix(".sqlite") || $0.contains("jobs") }, [], "state written to the working folder")
    }

    /// Starts `command` (a `swiftdiffusion serve` line) on a free port given through SWIFTDIFFUSION_PORT,
    /// checks `/healthz` and the web page, stops it with SIGINT and checks where its job database went.
    static func checkServe(_ command: String, in work: URL, environment: [String: String], state: URL) async throws {
        var environment = environment
        let port = try freeLoopbackPort()
        environment["SWIFTDIFFUSION_PORT"] = "\(port)"
        let server = try CommandLineTests.startShell(command, in: work, environment: environment)
        defer { CommandLineTests.stop(server) }
        let base = "http://127.0.0.1:\(port)"
        var healthy = false
        let deadline = Date().addingTimeInterval(90)
        while Date() < deadline, server.process.isRunning {
            if let (_, response) = try? await URLSession.shared.data(from: URL(string: base + "/healthz")!),
                (response as? HTTPURLResponse)?.statusCode == 200
            {
                healthy = true
                break
            }
            try await Task.sleep(for: .milliseconds(200))
        }
        XCTAssertTrue(healthy, "`\(command)` did not answer /healthz on port \(port): \(server.stderrText())")
        if healthy {
            let (page, response) = try await URLSession.shared.data(from: URL(string: base + "/")!)
            XCTAssertEqual((response as? HTTPURLResponse)?.statusCode, 200)
            XCTAssertTrue(String(decoding: page, as: UTF8.self).contains("id=\"generate\""), "the web page is not served at /")
        }
        kill(server.process.processIdentifier, SIGINT)
        let stopped = await CommandLineTests.waitForExit(server.process, seconds: 30)
        XCTAssertTrue(stopped, "`\(command)` did not stop on SIGINT")
        XCTAssertTrue(
            FileManager.default.fileExists(atPath: state.appendingPathComponent("swiftdiffusion/jobs.sqlite").path),
            "the job database is not in $XDG_STATE_HOME/swiftdiffusion: \(server.stderrText())")
    }

    /// A port the kernel just handed out on 127.0.0.1 (closed again, so the server can take it).
    static func freeLoopbackPort() throws -> Int {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { throw POSIXError(.EMFILE) }
        defer { close(descriptor) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
                bind(descriptor, pointer, length) == 0 && getsockname(descriptor, pointer, &length) == 0
            }
        }
        guard bound else { throw POSIXError(.EADDRINUSE) }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}
