import Foundation

/// A noiseless relationship on x in [0, 1]: y = f(x), or y = ±f(x) with a fair random sign for the two
/// non-functional shapes of Simon & Tibshirani's suite (circle, X-shape; `branches` = true).
///
/// Definitions follow the project's spec, ../shared/research/equitability.md §2.7 and §4.4.
public struct Relationship: Sendable {
    public let id: String
    public let name: String
    /// y_clean = sign · f(x) with sign = ±1 equally likely and independent of x (circle, X-shape).
    public let branches: Bool
    public let f: @Sendable (Double) -> Double

    public init(id: String, name: String, branches: Bool = false, f: @escaping @Sendable (Double) -> Double) {
        self.id = id
        self.name = name
        self.branches = branches
        self.f = f
    }

    /// Var of the noiseless y for X ~ U(0, 1) (E f² when `branches`: the random sign makes the mean 0), by the
    /// midpoint rule on 2^20 points (the spec allows quadrature or a large Monte-Carlo sample; this one is
    /// deterministic and, the functions being bounded and piecewise smooth, exact to ~1e-9 relative).
    public var variance: Double {
        let (mean, meanSquare) = Self.moments { f($0) }
        return branches ? meanSquare : meanSquare - mean * mean
    }

    /// (E g(X), E g(X)²) for X ~ U(0, 1) by the 2^20-point midpoint rule.
    static func moments(_ g: (Double) -> Double) -> (Double, Double) {
        let m = 1 << 20
        var s = 0.0, ss = 0.0
        for i in 0..<m {
            let v = g((Double(i) + 0.5) / Double(m))
            s += v; ss += v * v
        }
        return (s / Double(m), ss / Double(m))
    }

    /// The 21 functions of Reshef et al. (2011, SOM), as transcribed in the spec §2.7a (spike f20 uses the
    /// transcribed 18x; the spec marks it "verify against the SOM").
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

    /// Simon & Tibshirani's power suite (arXiv 1401.7645), the 12 shapes of the spec §2.7b / §4.4, with the
    /// functions of the public re-implementation the spec cites. Their per-function noise multipliers do not
    /// apply here: noise is calibrated to R² like every other relationship. The cubic is the polynomial the spec
    /// calls intended, 128(x−1/3)³ − 48(x−1/3)² − 12(x−1/3) (marked VERIFY there). The X-shape's noise sits
    /// inside the sign in their code; with a symmetric noise and an independent sign that is the same
    /// distribution as ±f(x) + noise, which is what is drawn here.
    public static let simonTibshirani: [Relationship] = [
        .init(id: "st-linear", name: "linear") { $0 },
        .init(id: "st-quadratic", name: "quadratic") { 4 * ($0 - 0.5) * ($0 - 0.5) },
        .init(id: "st-cubic", name: "cubic") { let u = $0 - 1.0 / 3; return 128 * u * u * u - 48 * u * u - 12 * u },
        .init(id: "st-qroot", name: "x^(1/4)") { pow($0, 0.25) },
        .init(id: "st-sin-low", name: "sine 4πx") { sin(4 * .pi * $0) },
        .init(id: "st-sin-high", name: "sine 16πx") { sin(16 * .pi * $0) },
        .init(id: "st-step", name: "step") { $0 > 0.5 ? 1 : 0 },
        .init(id: "st-spike", name: "spike") { $0 < 0.05 ? 4 : ($0 < 0.1 ? -18 * $0 + 1.9 : -$0 / 9 + 1 / 9) },
        .init(id: "st-circle", name: "circle", branches: true) { (max(0, 1 - (2 * $0 - 1) * (2 * $0 - 1))).squareRoot() },
        .init(id: "st-x", name: "X-shape", branches: true) { 4 * ($0 - 0.5) * ($0 - 0.5) },
        .init(id: "st-linear-periodic", name: "linear+periodic") { sin(10 * .pi * $0) + $0 },
        .init(id: "st-varying-freq", name: "varying frequency") { sin(5 * .pi * $0 * (1 + $0)) + $0 },
    ]

