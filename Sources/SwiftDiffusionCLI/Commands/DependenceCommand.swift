import ArgumentParser
import Dependence
import Foundation

/// `swiftdiffusion dependence ...`: dependence measures between two columns of a CSV file.
struct DependenceCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dependence",
        abstract: "Dependence measures (Pearson ... MICe, HHG) with permutation p-values.",
        subcommands: [DependenceMeasureCommand.self]
    )
}

/// `swiftdiffusion dependence measure --csv FILE --x COLUMN --y COLUMN [--measure NAME ...] [--permutations N] --json`
struct DependenceMeasureCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "measure",
        abstract: "Measure the dependence of column y on column x of a CSV file, with permutation p-values.",
        discussion: """
            Measures: \(MeasureCatalog.names.joined(separator: ", ")) (default: all). The CSV file has a header \
            line; the two columns must hold finite numbers in every record. p-values come from --permutations \
            random permutations of y (xoshiro256** seeded by --seed), p = (1 + #{at least as extreme}) / (1 + N); \
            two-sided (|T|) for pearson, spearman and kendall, one-sided for the others. A measure whose size \
            limit the data exceed (hsic 10,000 pairs, hhg 5,000, mic/mice/tice 20,000) reports an error entry \
            and the command exits with status 1 after printing the others.
            """
    )

    @Option(help: "The CSV file (RFC 4180, header line first).")
    var csv: String

    @Option(help: "Name of the column holding x.")
    var x: String

    @Option(help: "Name of the column holding y.")
    var y: String

    @Option(name: .customLong("measure"), help: "A measure to compute (repeatable); default: all.")
    var measures: [String] = []

    @Option(help: "Permutations for each p-value (0: no p-values).")
    var permutations = 999

    @Option(help: "Seed of the permutation generator.")
    var seed: UInt64 = 0

    @Option(name: .customLong("max-bytes"), help: "Refuse CSV files larger than this many bytes.")
    var maxBytes = 1 << 30

    @Flag(help: "Print one JSON object keyed by measure name.")
    var json = false

    func validate() throws {
        if let unknown = measures.first(where: { MeasureCatalog.measure(named: $0) == nil }) {
            throw ValidationError("unknown measure '\(unknown)'; known: \(MeasureCatalog.names.joined(separator: ", "))")
        }
        if permutations < 0 || permutations > 10_000_000 { throw ValidationError("--permutations must be in 0...10000000") }
        if maxBytes < 1 { throw ValidationError("--max-bytes must be positive") }
    }

    func run() throws {
        let url = URL(fileURLWithPath: csv)
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: url.path),
            let size = attributes[.size] as? NSNumber
        else { throw CLIError("no such file: \(csv)") }
        guard size.intValue <= maxBytes else {
            throw CLIError("\(csv): \(size.intValue) bytes, more than --max-bytes \(maxBytes)")
        }
        let bytes: [UInt8]
        do { bytes = [UInt8](try Data(contentsOf: url)) } catch { throw CLIError("cannot read \(csv): \(error.localizedDescription)") }
        let columns: [[Double]]
        do {
            columns = try CSVColumns.read(bytes, columns: [x, y], limits: CSVColumns.Limits(maxBytes: maxBytes))
        } catch { throw CLIError("\(csv): \(error.description)") }
        let sample: PairedSample
        do { sample = try PairedSample(x: columns[0], y: columns[1]) } catch {
            throw CLIError("\(csv): columns '\(x)', '\(y)': \(error.description)")
        }

        var seen = Set<String>()
        let names = (measures.isEmpty ? MeasureCatalog.names : measures).filter { seen.insert($0).inserted }
        var entries: [(String, Result<TestResult, DependenceError>)] = []
        for name in names {
            let measure = MeasureCatalog.measure(named: name)!
            do {
                entries.append((name, .success(try measure.test(sample, permutations: permutations, seed: seed))))
            } catch {
                entries.append((name, .failure(error)))
            }
        }
        if json {
            print(Self.json(entries))
        } else {
            print("n = \(sample.count), permutations = \(permutations), seed = \(seed)")
            for (name, result) in entries {
                switch result {
                case .success(let r):
                    let p = r.pValue.map { String(format: "%.4g", $0) } ?? "-"
                    print(name.padding(toLength: 10, withPad: " ", startingAt: 0) + String(format: "%14.6g", r.value) + "   p = " + p)
                case .failure(let e):
                    print(name.padding(toLength: 10, withPad: " ", startingAt: 0) + "error: \(e.description)")
                }
            }
        }
        let failed = entries.filter { if case .failure = $0.1 { return true } else { return false } }.map(\.0)
        if !failed.isEmpty { throw CLIError("\(failed.joined(separator: ", ")) could not be computed (see above)") }
    }

    /// {"pearson": {"value": ..., "p_value": ..., "permutations": N, "alternative": "two-sided"}, ...};
    /// a failed measure is {"error": "..."}. Numbers are Swift's shortest round-trip form.
    static func json(_ entries: [(String, Result<TestResult, DependenceError>)]) -> String {
        func quoted(_ s: String) -> String {
            var out = "\""
            for scalar in s.unicodeScalars {
                switch scalar {
                case "\"": out += "\\\""
                case "\\": out += "\\\\"
                case "\n": out += "\\n"
                case _ where scalar.value < 0x20: out += String(format: "\\u%04x", scalar.value)
                default: out.unicodeScalars.append(scalar)
                }
            }
            return out + "\""
        }
        let body = entries.map { name, result -> String in
            switch result {
            case .success(let r):
                let measure = MeasureCatalog.measure(named: name)!
                let p = r.pValue.map { "\($0)" } ?? "null"
                return "  \(quoted(name)): {\"value\": \(r.value), \"p_value\": \(p), \"permutations\": \(r.permutations), "
                    + "\"alternative\": \(quoted(measure.alternative.rawValue))}"
            case .failure(let e):
                return "  \(quoted(name)): {\"error\": \(quoted(e.description))}"
            }
        }
        return "{\n" + body.joined(separator: ",\n") + "\n}"
    }
}
