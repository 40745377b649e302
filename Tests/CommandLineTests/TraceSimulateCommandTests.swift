import Foundation
import XCTest

/// `swiftdiffusion trace simulate` as users run it: a generated trace in, a table per policy out; bad options are
/// messages with exit code 1.
final class TraceSimulateCommandTests: XCTestCase {
    func testSimulatePrintsEveryPolicyAndRejectsBadOptions() throws {
        let executable = try XCTUnwrap(CommandLineTests.executable, "swiftdiffusion is not built next to the tests")
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("trace-simulate-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let trace = folder.appendingPathComponent("trace.jsonl").path
        let environment = ProcessInfo.processInfo.environment
        let generated = try CommandLineTests.execute(
            executable, ["trace", "generate", "--requests", "300", "--seed", "3", "--out", trace], environment: environment)
        XCTAssertEqual(generated.status, 0, generated.stderr)

        let run = try CommandLineTests.execute(
            executable,
            ["trace", "simulate", "--trace", trace, "--replicas", "4", "--cache-bytes", "48000000", "--utilization", "0.5"],
            environment: environment)
        XCTAssertEqual(run.status, 0, run.stderr)
        let lines = run.stdout.split(separator: "\n").map(String.init)
        XCTAssertTrue(lines.contains { $0.hasPrefix("policy") && $0.contains("p95 s") && $0.contains("hit_rate") }, run.stdout)
        for policy in ["affinity", "random", "least-loaded"] {
            let row = try XCTUnwrap(lines.first { $0.hasPrefix(policy + " ") }, run.stdout)
            XCTAssertEqual(row.split(separator: " ").count, 8, row)
        }
        XCTAssertTrue(run.stdout.contains("affinity vs random: adapter loads"), run.stdout)

        for (arguments, message) in [
            (["--placement", "nearest"], "unknown --placement 'nearest'"),
            (["--replicas", "0"], "--replicas must be between"),
            (["--stage-times", folder.appendingPathComponent("none.json").path], "no such file"),
        ] {
            var full = ["trace", "simulate", "--trace", trace, "--replicas", "2", "--cache-bytes", "1000"]
            for (index, argument) in arguments.enumerated() where index % 2 == 0 {
                if let position = full.firstIndex(of: argument) { full.remove(at: position + 1); full.remove(at: position) }
            }
            full += arguments
            let bad = try CommandLineTests.execute(executable, full, environment: environment)
            XCTAssertEqual(bad.status, 1, "\(arguments): \(bad.stderr)")
            XCTAssertTrue(bad.stderr.contains(message), "\(arguments): \(bad.stderr)")
        }
    }
}
