import XCTest
@testable import Dependence

/// Bad input gives a typed error from every measure, never a crash or a NaN.
final class InputValidationTests: XCTestCase {
    let measures = MeasureCatalog.names.map { MeasureCatalog.measure(named: $0)! }

    func testEveryMeasureRejectsBadInput() {
        let good = (0..<20).map(Double.init)
        let cases: [(String, [Double], [Double], DependenceError)] = [
            ("empty", [], [], .empty),
            ("mismatch", [1, 2, 3], [1, 2], .lengthMismatch(x: 3, y: 2)),
            ("n < 3", [1, 2], [2, 1], .tooFewPoints(measure: "every measure", n: 2, minimum: 3)),
            ("NaN", good + [.nan], good + [1], .nonFinite(variable: "x", index: 20)),
            ("infinity", good, good.map { $0 == 5 ? -.infinity : $0 }, .nonFinite(variable: "y", index: 5)),
            ("constant x", [Double](repeating: 2, count: 20), good, .constant(variable: "x")),
            ("constant y", good, [Double](repeating: -1, count: 20), .constant(variable: "y")),
        ]
        for measure in measures {
            for (label, x, y, expected) in cases {
                XCTAssertThrowsError(try measure.value(x: x, y: y), "\(measure.name): \(label)") { error in
                    XCTAssertEqual(error as? DependenceError, expected, "\(measure.name): \(label)")
                }
                XCTAssertThrowsError(try measure.test(x: x, y: y, permutations: 10), "\(measure.name): \(label)")
            }
        }
    }

    func testKSGNeedsMoreThanKPoints() {
        XCTAssertThrowsError(try KSGMutualInformation().value(x: [1, 2, 3], y: [3, 1, 2])) { error in
            XCTAssertEqual(error as? DependenceError, .tooFewPoints(measure: "ksg", n: 3, minimum: 4))
        }
    }

    func testQuadraticMeasuresRefuseHugeInputs() {
        let x = (0..<5_001).map { Double($0) }, y = x.map { $0 * $0 }
        XCTAssertThrowsError(try HHG().value(x: x, y: y)) { error in
            XCTAssertEqual(error as? DependenceError, .tooLarge(measure: "hhg", n: 5_001, limit: 5_000))
        }
    }

    func testNegativePermutationCountIsRejected() {
        XCTAssertThrowsError(try Pearson().test(x: [1, 2, 3, 4], y: [1, 3, 2, 4], permutations: -1))
    }

    func testSmallestValidInputGivesFiniteValues() throws {
        for measure in measures where measure.name != "ksg" {
            let result = try measure.test(x: [1, 2, 3], y: [1, 3, 2], permutations: 20, seed: 1)
            XCTAssertTrue(result.value.isFinite, measure.name)
            XCTAssertNotNil(result.pValue)
        }
        // Heavily tied data stays finite too.
        let x: [Double] = [0, 0, 0, 0, 1, 1, 1, 1, 1, 2], y: [Double] = [5, 5, 5, 5, 5, 5, 5, 5, 5, 6]
        for measure in measures {
            XCTAssertTrue(try measure.value(x: x, y: y).isFinite, measure.name)
        }
    }
}

final class ExtremeMagnitudeTests: XCTestCase {
    /// Values near the ends of the double range give the same statistics as moderate ones (every measure here
    /// is invariant under x -> a x, a > 0), finite, never NaN.
    func testHugeAndTinyValues() throws {
        var rng = Xoshiro256StarStar(seed: 21)
        let x = (0..<60).map { _ in rng.unit() }
        let y = x.map { sin(6 * $0) + 0.3 * rng.normal() }
        for name in MeasureCatalog.names {
            let measure = MeasureCatalog.measure(named: name)!
            let reference = try measure.value(x: x, y: y)
            for scale in [1e300, 1e-300, 0x1p-1000] {
                let value = try measure.value(x: x.map { $0 * scale }, y: y.map { $0 * 3e-5 })
                XCTAssertEqual(value, reference, accuracy: 1e-9 * max(1, abs(reference)), "\(name) at scale \(scale)")
            }
        }
    }
}
