import ArgumentParser
import Dependence
import Foundation
import Traces

/// `swiftdiffusion trace ...`: the trace format's tools (docs/characterization.md).
struct TraceCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "trace",
        abstract: "Request traces: export the job store, generate synthetic traces, replay them against serve, analyze them, simulate replicas.",
        subcommands: [
            TraceExportCommand.self, TraceGenerateCommand.self, TraceReplayCommand.self, TraceAnalyzeCommand.self,
            TraceSimulateCommand.self,
        ])
}

private func writeOut(_ records: [TraceRecord], to out: String?) throws {
    if let out {
        try TraceIO.write(records, to: out)
    } else {
        FileHandle.standardOutput.write(Data(TraceIO.jsonl(records).utf8))
    }
}

private func parseList(_ text: String, _ option: String) throws -> [Double] {
    let values = text.split(separator: ",").map { Double($0.trimmingCharacters(in: .whitespaces)) }
    guard !values.isEmpty, values.allSatisfy({ $0 != nil }) else { throw CLIError("\(option) must be comma-separated numbers, got \"\(text)\"") }
    return values.map { $0! }
}

struct TraceExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export", abstract: "The server's job store (SQLite, opened read-only) as a trace (JSONL, or CSV for --out *.csv).")

    @Option(help: "The job store, e.g. the serve data directory's jobs.sqlite.")
    var store: String

    @Option(help: "Write the trace here (.csv: CSV) instead of to stdout as JSONL.")
    var out: String?

    @Option(help: "Service name for jobs without metadata.service.")
    var service = "local"

    @Option(help: "Instance name for jobs without metadata.instance (default: this host's name).")
    var instance: String?

    @Option(help: "At most this many jobs, oldest first.")
    var limit = 1_000_000

    func run() throws {
        do {
            try writeOut(try TraceExport.export(storePath: store, service: service, instance: instance, limit: limit), to: out)
        } catch let error as TraceError {
            throw CLIError(error.description)
        }
    }
}

struct TraceGenerateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "A synthetic production-like trace: Zipf LoRA popularity, skewed ControlNets, services with their own adapters, diurnal arrivals.",
        discussion: "Every parameter and its default is documented in docs/characterization.md. Same parameters and seed, same file.")

    @Option(help: "Number of requests.") var requests: Int
    @Option(help: "Seed.") var seed: UInt64
    @Option(help: "Output file (.csv: CSV, otherwise JSONL).") var out: String
    @Option(help: "Services (A, B, ...).") var services = 2
    @Option(help: "Relative request share per service, comma-separated (default: equal).") var serviceShares: String?
    @Option(help: "Serving instances per service.") var instances = 8
    @Option(help: "Base models per service.") var baseModels = 3
    @Option(help: "Zipf exponent of base-model popularity.") var baseModelZipf = 1.5
    @Option(help: "LoRAs per service.") var loras = 1_000
    @Option(help: "Zipf exponent of LoRA popularity.") var loraZipf = 1.1
    @Option(help: "ControlNets per service.") var controlnets = 12
    @Option(help: "Zipf exponent of ControlNet popularity.") var controlnetZipf = 2.0
    @Option(help: "P(0,1,2,... LoRAs per request), comma-separated.") var loraCounts = "0.40,0.40,0.15,0.05"
    @Option(help: "P(0,1,2,... ControlNets per request), comma-separated.") var controlnetCounts = "0.55,0.35,0.08,0.02"
    @Option(help: "Trace length in days.") var days = 1.0
    @Option(help: "Diurnal amplitude a: rate ∝ 1 + a·cos(2π(hour − peak)/24).") var diurnalAmplitude = 0.6
    @Option(help: "Hour of the daily peak.") var peakHour = 14.0
    @Option(help: "Per-instance LRU adapter cache size of the latency model.") var cacheSize = 4
    @Option(help: "Latency model: seconds per step at 1024x1024.") var secondsPerStep = 0.05
    @Option(help: "Latency model: seconds to load a LoRA that missed the cache.") var loraLoadSeconds = 2.5
    @Option(help: "Latency model: seconds to load a ControlNet that missed the cache.") var controlnetLoadSeconds = 0.28

    func run() throws {
        var p = TraceGenerator.Parameters(requests: requests, seed: seed)
        p.services = services
        if let serviceShares { p.serviceShares = try parseList(serviceShares, "--service-shares") }
        p.instancesPerService = instances
        p.baseModelsPerService = baseModels
        p.baseModelZipf = baseModelZipf
        p.lorasPerService = loras
        p.loraZipf = loraZipf
        p.controlnetsPerService = controlnets
        p.controlnetZipf = controlnetZipf
        p.loraCountProbabilities = try parseList(loraCounts, "--lora-counts")
        p.controlnetCountProbabilities = try parseList(controlnetCounts, "--controlnet-counts")
        p.days = days
        p.diurnalAmplitude = diurnalAmplitude
        p.peakHour = peakHour
        p.cacheCapacity = cacheSize
        p.secondsPerStep = secondsPerStep
        p.loraLoadSeconds = loraLoadSeconds
        p.controlnetLoadSeconds = controlnetLoadSeconds
        do {
            try TraceIO.write(try TraceGenerator(p).generate(), to: out)
        } catch let error as TraceError {
            throw CLIError(error.description)
        }
    }
}