    /// Suites by command-line name.
    public static let suites: [String: [Relationship]] = ["reshef21": reshef21, "simon-tibshirani": simonTibshirani]

    /// A relationship of either suite by id.
    public static func named(_ id: String) -> Relationship? {
        reshef21.first { $0.id == id } ?? simonTibshirani.first { $0.id == id }
    }

    private static func cubic(_ x: Double) -> Double { 10 * pow(x - 0.6, 3) + 2 * x * x - 3 * x + 1.5 }
}

/// How noise is added (spec §4.4). In every model the noise level is the population
/// R² = corr(y_clean, y)², y_clean the noiseless value at the observed x (Kinney & Atwal's definition).
public enum NoiseModel: Sendable, Equatable {
    /// y = y_clean + σ ε, ε ~ N(0, 1): σ = sqrt(Var y_clean · (1 − R²) / R²).
    case gaussianY
    /// y = y_clean + U(−h, h): h = σ√3 with σ as for Gaussian noise.
    case uniformY
    /// y = y_clean + c · s(x) · ε, ε ~ N(0, 1), with s(x) = |f(x)| (`absF`) or x (`x`): closed form,
    /// c = sqrt(Var y_clean · (1 − R²) / (R² · E s(X)²)).
    case heteroscedastic(Heteroscedasticity)
    /// Noise on x and on y: y = ±f(clamp(x + η_x, 0, 1)) + η_y with η_x ~ N(0, share · τ² / 12) and
    /// η_y ~ N(0, (1 − share) · τ² · Var y_clean), the pair observed being (x, y). R² has no closed form, so the
    /// scale τ is found by bisection on the Monte-Carlo R² of a fixed-seed sample of 2^15 points, to
    /// |ΔR²| < 1e-3 (spec §4.4).
    case gaussianXY(share: Double)

    public enum Heteroscedasticity: String, Sendable, Equatable { case absF = "f", x }

    /// Parses `gaussian`, `uniform`, `hetero-f`, `hetero-x`, `xy` (share 0.5) or `xy:SHARE`.
    public init?(parsing text: String) {
        switch text {
        case "gaussian": self = .gaussianY
        case "uniform": self = .uniformY
        case "hetero-f": self = .heteroscedastic(.absF)
        case "hetero-x": self = .heteroscedastic(.x)
        case "xy": self = .gaussianXY(share: 0.5)
        default:
            guard text.hasPrefix("xy:"), let share = Double(text.dropFirst(3)), share >= 0, share <= 1 else { return nil }
            self = .gaussianXY(share: share)
        }
    }

    public var label: String {
        switch self {
        case .gaussianY: "gaussian"
        case .uniformY: "uniform"
        case .heteroscedastic(let kind): "hetero-\(kind.rawValue)"
        case .gaussianXY(let share): "xy:\(share)"
        }
    }
}

/// Draws noisy samples of a relationship at a target R² (x ~ U(0, 1); spec §4.4), with each sample's
/// realised R² = corr(y_clean, y)².
public struct NoisyRelationship: Sendable {
    public let relationship: Relationship
    public let r2: Double
    public let noise: NoiseModel
    /// The noise scale: σ (Gaussian / uniform on y), c (heteroscedastic) or τ (noise on x and y).
    public let scale: Double
    let variance: Double

    public init(_ relationship: Relationship, r2: Double, variance: Double, noise: NoiseModel = .gaussianY) {
        self.relationship = relationship
        self.r2 = r2
        self.noise = noise
        self.variance = variance
        guard r2 < 1 else { scale = 0; return }
        let sigma = (variance * (1 - r2) / r2).squareRoot()
        switch noise {
        case .gaussianY, .uniformY:
            scale = sigma
        case .heteroscedastic(let kind):
            let f = relationship.f
            let (_, meanSquare) = kind == .x ? Relationship.moments { $0 } : Relationship.moments { f($0) }
            scale = meanSquare > 0 ? sigma / meanSquare.squareRoot() : 0
        case .gaussianXY(let share):
            scale = Self.bisect(relationship, r2: r2, variance: variance, share: share)
        }
    }

