import Foundation
import XCTest
@testable import Dependence

/// The harness against the definitions of ../shared/research/equitability.md §4.4–§4.6, on cases with known answers.
final class EquitabilityTests: XCTestCase {
    // MARK: noise calibration (spec §4.4)

    func testGaussianNoiseIsCalibratedToTheTargetR2OnEveryReshefFunction() {
        let line = Relationship.reshef21.first { $0.id == "f12" }!
        XCTAssertEqual(line.variance, 1.0 / 12, accuracy: 1e-9)
        for relationship in Relationship.reshef21 {
            let variance = relationship.variance
            for r2 in [0.3, 0.8] {
                let generator = NoisyRelationship(relationship, r2: r2, variance: variance)
                var rng = Xoshiro256StarStar(seed: 11)
                let (x, y, realised) = generator.sample(n: 40_000, rng: &rng)
                let r = try! Pearson().value(x: x.map(relationship.f), y: y)
                XCTAssertEqual(r * r, realised, accuracy: 1e-12)
                // sd of a sample R² at n = 40,000 is below 0.005 here; L-shaped f9 and lopsided f21 put their
                // variance on 1% of x, so their sample R² varies more.
                XCTAssertEqual(realised, r2, accuracy: ["f9", "f21"].contains(relationship.id) ? 0.05 : 0.02, "\(relationship.id) at R² \(r2)")
            }
        }
    }

    /// Every noise model reaches the target R² = corr(y_clean, y)² on linear and non-linear (and non-functional)
    /// relationships, within Monte-Carlo error (pooled over 4 samples of 20,000).
    func testEveryNoiseModelIsCalibratedOnLinearAndNonLinearRelationships() {
        let chosen = ["f12", "f13", "f16", "st-circle", "st-x"].map { Relationship.named($0)! }
        let models: [NoiseModel] = [.gaussianY, .uniformY, .heteroscedastic(.absF), .heteroscedastic(.x), .gaussianXY(share: 0.5)]
        for relationship in chosen {
            let variance = relationship.variance
            for model in models {
                for r2 in [0.25, 0.7] {
                    let generator = NoisyRelationship(relationship, r2: r2, variance: variance, noise: model)
                    var rng = Xoshiro256StarStar(seed: 5)
                    var total = 0.0
                    for _ in 0..<4 { total += generator.sample(n: 20_000, rng: &rng).realisedR2 }
                    XCTAssertEqual(total / 4, r2, accuracy: 0.015, "\(relationship.id) \(model.label) R² \(r2)")
                }
            }
        }
        XCTAssertEqual(Relationship.named("st-circle")!.variance, 2.0 / 3, accuracy: 1e-6)  // E[1 − (2x − 1)²]
    }

    func testNoiseModelsParse() {
        XCTAssertEqual(NoiseModel(parsing: "xy:0.25"), .gaussianXY(share: 0.25))
        XCTAssertEqual(NoiseModel(parsing: "hetero-f"), .heteroscedastic(.absF))
        XCTAssertNil(NoiseModel(parsing: "xy:2"))
        XCTAssertNil(NoiseModel(parsing: "cauchy"))
    }

    // MARK: equitability (spec §4.5)

    /// A score that is a strictly increasing function of R², the same on every relationship, is perfectly
    /// equitable: every interpretable interval is a single point, the score spread is 0.
    func testMonotoneFunctionOfR2IsPerfectlyEquitable() {
        let grid = [0.1, 0.4, 0.7, 1.0]
        let relationships = Array(Relationship.reshef21.prefix(3))
        var cells: [EquitabilityHarness.Cell] = []
        for relationship in relationships {
            for r2 in grid {
                cells.append(.init(relationship: relationship.id, r2: r2, scores: [Array(repeating: r2 * r2 * r2, count: 7)]))
            }
        }
        let result = EquitabilityHarness.Result(measures: ["g(R²)"], r2Grid: grid, relationships: relationships, cells: cells, alpha: 0.05, n: 100)
        let w = result.interpretableIntervals(0)
        XCTAssertEqual(w.worst, 0, accuracy: 1e-12)
        XCTAssertEqual(w.mean, 0, accuracy: 1e-12)
        XCTAssertEqual(result.scoreSpread(0).max()!, 0)
        // I(s) of s = 0.4³ is {0.4}.
        let i = result.interpretableInterval(0, score: 0.064)!
        XCTAssertEqual(i.lo, 0.4, accuracy: 1e-12); XCTAssertEqual(i.hi, 0.4, accuracy: 1e-12)
    }

