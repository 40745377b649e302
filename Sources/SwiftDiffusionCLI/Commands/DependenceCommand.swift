import ArgumentParser
import Charts
import Dependence
import Foundation

/// `swiftdiffusion dependence ...`: dependence measures between two columns of a CSV file.
struct DependenceCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dependence",
        abstract: "Dependence measures (Pearson ... MICe, HHG) with permutation p-values.",
        subcommands: [DependenceMeasureCommand.self, DependenceDriversCommand.self, DependenceEquitabilityCommand.self, DependencePowerCommand.self]
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
            if case .constant(let variable) = error {
                throw CLIError("\(csv): column '\(variable == "x" ? x : y)' is constant: dependence is undefined")
            }
            throw CLIError("\(csv): columns '\(x)', '\(y)': \(error.description)")
        }

        var seen = Set<String>()
        let names = (measures.isEmpty ? MeasureCatalog.names : measures).filter { seen.insert($0).inserted }
        var entries: [(String, Result<TestResult, DependenceError>, Double)] = []
        for name in names {
            let measure = MeasureCatalog.measure(named: name)!
            let start = ContinuousClock.now
            let result: Result<TestResult, DependenceError>
            do { result = .success(try measure.test(sample, permutations: permutations, seed: seed)) } catch { result = .failure(error) }
            let elapsed = ContinuousClock.now - start
            entries.append((name, result, Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18))
        }
        if json {
            print(Self.json(entries))
        } else {
            print("n = \(sample.count), permutations = \(permutations), seed = \(seed)")
            for (name, result, _) in entries {
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

    /// {"pearson": {"value": ..., "p_value": ..., "permutations": N, "alternative": "two-sided", "seconds": t}, ...};
    /// a failed measure is {"error": "..."}; "seconds" is the measure's time including its permutations.
    /// Numbers are Swift's shortest round-trip form.
    static func json(_ entries: [(String, Result<TestResult, DependenceError>, Double)]) -> String {
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
        let body = entries.map { name, result, seconds -> String in
            switch result {
            case .success(let r):
                let measure = MeasureCatalog.measure(named: name)!
                let p = r.pValue.map { "\($0)" } ?? "null"
                return "  \(quoted(name)): {\"value\": \(r.value), \"p_value\": \(p), \"permutations\": \(r.permutations), "
                    + "\"alternative\": \(quoted(measure.alternative.rawValue)), \"seconds\": \(seconds)}"
            case .failure(let e):
                return "  \(quoted(name)): {\"error\": \(quoted(e.description))}"
            }
        }
        return "{\n" + body.joined(separator: ",\n") + "\n}"
    }
}

/// Options shared by `dependence equitability` and `dependence power` (definitions: docs/equitability.md).
struct HarnessOptions: ParsableArguments {
    @Option(help: "Pairs per sample.")
    var n = 100

    @Option(help: "Samples per (relationship, R²) cell.")
    var replicates = 50

    @Option(help: "Comma-separated, increasing R² levels in (0, 1].")
    var r2 = "0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1.0"

    @Option(name: .customLong("measure"),
            help: "A measure to include (repeatable); default: all. 'r2-oracle' scores each sample by its realised R² (harness self-test).")
    var measures: [String] = []

    @Option(help: "Relationship suite: reshef21 (Reshef et al. 2011, f1 ... f21) or simon-tibshirani (st-linear ... st-varying-freq).")
    var suite = "reshef21"

    @Option(help: "Comma-separated relationship ids from either suite (overrides --suite); default: the whole suite.")
    var relationships: String?

    @Option(help: "Noise model: gaussian, uniform, hetero-f (sd ∝ |f(x)|), hetero-x (sd ∝ x), xy or xy:SHARE (noise on x and y).")
    var noise = "gaussian"

    @Option(help: "Seed of the sample generator.")
    var seed: UInt64 = 1

    @Option(help: "Folder for the CSV table, the SVG chart and the summary.")
    var out: String

    func harness(null: EquitabilityHarness.Null) throws -> EquitabilityHarness {
        var h = EquitabilityHarness()
        h.n = n
        h.replicates = replicates
        h.null = null
        h.seed = seed
        let levels = r2.split(separator: ",").map { Double($0.trimmingCharacters(in: .whitespaces)) }
        guard !levels.isEmpty, levels.allSatisfy({ $0 != nil && $0! > 0 && $0! <= 1 }),
              zip(levels, levels.dropFirst()).allSatisfy({ $0! < $1! }) else {
            throw CLIError("--r2 must be comma-separated increasing numbers in (0, 1], got '\(r2)'")
        }
        h.r2Grid = levels.map { $0! }
        if let unknown = measures.first(where: { MeasureCatalog.measure(named: $0) == nil && $0 != EquitabilityHarness.oracle }) {
            throw CLIError("unknown measure '\(unknown)'; known: \(MeasureCatalog.names.joined(separator: ", ")), \(EquitabilityHarness.oracle)")
        }
        if !measures.isEmpty { h.measures = measures }
        guard let chosenSuite = Relationship.suites[suite] else {
            throw CLIError("--suite takes reshef21 or simon-tibshirani, got '\(suite)'")
        }
        h.relationships = chosenSuite
        if let relationships {
            let ids = relationships.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            let chosen = ids.compactMap { Relationship.named($0) }
            guard chosen.count == ids.count, !chosen.isEmpty else {
                throw CLIError("--relationships takes ids f1 ... f21 or st-..., got '\(relationships)'")
            }
            h.relationships = chosen
        }
        guard let model = NoiseModel(parsing: noise) else {
            throw CLIError("--noise takes gaussian, uniform, hetero-f, hetero-x, xy or xy:SHARE (0...1), got '\(noise)'")
        }
        h.noise = model
        guard replicates >= 2, replicates <= 100_000, n >= 10, n <= 20_000 else {
            throw CLIError("--replicates must be in 2...100000 and --n in 10...20000")
        }
        return h
    }

    func run(_ harness: EquitabilityHarness) throws -> EquitabilityHarness.Result {
        let result: EquitabilityHarness.Result
        do {
            result = try harness.run { done, total in
                FileHandle.standardError.write(Data("\r\(done)/\(total) relationships".utf8))
            }
        } catch { throw CLIError(error.description) }
        FileHandle.standardError.write(Data("\n".utf8))
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        return result
    }

    func write(_ text: String, _ name: String) throws {
        let path = (out as NSString).appendingPathComponent(name)
        do { try Data(text.utf8).write(to: URL(fileURLWithPath: path)) } catch { throw CLIError("cannot write \(path): \(error.localizedDescription)") }
        print("wrote \(path)")
    }

    /// Writes `chart` as `BASE.svg` and `BASE.png` (Charts' raster back end, same layout).
    func write(_ chart: SVGChart, base: String) throws {
        try write(chart.render(), base + ".svg")
        let path = (out as NSString).appendingPathComponent(base + ".png")
        do { try chart.png().write(to: URL(fileURLWithPath: path)) } catch { throw CLIError("cannot write \(path): \(error)") }
        print("wrote \(path)")
    }

    static func chart(_ result: EquitabilityHarness.Result, title: String, yLabel: String, yRange: ClosedRange<Double>?,
                      value: (Int, Int, Int) -> Double) -> SVGChart {
        let panels = result.measures.indices.map { m in
            SVGChart.Panel(
                title: result.measures[m],
                lines: result.relationships.indices.map { f in result.r2Grid.indices.map { r in (result.r2Grid[r], value(m, f, r)) } },
                yRange: yRange)
        }
        return SVGChart(title: title, xLabel: "R² of the noisy relationship", yLabel: yLabel, panels: panels,
                        legend: result.relationships.map { "\($0.id) \($0.name)" })
    }

    func header(_ result: EquitabilityHarness.Result, _ harness: EquitabilityHarness) -> String {
        "n = \(result.n), \(harness.replicates) replicates per cell, \(result.relationships.count) relationships, "
            + "noise \(harness.noise.label), α = \(result.alpha), R² grid \(result.r2Grid.map { String($0) }.joined(separator: ", ")), seed \(harness.seed)\n\n"
    }
}

/// `swiftdiffusion dependence equitability`: score against R² per relationship, interpretable intervals.
struct DependenceEquitabilityCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "equitability",
        abstract: "Score against R² per relationship; interpretable intervals, score spread and self-equitability per measure.")

    @OptionGroup var options: HarnessOptions

    func run() throws {
        var harness = try options.harness(null: .none)
        harness.selfEquitability = true
        let result = try options.run(harness)
        var csv = "measure,relationship,r2,median,q025,q975,mean,sd,realised_r2\n"
        for m in result.measures.indices {
            for f in result.relationships.indices {
                for r in result.r2Grid.indices {
                    let band = result.band(m, f, r), moments = result.meanAndSD(m, f, r)
                    let realised = result.cell(f, r).realisedR2
                    csv += "\(result.measures[m]),\(result.relationships[f].id),\(result.r2Grid[r]),\(result.median(m, f, r)),"
                        + "\(band.lo),\(band.hi),\(moments.mean),\(moments.sd),\(realised.reduce(0, +) / Double(realised.count))\n"
                }
            }
        }
        var summary = options.header(result, harness)
            + "| measure | mean interpretable interval (R²) | worst interpretable interval (R²) | max Δscore | mean Δscore "
            + "| self-eq. max \\|ΔT\\| exp | x³ | logit |\n|---|---|---|---|---|---|---|---|\n"
        for m in result.measures.indices {
            let w = result.interpretableIntervals(m)
            let spread = result.scoreSpread(m)
            let selfEq = EquitabilityHarness.transforms.indices.map { g in
                String(format: "%.3g", result.selfEquitability(m, transform: g)?.max ?? .nan)
            }
            summary += String(format: "| %@ | %.3f | %.3f | %.3f | %.3f | ", result.measures[m] as NSString, w.mean, w.worst,
                              spread.max()!, spread.reduce(0, +) / Double(spread.count)) + selfEq.joined(separator: " | ") + " |\n"
        }
        try options.write(csv, "equitability.csv")
        try options.write(HarnessOptions.chart(result, title: "Median score against R² (n = \(result.n))", yLabel: "median score (|T| for signed)",
                                               yRange: nil) { m, f, r in result.median(m, f, r) }, base: "equitability")
        try options.write(summary, "equitability-summary.md")
        print(summary, terminator: "")
    }
}

