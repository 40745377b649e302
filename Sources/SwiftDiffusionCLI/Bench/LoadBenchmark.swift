import ArgumentParser
import Foundation
import Hummingbird
import Logging
import Server
import ServiceLifecycle
import Serving

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// `swiftdiffusion bench load`: drives a server's native job API over plain HTTP and reports what admission
/// control did with the load: accepted (202), refused (429 with Retry-After), completed, failed, lost (accepted
/// but never finished), duplicated, and latency percentiles.
///
/// Capacity is measured, not assumed: `--mode calibrate` (the default) first runs a closed loop (`--concurrency`
/// clients, each submitting its next job when the previous one finishes: enough of them keep the single runner
/// busy without overflowing the queue) to get jobs/s, then an open loop (jobs arrive on a fixed schedule whatever
/// happens to them) at `--load-factor` times that rate. Without `--url` it starts an in-process server on loopback over `--models` or the embedded
/// model.
struct LoadBenchmarkCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "load",
        abstract: "Load-test a server's native job API: closed loop for capacity, then open loop at N x capacity."
    )

    @Option(help: "Server base URL (default: start an in-process server on loopback).")
    var url: String?

    @Option(help: "Bearer token for --url.")
    var token: String?

    @Option(
        name: .customLong("models"), help: "Models folder for the in-process server (repeatable; default: the embedded model).")
    var models: [String] = []

    @Option(name: .customLong("queue-capacity"), help: "Queue capacity of the in-process server.")
    var queueCapacity = 4

    @Option(help: "calibrate (closed loop, then open loop at --load-factor x the measured rate), closed, or open.")
    var mode = "calibrate"

    @Option(help: "Closed loop: concurrent clients (keep it at most queue capacity + 1, so the queue never refuses them).")
    var concurrency = 4

    @Option(help: "Open loop: arrivals per second (mode open).")
    var rate: Double?

    @Option(name: .customLong("load-factor"), help: "Calibrate: open-loop rate as a multiple of the measured capacity.")
    var loadFactor = 2.0

    @Option(help: "Seconds of arrivals per phase.")
    var duration = 10.0

    @Option(help: "Seconds to wait for accepted jobs after arrivals stop; unfinished ones count as lost.")
    var drain = 60.0

    @Option(help: "Model id (default: the server's default model).")
    var model: String?

    @Option(help: "Image width and height.")
    var size = 32

    @Option(help: "Denoising steps per job.")
    var steps = 3

    @Option(help: "Images per job.")
    var n = 1

    @Flag(help: "Print one JSON line per phase.")
    var json = false

    func validate() throws {
        guard ["calibrate", "closed", "open"].contains(mode) else {
            throw ValidationError("--mode must be calibrate, closed or open")
        }
        guard mode != "open" || (rate ?? 0) > 0 else { throw ValidationError("--mode open needs --rate > 0") }
        guard concurrency >= 1, duration > 0, drain >= 0, loadFactor > 0, queueCapacity >= 1, n >= 1 else {
            throw ValidationError("--concurrency, --queue-capacity and --n must be >= 1; --duration, --load-factor > 0")
        }
    }

    func run() async throws {
        if let url {
            guard let base = URL(string: url) else { throw ValidationError("invalid --url \(url)") }
            try await runPhases(LoadClient(base: base, token: token, timeout: duration + drain + 30), target: url)
            return
        }
        let server = try await InProcessServer.start(models: models, queueCapacity: queueCapacity)
        do {
            try await runPhases(
                LoadClient(base: server.url, token: nil, timeout: duration + drain + 30),
                target: "\(server.url) (in-process, queue capacity \(queueCapacity))")
        } catch {
            await server.stop()
            throw error
        }
        await server.stop()
    }

    private func runPhases(_ client: LoadClient, target: String) async throws {
        if !json { print("SwiftDiffusion bench load: \(target), \(size)x\(size), \(steps) steps, n=\(n)") }
        var body: [String: Any] = [
            "prompt": "a red circle on a blue background", "width": size, "height": size, "steps": steps, "n": n,
        ]
        if let model { body["model"] = model }
        let generator = LoadGenerator(client: client, body: body, images: n, drain: drain)
        // One job first: loads the model, so it is not in the numbers.
        let warmUp = await generator.closedLoop(concurrency: 1, duration: 0)
        guard warmUp.completed == 1 else { throw CLIError("the warm-up job did not complete: \(warmUp.summary)") }
        switch mode {
        case "closed":
            report(
                "closed loop, \(concurrency) clients", await generator.closedLoop(concurrency: concurrency, duration: duration))
        case "open":
            report("open loop, \(rate!.formatted(2)) jobs/s", await generator.openLoop(rate: rate!, duration: duration))
        default:
            let closed = await generator.closedLoop(concurrency: concurrency, duration: duration)
            report("closed loop, \(concurrency) clients (capacity)", closed)
            guard closed.throughput > 0 else { throw CLIError("no job completed in the closed loop") }
            let rate = closed.throughput * loadFactor
            report(
                "open loop at \(loadFactor.formatted(1))x capacity, \(rate.formatted(2)) jobs/s",
                await generator.openLoop(rate: rate, duration: duration))
        }
    }

    private func report(_ phase: String, _ result: LoadResult) {
        if json {
            var object = result.dictionary
            object["phase"] = phase
            if let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) {
                print(String(decoding: data, as: UTF8.self))
            }
            return
        }
        print("\n\(phase): \(result.elapsed.formatted(1)) s")
        print(
            "  submitted \(result.submitted)  accepted (202) \(result.accepted)  rejected (429) \(result.rejected) (Retry-After on \(result.retryAfterSeen))  other errors \(result.errors)"
        )
        print("  completed \(result.completed)  failed \(result.failed)  lost \(result.lost)  duplicates \(result.duplicates)")
        print("  throughput \(result.throughput.formatted(2)) jobs/s")
        print(
            "  submit -> completed  p50 \(ms(result.endToEnd, 0.5))  p90 \(ms(result.endToEnd, 0.9))  p99 \(ms(result.endToEnd, 0.99))"
        )
        print(
            "  submit call          p50 \(ms(result.submitLatency, 0.5))  p90 \(ms(result.submitLatency, 0.9))  p99 \(ms(result.submitLatency, 0.99))"
        )
        if let example = result.errorExamples.first { print("  first error: \(example)") }
    }

    private func ms(_ values: [Double], _ quantile: Double) -> String {
        guard let value = LoadResult.percentile(values, quantile) else { return "-" }
        return "\((value * 1000).formatted(1)) ms"
    }
}

