import Foundation
import XCTest
@testable import Dependence

/// Values and permutation p-values against the references of tools/dependence/make_goldens.py (scipy, dcor,
/// hyppo, scikit-learn, R minerva), stored in Fixtures/dependence_goldens.json with their data.
final class GoldenTests: XCTestCase {
    struct Goldens: Decodable {
        struct PValue: Decodable { let p: Double; let permutations: Int }
        struct DataSet: Decodable {
            let name: String
            let x: [Double]
            let y: [Double]
            let values: [String: Double]
            let pvalues: [String: PValue]
        }
        let datasets: [DataSet]
    }

    static let goldens: Goldens = {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("Fixtures/dependence_goldens.json")
        let data = try! Data(contentsOf: url)
        return try! JSONDecoder().decode(Goldens.self, from: data)
    }()

    /// Absolute tolerance per measure. 1e-6 everywhere the issue asks for it; HHG sums n(n-1) chi-square terms
    /// into values of 1e3..1e6, so it is compared relatively (1e-9) instead. MIC-family values are compared at
    /// 1e-6 too (tighter than minepy's own documented agreement with MINE.jar).
    func check(_ name: String, _ measure: any DependenceMeasure) throws {
        var worst = 0.0
        for set in Self.goldens.datasets {
            guard let expected = set.values[name] else { continue }
            let value = try measure.value(x: set.x, y: set.y)
            let error = name == "hhg" ? abs(value - expected) / abs(expected) : abs(value - expected)
            worst = max(worst, error)
            XCTAssertLessThan(error, name == "hhg" ? 1e-9 : 1e-6, "\(name) on \(set.name): \(value) vs \(expected)")
        }
        print("golden \(name): max \(name == "hhg" ? "relative" : "absolute") difference \(worst)")
    }

    func testPearson() throws { try check("pearson", Pearson()) }
    func testSpearman() throws { try check("spearman", Spearman()) }
    func testKendall() throws { try check("kendall", KendallTau()) }
    func testDistanceCorrelation() throws { try check("dcor", DistanceCorrelation()) }
    func testHSIC() throws { try check("hsic", HSIC()) }
    func testChatterjeeXi() throws { try check("xi", ChatterjeeXi()) }
    func testKSG() throws { try check("ksg", KSGMutualInformation()) }
    func testHHG() throws { try check("hhg", HHG()) }
    func testMIC() throws { try check("mic", MINE(estimator: .approx, statistic: .mic)) }
    func testMICe() throws { try check("mice", MINE(estimator: .equicharacteristic, statistic: .mic)) }
    func testTICe() throws { try check("tice", MINE(estimator: .equicharacteristic, statistic: .tic)) }

    /// Permutation p-values agree with the references' own permutation p-values within Monte Carlo error:
    /// |p - p_ref| <= 4 sqrt(p(1-p)(1/B + 1/B_ref)) + 1/B.
    func testPermutationPValues() throws {
        let permutations = ["hhg": 600, "mic": 400, "mice": 600, "tice": 600, "hsic": 1000, "ksg": 1000]
        for set in Self.goldens.datasets where !set.pvalues.isEmpty {
            for name in MeasureCatalog.names {
                guard let reference = set.pvalues[name], let measure = MeasureCatalog.measure(named: name) else { continue }
                let b = permutations[name] ?? 4000
                let result = try measure.test(x: set.x, y: set.y, permutations: b, seed: 2024)
                let p = try XCTUnwrap(result.pValue)
                let q = max(reference.p, 1 / Double(b))
                let bound = 4 * (q * (1 - q) * (1 / Double(b) + 1 / Double(reference.permutations))).squareRoot() + 1 / Double(b)
                print("p-value \(set.name) \(name): \(p) vs \(reference.p) (bound \(bound))")
                XCTAssertLessThanOrEqual(abs(p - reference.p), bound, "\(name) on \(set.name): p \(p) vs \(reference.p)")
            }
        }
    }
}
