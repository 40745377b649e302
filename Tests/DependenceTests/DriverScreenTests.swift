import XCTest
@testable import Dependence

final class DriverScreenTests: XCTestCase {
    func testBenjaminiHochberg() {
        let q = DriverScreen.benjaminiHochberg([0.01, 0.04, 0.03, 0.2])
        XCTAssertEqual(q[0], 0.04, accuracy: 1e-15)
        XCTAssertEqual(q[1], 0.04 * 4 / 3, accuracy: 1e-15)
        XCTAssertEqual(q[2], 0.04 * 4 / 3, accuracy: 1e-15)
        XCTAssertEqual(q[3], 0.2, accuracy: 1e-15)
        XCTAssertEqual(DriverScreen.benjaminiHochberg([0.9, 0.8]), [0.9, 0.9])
        XCTAssertEqual(DriverScreen.benjaminiHochberg([]), [])
    }

    func testScreenFindsTheDriversAndReportsBadFeatures() {
        var rng = Xoshiro256StarStar(seed: 4)
        let n = 200
        let steps = (0..<n).map { _ in Double(10 + rng.below(41)) }
        let loras = (0..<n).map { _ in Double(rng.below(3)) }
        let noise = (0..<n).map { _ in rng.unit() }
        let latency = zip(steps, loras).map { 0.05 * $0 + 0.4 * $1 + 0.1 * rng.normal() }
        let entries = DriverScreen.screen(
            target: latency,
            features: [("steps", steps), ("loras", loras), ("noise", noise), ("constant", [Double](repeating: 1, count: n))],
            measures: [DistanceCorrelation(), ChatterjeeXi()], permutations: 199, seed: 1)
        XCTAssertEqual(entries.count, 8)
        func q(_ feature: String, _ measure: String) -> Double? {
            entries.first { $0.feature == feature && $0.measure == measure }?.q
        }
        XCTAssertLessThan(q("steps", "dcor")!, 0.05)
        XCTAssertLessThan(q("loras", "dcor")!, 0.05)
        XCTAssertGreaterThan(q("noise", "dcor")!, 0.05)
        let constant = entries.first { $0.feature == "constant" }!
        XCTAssertNil(constant.q)
        if case .failure(let error) = constant.result { XCTAssertEqual(error, .constant(variable: "x")) } else { XCTFail() }
    }
}