/// What happened to one submission.
struct LoadOutcome: Sendable {
    /// HTTP status of the submission; 0 when the request itself failed.
    var status = 0
    var retryAfter = false
    var id: String?
    var submitSeconds = 0.0
    /// completed, failed or cancelled; nil when the job never finished (lost).
    var terminal: String?
    var terminalEvents = 0
    var images = 0
    var endToEndSeconds: Double?
    var error: String?
}

/// The numbers of one phase.
struct LoadResult {
    var outcomes: [LoadOutcome]
    var elapsed: Double
    var images: Int

    var submitted: Int { outcomes.count }
    var accepted: Int { outcomes.filter { $0.status == 202 }.count }
    var rejected: Int { outcomes.filter { $0.status == 429 }.count }
    var retryAfterSeen: Int { outcomes.filter { $0.status == 429 && $0.retryAfter }.count }
    var errors: Int { outcomes.filter { ![202, 429].contains($0.status) }.count }
    var completed: Int { outcomes.filter { $0.status == 202 && $0.terminal == "completed" }.count }
    var failed: Int { outcomes.filter { $0.status == 202 && ($0.terminal == "failed" || $0.terminal == "cancelled") }.count }
    var lost: Int { outcomes.filter { $0.status == 202 && $0.terminal == nil }.count }
    /// An id accepted twice, a job with more than one terminal event, or more images than asked for.
    var duplicates: Int {
        let ids = outcomes.compactMap(\.id)
        return ids.count - Set(ids).count + outcomes.filter { $0.terminalEvents > 1 || $0.images > images }.count
    }
    var throughput: Double { elapsed > 0 ? Double(completed) / elapsed : 0 }
    var endToEnd: [Double] { outcomes.compactMap { $0.terminal == "completed" ? $0.endToEndSeconds : nil } }
    var submitLatency: [Double] { outcomes.filter { $0.status != 0 }.map(\.submitSeconds) }
    var errorExamples: [String] { outcomes.compactMap(\.error) }

    var summary: String { "submitted \(submitted), accepted \(accepted), completed \(completed), \(errorExamples.first ?? "")" }

    /// Nearest-rank percentile.
    static func percentile(_ values: [Double], _ quantile: Double) -> Double? {
        guard !values.isEmpty else { return nil }
        let sorted = values.sorted()
        let rank = Int((quantile * Double(sorted.count)).rounded(.up))
        return sorted[min(max(rank, 1), sorted.count) - 1]
    }