/// `swiftdiffusion dependence power`: power against R² per relationship and the power-equitability spread.
struct DependencePowerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "power",
        abstract: "Power against R² per relationship (null: same y, independent x; or permutations); power-equitability.")

    @OptionGroup var options: HarnessOptions

    @Option(name: .customLong("null-replicates"), help: "Null samples per cell for the (1 − α) critical value (independent-x null).")
    var nullReplicates = 100

    @Option(help: "Null: independent-x (the noisy y paired with a fresh x; critical value per cell) or permutation (a permutation test per sample).")
    var null = "independent-x"

    @Option(help: "Permutations per sample with --null permutation.")
    var permutations = 99

    @Option(help: "Tolerance δ of the verdict: power-equitable iff max Δβ ≤ δ + 2·max SE.")
    var tolerance = 0.1

    @Option(help: "Interval-estimation power (Reshef et al.): H0 R² ≤ x0 (least favourable relationship) against R² = x1; both on the --r2 grid.")
    var x0: Double?

    @Option(help: "See --x0.")
    var x1: Double?

    func run() throws {
        let mode: EquitabilityHarness.Null
        switch null {
        case "independent-x":
            guard nullReplicates >= 20 else { throw CLIError("--null-replicates must be >= 20") }
            mode = .independentX(replicates: nullReplicates)
        case "permutation":
            guard permutations >= 19 else { throw CLIError("--permutations must be >= 19") }
            mode = .permutation(permutations: permutations)
        default: throw CLIError("--null takes independent-x or permutation, got '\(null)'")
        }
        guard tolerance >= 0, tolerance <= 1 else { throw CLIError("--tolerance must be in [0, 1]") }
        let harness = try options.harness(null: mode)
        var intervalLevels: (Int, Int)?
        if x0 != nil || x1 != nil {
            guard let x0, let x1, let i0 = harness.r2Grid.firstIndex(of: x0), let i1 = harness.r2Grid.firstIndex(of: x1), i0 < i1 else {
                throw CLIError("--x0 and --x1 go together, must both be on the --r2 grid, x0 < x1")
            }
            intervalLevels = (i0, i1)
        }
        let result = try options.run(harness)
        var csv = "measure,relationship,r2,power,se,median\n"
        for m in result.measures.indices {
            for f in result.relationships.indices {
                for r in result.r2Grid.indices {
                    csv += "\(result.measures[m]),\(result.relationships[f].id),\(result.r2Grid[r]),\(result.power(m, f, r)!),\(result.powerSE(m, f, r)!),\(result.median(m, f, r))\n"
                }
            }
        }
        let nullText = null == "permutation" ? "permutation test, \(permutations) permutations" : "independent-x, \(nullReplicates) null samples per cell"
        var summary = options.header(result, harness) + "Null: \(nullText); verdict tolerance δ = \(tolerance).\n\n"
            + "| measure | mean power | max Δβ over R² | ∫Δβ dR² | r₅₀ spread (never 0.5) | power-equitable (δ) | worst interpretable interval (R²) |\n"
            + "|---|---|---|---|---|---|---|\n"
        for m in result.measures.indices {
            var total = 0.0
            for f in result.relationships.indices { for r in result.r2Grid.indices { total += result.power(m, f, r)! } }
            let spread = result.powerSpread(m)!
            let r50 = result.r50Spread(m)!
            let w = result.interpretableIntervals(m)
            summary += String(format: "| %@ | %.3f | %.3f | %.3f | %.3f (%d) | %@ | %.3f |\n", result.measures[m] as NSString,
                              total / Double(result.relationships.count * result.r2Grid.count),
                              spread.max() ?? 0, result.powerSpreadIntegral(m)!, r50.spread, r50.unreached,
                              (result.isPowerEquitable(m, tolerance: tolerance)! ? "yes" : "no") as NSString, w.worst)
        }
        summary += "\nMean power over the R² grid, per relationship:\n\n| relationship | "
            + result.measures.joined(separator: " | ") + " |\n|---|" + String(repeating: "---|", count: result.measures.count) + "\n"
        for f in result.relationships.indices {
            let row = result.measures.indices.map { m in
                String(format: "%.2f", result.r2Grid.indices.map { result.power(m, f, $0)! }.reduce(0, +) / Double(result.r2Grid.count))
            }
            summary += "| \(result.relationships[f].id) \(result.relationships[f].name) | " + row.joined(separator: " | ") + " |\n"
        }
        if let (i0, i1) = intervalLevels {
            summary += "\nInterval-estimation power, H0 R² ≤ \(result.r2Grid[i0]) against R² = \(result.r2Grid[i1]) (min / mean / max over relationships):\n\n"
                + "| measure | min | mean | max |\n|---|---|---|---|\n"
            for m in result.measures.indices {
                let p = result.intervalPower(m, x0: i0, x1: i1)
                summary += String(format: "| %@ | %.2f | %.2f | %.2f |\n", result.measures[m] as NSString, p.min()!,
                                  p.reduce(0, +) / Double(p.count), p.max()!)
            }
        }
        try options.write(csv, "power.csv")
        try options.write(HarnessOptions.chart(result, title: "Power against R² (n = \(result.n), α = \(result.alpha))", yLabel: "power",
                                               yRange: 0...1) { m, f, r in result.power(m, f, r)! }, base: "power")
        try options.write(summary, "power-summary.md")
        print(summary, terminator: "")
    }
}

