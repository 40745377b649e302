import XCTest
@testable import Dependence

final class EquitabilityTests: XCTestCase {
    func testNoiseIsCalibratedToTheTargetR2() {
        let line = Relationship.reshef21.first { $0.id == "f12" }!
        XCTAssertEqual(line.variance, 1.0 / 12, accuracy: 1e-9)
        for relationship in Relationship.reshef21 {
            let variance = relationship.variance
            for r2 in [0.3, 0.8] {
                let generator = NoisyRelationship(relationship, r2: r2, variance: variance)
                var rng = Xoshiro256StarStar(seed: 11)
                let (x, y) = generator.sample(n: 40_000, rng: &rng)
                let fx = x.map(relationship.f)
                let r = try! Pearson().value(x: fx, y: y)
                XCTAssertEqual(r * r, r2, accuracy: 0.02, "\(relationship.id) at R² \(r2)")
            }
        }
    }

    func testPowerSeparatesMonotoneFromSymmetricRelationships() throws {
        var harness = EquitabilityHarness()
        harness.n = 60
        harness.replicates = 30
        harness.nullReplicates = 40
        harness.r2Grid = [1.0]
        harness.measures = ["pearson", "dcor", "xi"]
        harness.relationships = Relationship.reshef21.filter { ["f12", "f13"].contains($0.id) }
        let result = try harness.run()
        // Noiseless line: everyone has full power. Noiseless parabola: Pearson has little, xi full.
        for m in 0..<3 { XCTAssertEqual(result.power(m, 0, 0), 1, result.measures[m]) }
        XCTAssertLessThan(try XCTUnwrap(result.power(0, 1, 0)), 0.5)
        XCTAssertEqual(result.power(2, 1, 0), 1)
        XCTAssertEqual(try XCTUnwrap(result.powerSpread(2)).max(), 0)
        XCTAssertGreaterThan(try XCTUnwrap(result.powerSpread(0)).max()!, 0.5)
    }

    func testSVGChartIsWellFormed() {
        let chart = SVGChart(title: "t <&>", xLabel: "x", yLabel: "y",
                             panels: [.init(title: "p", lines: [[(0, 0), (1, 1)], [(0, 1), (1, 0)]])], legend: ["a", "b"])
        let svg = chart.render()
        XCTAssertTrue(svg.hasPrefix("<svg"))
        XCTAssertTrue(svg.contains("t &lt;&amp;&gt;"))
        XCTAssertEqual(svg.components(separatedBy: "<polyline").count - 1, 2)
    }
}
