import ArgumentParser
import Foundation

/// Wall-clock timing helpers for the benchmarks.
enum Timing {
    /// A benchmark's `--repetitions`: at least one sample to report, at most `maximum`.
    static func checkRepetitions(_ repetitions: Int, upTo maximum: Int = 1000) throws {
        guard (1...maximum).contains(repetitions) else { throw ValidationError("--repetitions must be between 1 and \(maximum)") }
    }

    /// Seconds taken by `body`.
    static func seconds(_ body: () throws -> Void) rethrows -> Double {
        let start = DispatchTime.now().uptimeNanoseconds
        try body()
        return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
    }

    /// Median seconds over `repetitions` timed runs after `warmup` untimed ones.
    static func median(repetitions: Int, warmup: Int = 1, _ body: () throws -> Void) rethrows -> Double {
        for _ in 0..<warmup { try body() }
        var samples: [Double] = []
        for _ in 0..<repetitions { samples.append(try seconds(body)) }
        return median(samples)
    }

    /// The median of `values` (the mean of the middle two for an even count; NaN for none).
    static func median(_ values: [Double]) -> Double {
        guard !values.isEmpty else { return .nan }
        let sorted = values.sorted(), middle = sorted.count / 2
        return sorted.count % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
    }
}

/// Fixed-width table printing.
struct TablePrinter {
    let columns: [(title: String, width: Int)]

    func header() {
        print(columns.map { $0.title.padding(toLength: $0.width, withPad: " ", startingAt: 0) }.joined(separator: " "))
        print(columns.map { String(repeating: "-", count: $0.width) }.joined(separator: " "))
    }

    func row(_ values: [String]) {
        print(zip(columns, values).map { column, value in
            value.count >= column.width ? value : value.padding(toLength: column.width, withPad: " ", startingAt: 0)
        }.joined(separator: " "))
    }
}

extension Double {
    func formatted(_ digits: Int) -> String { String(format: "%.\(digits)f", self) }
}