    /// Interpretable intervals by hand: two relationships on the grid {0, 1}-like R² levels 0.2 and 0.6 with
    /// bands that are exactly the scores (every replicate equal).
    func testInterpretableIntervalByHand() {
        let grid = [0.2, 0.6]
        let rels = Array(Relationship.reshef21.prefix(2))
        // f A: score 0.2 at R² 0.2 and 0.6 at R² 0.6 (line s = R²); f B: 0.1 and 0.3 (s = R²/2).
        let cells: [EquitabilityHarness.Cell] = [
            .init(relationship: "A", r2: 0.2, scores: [[0.2, 0.2]]), .init(relationship: "A", r2: 0.6, scores: [[0.6, 0.6]]),
            .init(relationship: "B", r2: 0.2, scores: [[0.1, 0.1]]), .init(relationship: "B", r2: 0.6, scores: [[0.3, 0.3]]),
        ]
        let result = EquitabilityHarness.Result(measures: ["m"], r2Grid: grid, relationships: rels, cells: cells, alpha: 0.05, n: 10)
        // s = 0.25: A gives R² 0.25, B gives R² 0.5 → interval [0.25, 0.5].
        let i = result.interpretableInterval(0, score: 0.25)!
        XCTAssertEqual(i.lo, 0.25, accuracy: 1e-12); XCTAssertEqual(i.hi, 0.5, accuracy: 1e-12)
        // s = 0.5: only A → {0.5}; s = 0.7 → empty.
        XCTAssertEqual(result.interpretableInterval(0, score: 0.5)!.hi, 0.5, accuracy: 1e-12)
        XCTAssertNil(result.interpretableInterval(0, score: 0.7))
        // Widths over s in [0.1, 0.6]: s ≤ 0.2 → only B, width 0; 0.2 ≤ s ≤ 0.3 → 2s − s = s; above → 0. Worst 0.3 − ... :
        // at s = 0.3, A gives 0.3 and B gives 0.6 → width 0.3.
        let scoreGrid = (0...500).map { 0.1 + 0.5 * Double($0) / 500 }
        XCTAssertEqual(result.interpretableIntervals(0, scores: scoreGrid).worst, 0.3, accuracy: 2e-3)  // grid step 0.001
        // On the default grid (the cell medians 0.2, 0.6, 0.1, 0.3): widths 0.2 (s = 0.2: A 0.2, B 0.4), 0, 0, 0.3.
        let w = result.interpretableIntervals(0)
        XCTAssertEqual(w.worst, 0.3, accuracy: 1e-12); XCTAssertEqual(w.mean, 0.5 / 4, accuracy: 1e-12)
        XCTAssertEqual(result.scoreSpread(0), [0.1, 0.3].map { $0 }, accuracy: 1e-12)
    }

    /// The realised-R² oracle run through the harness is near-perfectly equitable (spec §4.8 item 6), far more
    /// than Pearson on a suite with a symmetric relationship.
    func testRealisedR2OracleIsNearlyEquitable() throws {
        var harness = EquitabilityHarness()
        harness.n = 400
        harness.replicates = 20
        harness.r2Grid = [0.2, 0.5, 0.8]
        harness.measures = [EquitabilityHarness.oracle, "pearson"]
        harness.relationships = ["f7", "f12", "f13", "f16"].map { Relationship.named($0)! }
        let result = try harness.run()
        XCTAssertLessThan(result.scoreSpread(0).max()!, 0.05)
        XCTAssertGreaterThan(result.scoreSpread(1).max()!, 0.5)
        XCTAssertLessThan(result.interpretableIntervals(0).worst, 0.3)
        XCTAssertGreaterThan(result.interpretableIntervals(1).worst, 0.5)
    }

