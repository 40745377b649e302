/// Why a dependence measure refused its input. Every measure validates its input the same way (see
/// `PairedSample`), so bad data gives one of these, never a crash and never a silently returned NaN.
public enum DependenceError: Error, Equatable, Sendable, CustomStringConvertible {
    /// No pairs at all.
    case empty
    /// `x` and `y` have different lengths.
    case lengthMismatch(x: Int, y: Int)
    /// Fewer pairs than the measure needs (3 for every measure; k + 1 for KSG).
    case tooFewPoints(measure: String, n: Int, minimum: Int)
    /// A NaN or an infinity at `index` (0-based) of `variable` ("x" or "y").
    case nonFinite(variable: String, index: Int)
    /// Every value of `variable` is the same: no measure of dependence is defined.
    case constant(variable: String)
    /// More pairs than the measure's quadratic (or worse) algorithm is allowed to take.
    case tooLarge(measure: String, n: Int, limit: Int)
    /// A tuning parameter out of its range.
    case invalidParameter(String)
    /// The measure produced a non-finite value on valid input (a defect; reported, never returned).
    case numericalFailure(measure: String)

    public var description: String {
        switch self {
        case .empty: return "no data: x and y are empty"
        case let .lengthMismatch(x, y): return "x has \(x) values but y has \(y)"
        case let .tooFewPoints(measure, n, minimum): return "\(measure) needs at least \(minimum) pairs, got \(n)"
        case let .nonFinite(variable, index): return "\(variable)[\(index)] is not a finite number"
        case let .constant(variable): return "\(variable) is constant: dependence is undefined"
        case let .tooLarge(measure, n, limit):
            return "\(measure) is limited to \(limit) pairs (its cost grows at least quadratically), got \(n); subsample first"
        case let .invalidParameter(text): return text
        case let .numericalFailure(measure): return "\(measure) produced a non-finite value on valid input"
        }
    }
}

/// Validated paired observations: same length, at least 3 pairs, all finite, neither variable constant.
public struct PairedSample: Sendable {
    public let x: [Double]
    public let y: [Double]
    public var count: Int { x.count }

    public init(x: [Double], y: [Double]) throws(DependenceError) {
        if x.isEmpty && y.isEmpty { throw .empty }
        guard x.count == y.count else { throw .lengthMismatch(x: x.count, y: y.count) }
        guard x.count >= 3 else { throw .tooFewPoints(measure: "every measure", n: x.count, minimum: 3) }
        if let i = x.firstIndex(where: { !$0.isFinite }) { throw .nonFinite(variable: "x", index: i) }
        if let i = y.firstIndex(where: { !$0.isFinite }) { throw .nonFinite(variable: "y", index: i) }
        if x.allSatisfy({ $0 == x[0] }) { throw .constant(variable: "x") }
        if y.allSatisfy({ $0 == y[0] }) { throw .constant(variable: "y") }
        self.x = x
        self.y = y
    }

    /// For the permutation engine: `y` already belongs to a validated sample (it is a permutation of one).
    init(unchecked x: [Double], _ y: [Double]) {
        self.x = x
        self.y = y
    }
}