    var dictionary: [String: Any] {
        var object: [String: Any] = [
            "elapsed_seconds": elapsed, "submitted": submitted, "accepted": accepted, "rejected": rejected,
            "retry_after_seen": retryAfterSeen,
            "errors": errors, "completed": completed, "failed": failed, "lost": lost, "duplicates": duplicates,
            "throughput": throughput,
        ]
        for (name, values) in [("end_to_end", endToEnd), ("submit", submitLatency)] {
            for quantile in [0.5, 0.9, 0.99] {
                if let value = Self.percentile(values, quantile) { object["\(name)_p\(Int(quantile * 100))_seconds"] = value }
            }
        }
        return object
    }
}

/// Submits jobs and follows each accepted one to its end.
struct LoadGenerator: Sendable {
    let client: LoadClient
    let bodyData: Data
    let images: Int
    let drain: Double

    init(client: LoadClient, body: [String: Any], images: Int, drain: Double) {
        self.client = client
        self.bodyData = (try? JSONSerialization.data(withJSONObject: body)) ?? Data()
        self.images = images
        self.drain = drain
    }

    /// `concurrency` clients, each submitting again as soon as its job ends (or after Retry-After), until
    /// `duration` has passed; `duration` 0 runs one job per client.
    func closedLoop(concurrency: Int, duration: Double) async -> LoadResult {
        let start = Date()
        let outcomes = await withTaskGroup(of: [LoadOutcome].self) { group in
            for _ in 0..<concurrency {
                group.addTask {
                    var outcomes: [LoadOutcome] = []
                    repeat {
                        let outcome = await self.submitAndFollow(deadline: Date().addingTimeInterval(duration + drain))
                        outcomes.append(outcome)
                        if outcome.status == 429 { try? await Task.sleep(for: .milliseconds(50)) }
                        if outcome.status == 0 { break }
                    } while Date().timeIntervalSince(start) < duration
                    return outcomes
                }
            }
            return await group.reduce(into: []) { $0 += $1 }
        }
        return LoadResult(outcomes: outcomes, elapsed: Date().timeIntervalSince(start), images: images)
    }

    /// Arrivals every 1/rate seconds for `duration`, whatever happens to earlier ones.
    func openLoop(rate: Double, duration: Double) async -> LoadResult {
        let start = Date()
        let arrivals = max(1, Int(duration * rate))
        let deadline = start.addingTimeInterval(duration + drain)
        let outcomes = await withTaskGroup(of: LoadOutcome.self) { group in
            for index in 0..<arrivals {
                let due = start.addingTimeInterval(Double(index) / rate)
                if due > Date() { try? await Task.sleep(for: .seconds(due.timeIntervalSinceNow)) }
                group.addTask { await self.submitAndFollow(deadline: deadline) }
            }
            return await group.reduce(into: []) { $0.append($1) }
        }
        // Throughput over the arrivals and the drain, until the last job ended.
        return LoadResult(outcomes: outcomes, elapsed: Date().timeIntervalSince(start), images: images)
    }

    private func submitAndFollow(deadline: Date) async -> LoadOutcome {
        var outcome = LoadOutcome()
        let start = Date()
        do {
            let response = try await client.send("POST", "/v1/images/jobs", body: bodyData, timeout: 30)
            outcome.submitSeconds = Date().timeIntervalSince(start)
            outcome.status = response.status
            outcome.retryAfter = response.headers["retry-after"].flatMap(Int.init).map { $0 >= 1 } ?? false
            guard response.status == 202 else {
                if response.status != 429 {
                    outcome.error =
                        "submit: HTTP \(response.status) \(String(decoding: response.body.prefix(200), as: UTF8.self))"
                }
                return outcome
            }
            let id = (try? JSONSerialization.jsonObject(with: response.body) as? [String: Any])?["id"] as? String
            guard let id else {
                outcome.error = "202 without an id"
                return outcome
            }
            outcome.id = id
            // The event stream ends with the job's terminal event.
            let events = try await client.send(
                "GET", "/v1/images/jobs/\(id)/events", timeout: max(1, deadline.timeIntervalSinceNow))
            let terminal = String(decoding: events.body, as: UTF8.self).split(separator: "\n").compactMap { line -> String? in
                guard line.hasPrefix("event: ") else { return nil }
                let type = String(line.dropFirst("event: ".count))
                return ["completed", "failed", "cancelled"].contains(type) ? type : nil
            }
            guard let last = terminal.last else {
                outcome.error = "event stream of \(id) ended without a terminal event"
                return outcome
            }
            outcome.endToEndSeconds = Date().timeIntervalSince(start)
            outcome.terminal = last
            outcome.terminalEvents = terminal.count
            let status = try await client.send("GET", "/v1/images/jobs/\(id)", timeout: 30)
            let record = (try? JSONSerialization.jsonObject(with: status.body) as? [String: Any]) ?? [:]
            outcome.images = (record["results"] as? [Any])?.count ?? 0
            let stored = record["status"] as? String
            if last == "completed" && stored != "succeeded" || outcome.images != (last == "completed" ? images : 0) {
                outcome.error = "job \(id): event \(last), status \(stored ?? "-"), \(outcome.images) images"
                if last == "completed" { outcome.terminal = "failed" }
            }
        } catch {
            if outcome.status == 0 { outcome.submitSeconds = Date().timeIntervalSince(start) }
            outcome.error = "\(error)"
        }
        return outcome
    }
}

