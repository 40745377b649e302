import Foundation

/// A noiseless functional relationship y = f(x) on x in [0, 1].
public struct Relationship: Sendable {
    public let id: String
    public let name: String
    public let f: @Sendable (Double) -> Double

    /// Var f(X) for X ~ U(0, 1), by the midpoint rule on 2^20 points (deterministic; the functions are
    /// bounded and piecewise smooth, so this is exact to ~1e-9 relative).
    public var variance: Double {
        let m = 1 << 20
        var s = 0.0, ss = 0.0
        for i in 0..<m {
            let v = f((Double(i) + 0.5) / Double(m))
            s += v; ss += v * v
        }
        let mean = s / Double(m)
        return ss / Double(m) - mean * mean
    }

    /// The 21 functions of Reshef et al. (2011, SOM), as transcribed in ../shared/research/equitability.md
    /// §2.7a (spike f20 uses the transcribed 18x; that table marks it "verify against the SOM").
    public static let reshef21: [Relationship] = [
        .init(id: "f1", name: "linear+periodic, low freq") { 0.2 * sin(12 * $0 - 6) + 1.1 * ($0 - 1) + 1 },
        .init(id: "f2", name: "linear+periodic, medium freq") { 0.15 * sin(11 * .pi * $0) + $0 + 0.05 },
        .init(id: "f3", name: "linear+periodic, high freq") { 0.1 * sin(48 * $0) + 2 * $0 - 0.5 },
        .init(id: "f4", name: "linear+periodic, high freq 2") { 0.2 * sin(48 * $0) + 2 * $0 - 0.5 },
        .init(id: "f5", name: "non-Fourier freq (low) cosine") { 0.4 * cos(7 * .pi * $0) + 0.5 },
        .init(id: "f6", name: "cosine, high freq") { 0.4 * cos(14 * .pi * $0) + 0.5 },
        .init(id: "f7", name: "cubic") { cubic($0) },
        .init(id: "f8", name: "cubic, y-stretched") { 4 * cubic($0) - 1.4 },
        .init(id: "f9", name: "L-shaped") { $0 <= 0.99 ? $0 / 99 : 99 * $0 - 98 },
        .init(id: "f10", name: "exponential 2^x") { pow(2, $0) - 1 },
        .init(id: "f11", name: "exponential 8^x") { pow(8, $0 - 0.3) - 1 },
        .init(id: "f12", name: "line") { $0 },
        .init(id: "f13", name: "parabola") { 4 * ($0 - 0.5) * ($0 - 0.5) + 0.1 },
        .init(id: "f14", name: "non-Fourier freq (low) sine") { 0.4 * sin(9 * .pi * $0) + 0.5 },
        .init(id: "f15", name: "sine, low freq") { 0.4 * sin(8 * .pi * $0) + 0.5 },
        .init(id: "f16", name: "sine, high freq") { 0.4 * sin(16 * .pi * $0) + 0.5 },
        .init(id: "f17", name: "sigmoid") { $0 < 0.491 ? 0.05 : ($0 > 0.509 ? 0.95 : 50 * ($0 - 0.5) + 0.5) },
        .init(id: "f18", name: "varying freq (medium) cosine") { 0.4 * cos(5 * .pi * $0 * (1 + $0)) + 0.5 },
        .init(id: "f19", name: "varying freq (medium) sine") { 0.4 * sin(6 * .pi * $0 * (1 + $0)) + 0.5 },
        .init(id: "f20", name: "spike") { $0 <= 0.0528 ? 18 * $0 : ($0 >= 0.1 ? -$0 / 9 + 1 / 9 : -18 * $0 + 1.9) },
        .init(id: "f21", name: "lopsided L") { $0 <= 0.0051 ? 190 * $0 : ($0 >= 0.01 ? -$0 / 99 + 1 / 99 : -198 * $0 + 1.99) },
    ]

    private static func cubic(_ x: Double) -> Double { 10 * pow(x - 0.6, 3) + 2 * x * x - 3 * x + 1.5 }
}

/// Draws noisy samples y = f(x) + σ ε, x ~ U(0, 1), ε ~ N(0, 1), with σ chosen so that the population
/// R² = Var f(X) / (Var f(X) + σ²) equals the target (σ = sqrt(Var f (1 - R²) / R²); R² = 1 is noiseless).
public struct NoisyRelationship: Sendable {
    public let relationship: Relationship
    public let r2: Double
    public let sigma: Double

    public init(_ relationship: Relationship, r2: Double, variance: Double) {
        self.relationship = relationship
        self.r2 = r2
        self.sigma = r2 >= 1 ? 0 : (variance * (1 - r2) / r2).squareRoot()
    }

    /// n pairs from the relationship; `independentX` pairs the noisy y with a fresh, independent x (the null
    /// with the same marginals, Simon & Tibshirani's calibration).
    public func sample(n: Int, rng: inout Xoshiro256StarStar, independentX: Bool = false) -> (x: [Double], y: [Double]) {
        var x = [Double](repeating: 0, count: n), y = [Double](repeating: 0, count: n)
        for i in 0..<n {
            let xi = rng.unit()
            x[i] = xi
            y[i] = relationship.f(xi) + sigma * rng.normal()
        }
        if independentX { for i in 0..<n { x[i] = rng.unit() } }
        return (x, y)
    }
}

extension Xoshiro256StarStar {
    /// A standard normal deviate (Box–Muller on two 53-bit uniforms; the second deviate is discarded).
    public mutating func normal() -> Double {
        let u1 = 1 - unit()  // (0, 1]
        let u2 = unit()
        return (-2 * log(u1)).squareRoot() * cos(2 * .pi * u2)
    }
}
