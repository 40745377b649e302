import Foundation
import XCTest

/// `swiftdiffusion dependence measure` as users run it.
final class DependenceCommandTests: XCTestCase {
    func run(_ arguments: [String]) throws -> CommandLineTests.Run {
        let executable = try XCTUnwrap(CommandLineTests.executable, "swiftdiffusion is not built next to the tests")
        return try CommandLineTests.execute(executable, arguments, environment: ProcessInfo.processInfo.environment)
    }

    func csv(_ text: String) throws -> String {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("dependence-\(UUID().uuidString).csv")
        try Data(text.utf8).write(to: url)
        addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return url.path
    }

    func testMeasurePrintsOneJSONObjectKeyedByMeasure() throws {
        let xs = (0..<40).map { Double($0) / 4 }
        let ys = xs.map { ($0 - 5) * ($0 - 5) + sin(7 * $0) }
        let path = try csv("id,\"latency ms\",steps\n" + zip(xs, ys).enumerated().map { "\($0),\($1.1),\($1.0)" }.joined(separator: "\n"))
        let result = try run(["dependence", "measure", "--csv", path, "--x", "steps", "--y", "latency ms",
                              "--measure", "pearson", "--measure", "dcor", "--measure", "xi", "--permutations", "99", "--json"])
        XCTAssertEqual(result.status, 0, result.stderr)
        let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: [String: Any]])
        XCTAssertEqual(Set(object.keys), ["pearson", "dcor", "xi"])
        // Pearson's r of the same columns, computed here.
        let mx = xs.reduce(0, +) / 40, my = ys.reduce(0, +) / 40
        let sxy = zip(xs, ys).reduce(0) { $0 + ($1.0 - mx) * ($1.1 - my) }
        let r = sxy / (xs.reduce(0) { $0 + ($1 - mx) * ($1 - mx) } * ys.reduce(0) { $0 + ($1 - my) * ($1 - my) }).squareRoot()
        XCTAssertEqual(try XCTUnwrap(object["pearson"]?["value"] as? Double), r, accuracy: 1e-12)
        XCTAssertEqual(object["pearson"]?["alternative"] as? String, "two-sided")
        // A parabola: xi sees it, with the smallest p-value 99 permutations allow.
        XCTAssertGreaterThan(try XCTUnwrap(object["xi"]?["value"] as? Double), 0.5)
        XCTAssertEqual(try XCTUnwrap(object["xi"]?["p_value"] as? Double), 0.01, accuracy: 1e-12)
        XCTAssertEqual(object["dcor"]?["permutations"] as? Int, 99)
    }

    func testBadInputIsAClearError() throws {
        let constant = try csv("a,b\n1,5\n2,5\n3,5\n4,5\n")
        var result = try run(["dependence", "measure", "--csv", constant, "--x", "a", "--y", "b", "--json"])
        XCTAssertEqual(result.status, 1)
        XCTAssertTrue(result.stderr.contains("column 'b' is constant"), result.stderr)
        XCTAssertEqual(result.stdout, "")

        let nan = try csv("a,b\n1,5\n2,nan\n3,4\n")
        result = try run(["dependence", "measure", "--csv", nan, "--x", "a", "--y", "b"])
        XCTAssertEqual(result.status, 1)
        XCTAssertTrue(result.stderr.contains("record 3, column 'b': 'nan' is not a finite number"), result.stderr)

        result = try run(["dependence", "measure", "--csv", nan, "--x", "a", "--y", "c"])
        XCTAssertTrue(result.stderr.contains("no column 'c'"), result.stderr)

        let short = try csv("a,b\n1,2\n2,1\n")
        result = try run(["dependence", "measure", "--csv", short, "--x", "a", "--y", "b"])
        XCTAssertTrue(result.stderr.contains("at least 3 pairs"), result.stderr)

        result = try run(["dependence", "measure", "--csv", "/nonexistent/file.csv", "--x", "a", "--y", "b"])
        XCTAssertEqual(result.status, 1)
        XCTAssertTrue(result.stderr.contains("no such file"), result.stderr)

        result = try run(["dependence", "measure", "--csv", short, "--x", "a", "--y", "b", "--measure", "bogus"])
        XCTAssertNotEqual(result.status, 0)
        XCTAssertTrue(result.stderr.contains("unknown measure 'bogus'"), result.stderr)
    }

    func testDriversRanksColumnsWithQValues() throws {
        var lines = ["noise,steps,latency"]
        var state: UInt64 = 12345
        func uniform() -> Double {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Double(state >> 11) / Double(1 << 53)
        }
        for i in 0..<120 {
            let steps = Double(10 + i % 41)
            lines.append("\(uniform()),\(steps),\(0.05 * steps + 0.05 * uniform())")
        }
        let path = try csv(lines.joined(separator: "\n"))
        let result = try run(["dependence", "drivers", "--csv", path, "--target", "latency", "--measure", "dcor",
                              "--permutations", "99", "--json"])
        XCTAssertEqual(result.status, 0, result.stderr)
        let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: [String: [String: Double]]])
        XCTAssertEqual(Set(object.keys), ["noise", "steps"])
        XCTAssertEqual(try XCTUnwrap(object["steps"]?["dcor"]?["q_value"]), 0.02, accuracy: 1e-12)  // p = 0.01, 2 features
        XCTAssertGreaterThan(try XCTUnwrap(object["steps"]?["dcor"]?["value"]), 0.9)
        XCTAssertLessThan(try XCTUnwrap(object["noise"]?["dcor"]?["value"]), 0.3)
        // Ranked: the driver is printed first.
        XCTAssertLessThan(try XCTUnwrap(result.stdout.range(of: "\"steps\"")).lowerBound,
                          try XCTUnwrap(result.stdout.range(of: "\"noise\"")).lowerBound)
    }
}