/// `swiftdiffusion dependence drivers`: which columns of a CSV file drive a target column.
struct DependenceDriversCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "drivers",
        abstract: "Rank CSV columns by their dependence with a target column (permutation p-values, Benjamini-Hochberg q).",
        discussion: DriverScreen.caveat)

    @Option(help: "The CSV file (RFC 4180, header line first).")
    var csv: String

    @Option(help: "The target column (latency, cache miss, ...).")
    var target: String

    @Option(name: .customLong("feature"), help: "A feature column (repeatable); default: every other column.")
    var features: [String] = []

    @Option(name: .customLong("measure"), help: "A measure (repeatable); default: spearman, dcor, xi. The first ranks.")
    var measures: [String] = []

    @Option(help: "Permutations for each p-value.")
    var permutations = 199

    @Option(help: "Seed of the permutation generator.")
    var seed: UInt64 = 0

    @Option(name: .customLong("max-bytes"), help: "Refuse CSV files larger than this many bytes.")
    var maxBytes = 1 << 30

    @Flag(help: "Print JSON: {feature: {measure: {value, p_value, q_value} | {error}}}.")
    var json = false

    func run() throws {
        let names = measures.isEmpty ? ["spearman", "dcor", "xi"] : measures
        let instances = try names.map { name -> any DependenceMeasure in
            guard let m = MeasureCatalog.measure(named: name) else {
                throw CLIError("unknown measure '\(name)'; known: \(MeasureCatalog.names.joined(separator: ", "))")
            }
            return m
        }
        guard permutations >= 1, permutations <= 1_000_000 else { throw CLIError("--permutations must be in 1...1000000") }
        let url = URL(fileURLWithPath: csv)
        guard let size = (try? FileManager.default.attributesOfItem(atPath: url.path))?[.size] as? NSNumber else {
            throw CLIError("no such file: \(csv)")
        }
        guard size.intValue <= maxBytes else { throw CLIError("\(csv): \(size.intValue) bytes, more than --max-bytes \(maxBytes)") }
        let bytes: [UInt8]
        do { bytes = [UInt8](try Data(contentsOf: url)) } catch { throw CLIError("cannot read \(csv): \(error.localizedDescription)") }
        let limits = CSVColumns.Limits(maxBytes: maxBytes)
        let columns: [[Double]]
        let featureNames: [String]
        do {
            featureNames = features.isEmpty ? try CSVColumns.header(bytes, limits: limits).filter { $0 != target } : features
            guard !featureNames.isEmpty else { throw CLIError("\(csv): no feature columns besides '\(target)'") }
            columns = try CSVColumns.read(bytes, columns: [target] + featureNames, limits: limits)
        } catch let error as CSVColumns.Failure {
            throw CLIError("\(csv): \(error.description)")
        }
        let entries = DriverScreen.screen(
            target: columns[0], features: featureNames.enumerated().map { ($1, columns[$0 + 1]) },
            measures: instances, permutations: permutations, seed: seed)
        // Rank features by the first measure's value (|T| for signed ones); failed features last.
        func key(_ feature: String) -> Double {
            guard let e = entries.first(where: { $0.feature == feature && $0.measure == names[0] }),
                case .success(let r) = e.result else { return -.infinity }
            return abs(r.value)
        }
        let ranked = featureNames.sorted { key($0) > key($1) }
        func describe(_ error: DependenceError) -> String {
            if case .constant(let v) = error { return v == "y" ? "target '\(target)' is constant" : "constant column" }
            return error.description
        }
        if json {
            var lines: [String] = []
            for feature in ranked {
                let cells = entries.filter { $0.feature == feature }.map { e -> String in
                    switch e.result {
                    case .success(let r):
                        return "\"\(e.measure)\": {\"value\": \(r.value), \"p_value\": \(r.pValue ?? .nan), \"q_value\": \(e.q ?? 1)}"
                    case .failure(let error):
                        return "\"\(e.measure)\": {\"error\": \"\(describe(error).replacingOccurrences(of: "\"", with: "'"))\"}"
                    }
                }
                let escaped = feature.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
                lines.append("  \"\(escaped)\": {" + cells.joined(separator: ", ") + "}")
            }
            print("{\n" + lines.joined(separator: ",\n") + "\n}")
        } else {
            print("target '\(target)', n = \(columns[0].count), \(permutations) permutations; ranked by \(names[0])")
            print("feature".padding(toLength: 24, withPad: " ", startingAt: 0)
                + names.map { $0.padding(toLength: 28, withPad: " ", startingAt: 0) }.joined())
            for feature in ranked {
                var line = String(feature.prefix(23)).padding(toLength: 24, withPad: " ", startingAt: 0)
                for e in entries where e.feature == feature {
                    switch e.result {
                    case .success(let r):
                        line += String(format: "%9.4f p=%-6.3g q=%-6.3g  ", r.value, r.pValue ?? .nan, e.q ?? 1)
                    case .failure(let error):
                        line += String(describe(error).prefix(26)).padding(toLength: 28, withPad: " ", startingAt: 0)
                    }
                }
                print(line)
            }
            print("note: " + DriverScreen.caveat)
        }
    }
}