    // MARK: power (spec §4.6)

    /// Pearson on a line with Gaussian noise: the test on |r| is the two-sided t test, whose power at
    /// noncentrality δ = sqrt(n R²/(1 − R²)) (Var X = 1/12 cancels) is Φ(δ − t_c) + Φ(−δ − t_c) up to O(1/n).
    func testPearsonPowerOnALineMatchesTheTTest() throws {
        var harness = EquitabilityHarness()
        harness.n = 400
        harness.replicates = 4000
        harness.null = .independentX(replicates: 4000)
        harness.r2Grid = [0.015]
        harness.measures = ["pearson"]
        harness.relationships = [Relationship.named("f12")!]
        let result = try harness.run()
        let delta = (400 * 0.015 / 0.985).squareRoot()
        let tc = 1.9659  // t quantile 0.975, 398 df
        func phi(_ z: Double) -> Double { 0.5 * erfc(-z / 2.0.squareRoot()) }
        let expected = phi(delta - tc) + phi(-delta - tc)  // 0.692
        // Monte-Carlo error: power sd 0.0073, critical value from 4000 null draws ~0.010 → 0.04 ≈ 3.2 SE.
        XCTAssertEqual(try XCTUnwrap(result.power(0, 0, 0)), expected, accuracy: 0.04)
        XCTAssertEqual(try XCTUnwrap(result.powerSE(0, 0, 0)), (expected * (1 - expected) / 4000).squareRoot(), accuracy: 0.002)
    }

    /// The permutation null (spec §4.6 mode ii) gives the same answer as the independent-x null within MC error,
    /// and its size under independence (R² → 0) is about α.
    func testPermutationNullMatchesIndependentXNull() throws {
        var harness = EquitabilityHarness()
        harness.n = 100
        harness.replicates = 400
        harness.r2Grid = [0.06]
        harness.measures = ["pearson"]
        harness.relationships = [Relationship.named("f12")!]
        harness.null = .permutation(permutations: 99)
        let permuted = try XCTUnwrap(try harness.run().power(0, 0, 0))
        harness.null = .independentX(replicates: 1000)
        let independent = try XCTUnwrap(try harness.run().power(0, 0, 0))
        XCTAssertEqual(permuted, independent, accuracy: 0.1)
        harness.r2Grid = [1e-9]
        harness.null = .permutation(permutations: 99)
        XCTAssertEqual(try XCTUnwrap(try harness.run().power(0, 0, 0)), 0.05, accuracy: 0.035)
    }