    /// τ such that the Monte-Carlo R² of a fixed-seed sample (common random numbers for every τ) is within 1e-3
    /// of the target; R²(τ) decreases from 1 at τ = 0.
    static func bisect(_ relationship: Relationship, r2: Double, variance: Double, share: Double) -> Double {
        let m = 1 << 15
        var rng = Xoshiro256StarStar(seed: 0x5EED_CA11_B8A7E)
        var x = [Double](), ex = [Double](), ey = [Double](), sign = [Double]()
        for _ in 0..<m {
            x.append(rng.unit()); ex.append(rng.normal()); ey.append(rng.normal())
            sign.append(relationship.branches && rng.next() & 1 == 0 ? -1 : 1)
        }
        let clean = (0..<m).map { sign[$0] * relationship.f(x[$0]) }
        let sx = (share / 12).squareRoot(), sy = ((1 - share) * variance).squareRoot()
        func realised(_ tau: Double) -> Double {
            let y = (0..<m).map { i in
                sign[i] * relationship.f(min(1, max(0, x[i] + tau * sx * ex[i]))) + tau * sy * ey[i]
            }
            let r = pearson(clean, y)
            return r * r
        }
        var lo = 0.0, hi = 1.0
        while realised(hi) > r2, hi < 1e6 { lo = hi; hi *= 2 }
        var mid = (lo + hi) / 2
        for _ in 0..<100 {
            mid = (lo + hi) / 2
            let value = realised(mid)
            if abs(value - r2) < 1e-3 { break }
            if value > r2 { lo = mid } else { hi = mid }
        }
        return mid
    }

    /// n pairs and the realised R²; `independentX` pairs the noisy y with a fresh, independent x (the null with
    /// the alternative's marginals, Simon & Tibshirani's calibration; the realised R² is then that of the
    /// alternative sample the y came from).
    public func sample(n: Int, rng: inout Xoshiro256StarStar, independentX: Bool = false)
        -> (x: [Double], y: [Double], realisedR2: Double)
    {
        var x = [Double](repeating: 0, count: n), y = x, clean = x
        let f = relationship.f
        for i in 0..<n {
            let xi = rng.unit()
            let sign: Double = relationship.branches && rng.next() & 1 == 0 ? -1 : 1
            x[i] = xi
            clean[i] = sign * f(xi)
            switch noise {
            case .gaussianY: y[i] = clean[i] + scale * rng.normal()
            case .uniformY: y[i] = clean[i] + scale * 3.0.squareRoot() * (2 * rng.unit() - 1)
            case .heteroscedastic(let kind): y[i] = clean[i] + scale * (kind == .x ? xi : abs(f(xi))) * rng.normal()
            case .gaussianXY(let share):
                let shifted = min(1, max(0, xi + scale * (share / 12).squareRoot() * rng.normal()))
                y[i] = sign * f(shifted) + scale * ((1 - share) * variance).squareRoot() * rng.normal()
            }
        }
        let r = pearson(clean, y)
        if independentX { for i in 0..<n { x[i] = rng.unit() } }
        return (x, y, r * r)
    }
}

/// Pearson correlation, 0 when either side is constant (the realised R² of a noiseless constant stretch).
func pearson(_ a: [Double], _ b: [Double]) -> Double {
    let n = Double(a.count)
    let ma = a.reduce(0, +) / n, mb = b.reduce(0, +) / n
    var sab = 0.0, saa = 0.0, sbb = 0.0
    for i in a.indices {
        let da = a[i] - ma, db = b[i] - mb
        sab += da * db; saa += da * da; sbb += db * db
    }
    return saa > 0 && sbb > 0 ? sab / (saa * sbb).squareRoot() : 0
}

extension Xoshiro256StarStar {
    /// A standard normal deviate (Box–Muller on two 53-bit uniforms; the second deviate is discarded).
    public mutating func normal() -> Double {
        let u1 = 1 - unit()  // (0, 1]
        let u2 = unit()
        return (-2 * log(u1)).squareRoot() * cos(2 * .pi * u2)
    }
}
