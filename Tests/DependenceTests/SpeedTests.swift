import Foundation
import XCTest
@testable import Dependence

/// n = 100,000 pairs: the O(n log n) algorithms must take well under a second (debug build; the target is
/// compiled with optimisation like Compute). The naive O(n²) forms would take minutes.
final class SpeedTests: XCTestCase {
    func data(_ n: Int) -> ([Double], [Double]) {
        var rng = Xoshiro256StarStar(seed: 99)
        let x = (0..<n).map { _ in rng.unit() }
        let y = x.map { sin(12 * $0) + 0.5 * (rng.unit() - 0.5) }
        return (x, y)
    }

    func time(_ label: String, _ body: () throws -> Double) rethrows -> Double {
        let start = ContinuousClock.now
        let value = try body()
        let elapsed = ContinuousClock.now - start
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
        print(String(format: "speed %@ n = 100000: %.3f s (value %.6f)", label, seconds, value))
        return seconds
    }

    func testDistanceCorrelationAndKendallOnHundredThousandPairs() throws {
        let (x, y) = data(100_000)
        let dcorTime = try time("dcor") { try DistanceCorrelation().value(x: x, y: y) }
        let kendallTime = try time("kendall") { try KendallTau().value(x: x, y: y) }
        XCTAssertLessThan(dcorTime, 1.0)
        XCTAssertLessThan(kendallTime, 1.0)
        _ = try time("xi") { try ChatterjeeXi().value(x: x, y: y) }
        _ = try time("spearman") { try Spearman().value(x: x, y: y) }
        _ = try time("ksg") { try KSGMutualInformation().value(x: x, y: y) }
    }

    /// The fast algorithms agree with the O(n²) definitions on a mid-sized sample with ties.
    func testFastAlgorithmsMatchTheDefinitions() throws {
        var rng = Xoshiro256StarStar(seed: 5)
        let n = 700
        let x = (0..<n).map { _ in Double(rng.below(40)) }
        let y = x.map { ($0 - 20) * ($0 - 20) / 40 + Double(rng.below(7)) }
        // Kendall tau-b by pairs.
        var c = 0, d = 0, tx = 0, ty = 0
        for i in 0..<n {
            for j in (i + 1)..<n {
                let sx = (x[i] - x[j]).sign == .minus ? -1 : (x[i] == x[j] ? 0 : 1)
                let sy = (y[i] - y[j]).sign == .minus ? -1 : (y[i] == y[j] ? 0 : 1)
                if sx == 0 { tx += 1 }
                if sy == 0 { ty += 1 }
                if sx * sy > 0 { c += 1 } else if sx * sy < 0 { d += 1 }
            }
        }
        let n0 = n * (n - 1) / 2
        let tau = Double(c - d) / (Double(n0 - tx) * Double(n0 - ty)).squareRoot()
        XCTAssertEqual(try KendallTau().value(x: x, y: y), tau, accuracy: 1e-12)
        // Distance correlation by double centring.
        func centred(_ v: [Double]) -> [[Double]] {
            var m = (0..<n).map { i in (0..<n).map { j in abs(v[i] - v[j]) } }
            let row = m.map { $0.reduce(0, +) / Double(n) }
            let all = row.reduce(0, +) / Double(n)
            for i in 0..<n { for j in 0..<n { m[i][j] += all - row[i] - row[j] } }
            return m
        }
        let a = centred(x), b = centred(y)
        var ab = 0.0, aa = 0.0, bb = 0.0
        for i in 0..<n { for j in 0..<n { ab += a[i][j] * b[i][j]; aa += a[i][j] * a[i][j]; bb += b[i][j] * b[i][j] } }
        XCTAssertEqual(try DistanceCorrelation().value(x: x, y: y), (ab / (aa * bb).squareRoot()).squareRoot(), accuracy: 1e-10)
    }
}