/// Plain HTTP over URLSession.
final class LoadClient: Sendable {
    struct Response {
        let status: Int
        let headers: [String: String]
        let body: Data
    }

    let base: URL
    let token: String?
    private let session: URLSession

    init(base: URL, token: String?, timeout: Double) {
        self.base = base
        self.token = token
        let configuration = URLSessionConfiguration.ephemeral
        configuration.httpMaximumConnectionsPerHost = 512
        configuration.timeoutIntervalForResource = timeout
        configuration.requestCachePolicy = .reloadIgnoringLocalCacheData
        session = URLSession(configuration: configuration)
    }

    func send(_ method: String, _ path: String, body: Data? = nil, timeout: Double) async throws -> Response {
        var request = URLRequest(url: base.appendingPathComponent(path))
        request.httpMethod = method
        request.timeoutInterval = timeout
        if let body {
            request.httpBody = body
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        }
        if let token { request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization") }
        return try await withCheckedThrowingContinuation { continuation in
            session.dataTask(with: request) { data, response, error in
                if let error { return continuation.resume(throwing: error) }
                guard let http = response as? HTTPURLResponse else {
                    return continuation.resume(throwing: CLIError("no HTTP response"))
                }
                var headers: [String: String] = [:]
                for (name, value) in http.allHeaderFields {
                    if let name = name as? String, let value = value as? String { headers[name.lowercased()] = value }
                }
                continuation.resume(returning: Response(status: http.statusCode, headers: headers, body: data ?? Data()))
            }.resume()
        }
    }
}

/// The HTTP server on an ephemeral loopback port, in this process, with an in-memory job store.
struct InProcessServer {
    let url: URL
    private let group: ServiceGroup
    private let task: Task<Void, Error>

    static func start(models: [String], queueCapacity: Int) async throws -> InProcessServer {
        var logger = Logger(label: "swiftdiffusion-load")
        logger.logLevel = .warning
        ServerApplication.bootstrapMetrics()
        var configuration = EngineConfiguration()
        configuration.queueCapacity = queueCapacity
        let embedded = models.isEmpty ? try ModelLocation.embeddedModel().deletingLastPathComponent() : nil
        let repository = ModelRepository(roots: try models.map(InputPath.folder), embeddedModels: embedded)
        guard !repository.list(.checkpoint).isEmpty else { throw CLIError("no model found for the in-process server") }
        let engine = GenerationEngine(
            configuration: configuration, repository: repository, store: InMemoryJobStore(), logger: logger)
        let (ports, portContinuation) = AsyncStream.makeStream(of: Int.self)
        let application = Application(
            router: ServerApplication.router(engine: engine, configuration: ServerConfiguration()),
            configuration: .init(address: .hostname("127.0.0.1", port: 0), serverName: "SwiftDiffusion"), services: [engine],
            onServerRunning: { channel in
                portContinuation.yield(channel.localAddress?.port ?? 0)
                portContinuation.finish()
            }, logger: logger)
        let group = ServiceGroup(configuration: .init(services: [application], logger: logger))
        let task = Task { try await group.run() }
        var iterator = ports.makeAsyncIterator()
        guard let port = await iterator.next(), port > 0 else { throw CLIError("the in-process server did not start") }
        return InProcessServer(url: URL(string: "http://127.0.0.1:\(port)")!, group: group, task: task)
    }

    func stop() async {
        await group.triggerGracefulShutdown()
        _ = try? await task.value
    }
}