    /// Power-equitability metrics by hand on a 2-relationship × 3-level table. Null scores 1...20 per cell, so the
    /// 95% critical value (type-7 quantile) is 19.05 and power = share of scores ≥ 20.
    func testPowerEquitabilitySpreadByHand() {
        let grid = [0.2, 0.4, 0.8]
        let rels = Array(Relationship.reshef21.prefix(2))
        let null = (1...20).map(Double.init)
        func scores(_ rejected: Int) -> [Double] { Array(repeating: 100, count: rejected) + Array(repeating: 0, count: 10 - rejected) }
        // β(A) = 0.2, 0.6, 1.0; β(B) = 0.0, 0.2, 0.9.
        let table = [[2, 6, 10], [0, 2, 9]]
        var cells: [EquitabilityHarness.Cell] = []
        for f in 0..<2 { for r in 0..<3 { cells.append(.init(relationship: rels[f].id, r2: grid[r], scores: [scores(table[f][r])], nullScores: [null])) } }
        let result = EquitabilityHarness.Result(measures: ["m"], r2Grid: grid, relationships: rels, cells: cells, alpha: 0.05, n: 10)
        XCTAssertEqual(result.power(0, 0, 1), 0.6)
        XCTAssertEqual(result.powerSpread(0)!, [0.2, 0.4, 0.1], accuracy: 1e-12)
        // ∫Δβ = 0.2·(0.2 + 0.4)/2 + 0.4·(0.4 + 0.1)/2 = 0.06 + 0.10 = 0.16
        XCTAssertEqual(result.powerSpreadIntegral(0)!, 0.16, accuracy: 1e-12)
        // r₅₀(A): between 0.2 (0.2) and 0.4 (0.6) → 0.2 + 0.3/0.4·0.2 = 0.35; r₅₀(B): between 0.4 (0.2) and 0.8 (0.9)
        // → 0.4 + 0.3/0.7·0.4 = 0.571428...
        XCTAssertEqual(result.r50(0, 0)!, 0.35, accuracy: 1e-12)
        XCTAssertEqual(result.r50(0, 1)!, 0.4 + 0.3 / 0.7 * 0.4, accuracy: 1e-12)
        XCTAssertEqual(result.r50Spread(0)!.spread, 0.4 + 0.3 / 0.7 * 0.4 - 0.35, accuracy: 1e-12)
        XCTAssertEqual(result.r50Spread(0)!.unreached, 0)
        // Verdict: max Δβ 0.4; max SE = sqrt(0.5·0.5/10)? largest β(1 − β) is at 0.6: sqrt(0.24/10) = 0.1549 →
        // 0.4 ≤ 0.1 + 0.3098 → power-equitable; with δ = 0.05 → 0.4 > 0.3598 → not.
        XCTAssertEqual(result.isPowerEquitable(0, tolerance: 0.1), true)
        XCTAssertEqual(result.isPowerEquitable(0, tolerance: 0.05), false)
        // Interval-estimation power, H0 R² ≤ 0.2 vs R² = 0.8: least-favourable 95% quantile at 0.2 is 100 (A has
        // 2 of 10 at 100) → no score exceeds it.
        XCTAssertEqual(result.intervalPower(0, x0: 0, x1: 2), [0, 0])
    }

    func testPowerSeparatesMonotoneFromSymmetricRelationships() throws {
        var harness = EquitabilityHarness()
        harness.n = 60
        harness.replicates = 30
        harness.null = .independentX(replicates: 40)
        harness.r2Grid = [1.0]
        harness.measures = ["pearson", "dcor", "xi"]
        harness.relationships = Relationship.reshef21.filter { ["f12", "f13"].contains($0.id) }
        let result = try harness.run()
        for m in 0..<3 { XCTAssertEqual(result.power(m, 0, 0), 1, result.measures[m]) }
        XCTAssertLessThan(try XCTUnwrap(result.power(0, 1, 0)), 0.5)
        XCTAssertEqual(result.power(2, 1, 0), 1)
        XCTAssertEqual(try XCTUnwrap(result.powerSpread(2)).max(), 0)
        XCTAssertGreaterThan(try XCTUnwrap(result.powerSpread(0)).max()!, 0.5)
    }

    /// Self-equitability (spec §4.5 item 4): rank measures are unchanged by increasing transforms of x.
    func testSelfEquitabilityOfRankMeasures() throws {
        var harness = EquitabilityHarness()
        harness.n = 50
        harness.replicates = 3
        harness.r2Grid = [0.5]
        harness.measures = ["spearman", "pearson"]
        harness.relationships = [Relationship.named("f10")!]
        harness.selfEquitability = true
        let result = try harness.run()
        for g in 0..<3 { XCTAssertEqual(try XCTUnwrap(result.selfEquitability(0, transform: g)).max, 0, accuracy: 1e-12) }
        XCTAssertGreaterThan(try XCTUnwrap(result.selfEquitability(1, transform: 2)).max, 1e-4)
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

private func XCTAssertEqual(_ a: [Double], _ b: [Double], accuracy: Double, file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(a.count, b.count, file: file, line: line)
    for (x, y) in zip(a, b) { XCTAssertEqual(x, y, accuracy: accuracy, file: file, line: line) }
}