struct TraceAnalyzeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "analyze",
        abstract: "The paper's characterization of a trace: add-on shares, adapters per request, popularity, unique adapters per instance, LRU/LFU/Belady miss rates.",
        discussion: "Writes summary.md, CSV tables and SVG charts into --out. --drivers adds drivers.md/drivers.csv. " + DriverScreen.caveat)

    @Option(help: "The trace (JSONL, or CSV when it ends in .csv).") var trace: String
    @Option(help: "Output directory.") var out: String
    @Flag(help: "Also rank request features by their dependence on latency and on cache misses.") var drivers = false
    @Option(help: "--drivers: requests screened (seeded uniform sample).") var driverSample = 2_000
    @Option(help: "--drivers: permutations per p-value.") var permutations = 199
    @Option(name: .customLong("measure"), help: "--drivers: a measure (repeatable; default spearman, dcor, xi, pearson, kendall; the first ranks).")
    var measures: [String] = []
    @Option(help: "--drivers: per-instance LRU cache size behind cache_hit and cache_misses.") var cacheSize = 4
    @Option(help: "--drivers: seed of the sample and the permutations.") var seed: UInt64 = 0

    func run() throws {
        do {
            let start = Date()
            let records = try TraceIO.read(path: trace)
            let loaded = Date()
            let analysis = TraceAnalysis(records)
            let files = try analysis.write(to: out)
            let analysed = Date()
            var message = "\(records.count) requests: read \(String(format: "%.2f", loaded.timeIntervalSince(start))) s, analysed and wrote \(files.count) files in "
                + "\(String(format: "%.2f", analysed.timeIntervalSince(loaded))) s\n"
            if drivers {
                var options = TraceDrivers.Options()
                options.sample = driverSample
                options.permutations = permutations
                if !measures.isEmpty { options.measures = measures }
                options.cacheCapacity = cacheSize
                options.seed = seed
                let result = try TraceDrivers(records, options: options)
                let dir = URL(fileURLWithPath: out)
                try Data(result.markdown().utf8).write(to: dir.appendingPathComponent("drivers.md"))
                try Data(result.csv().utf8).write(to: dir.appendingPathComponent("drivers.csv"))
                message += "drivers: \(String(format: "%.2f", Date().timeIntervalSince(analysed))) s\n"
            }
            FileHandle.standardError.write(Data(message.utf8))
        } catch let error as TraceError {
            throw CLIError(error.description)
        }
    }
}

struct TraceReplayCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "replay",
        abstract: "Bounded open-loop replay of a trace against a running serve on this machine, recording latency and outcome.")

    @Option(help: "The server, e.g. http://127.0.0.1:7860 (loopback only).") var url: String
    @Option(help: "The trace to replay (JSONL or .csv).") var trace: String
    @Option(help: "Time compression: 2 sends twice as fast as the trace's timestamps.") var speed = 1.0
    @Option(help: "Output trace with latency and outcome (default: stdout as JSONL).") var out: String?
    @Option(help: "Replay only the first N requests.") var limit: Int?
    @Option(help: "At most this many jobs outstanding; sending waits beyond.") var maxInFlight = 32
    @Option(help: "Seconds the whole replay may take; unfinished jobs are recorded as lost.") var timeout = 3_600.0
    @Option(help: "Override every request's width.") var width: Int?
    @Option(help: "Override every request's height.") var height: Int?
    @Option(help: "Override every request's steps.") var steps: Int?
    @Option(help: "Seconds between polls of an outstanding job (the latency recorded is the server's queue + total).")
    var pollSeconds = 0.1

    func run() async throws {
        var options = TraceReplay.Options()
        options.pollSeconds = pollSeconds
        options.speed = speed
        options.limit = limit
        options.maxInFlight = maxInFlight
        options.timeoutSeconds = timeout
        options.width = width
        options.height = height
        options.steps = steps
        do {
            let replay = try TraceReplay(url: url, options: options)
            let result = try await replay.run(try TraceIO.read(path: trace))
            try writeOut(result, to: out)
            let counts = Dictionary(grouping: result, by: \.outcome).mapValues(\.count).sorted { $0.key < $1.key }
            FileHandle.standardError.write(Data("\(result.count) requests: \(counts.map { "\($0.key) \($0.value)" }.joined(separator: ", "))\n".utf8))
        } catch let error as TraceError {
            throw CLIError(error.description)
        }
    }
}
