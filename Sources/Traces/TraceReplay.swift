import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Bounded open-loop replay of a trace against a running `swiftdiffusion serve` on this machine: request i is
/// sent at (t_i − t_0) / speed after the start (waiting only when `maxInFlight` jobs are outstanding), posted to
/// the native `POST /v1/images/jobs`, and followed to its end; the output trace records what ran, the client's
/// latency and the server's timings and outcome. The trace's adapters are mapped by popularity rank onto what
/// `/v1/loras` and `/v1/controlnets` list (the trace's most used LoRA onto the first listed, and so on, wrapping).
public struct TraceReplay: Sendable {
    public struct Options: Sendable {
        public var speed = 1.0
        public var limit: Int?
        public var maxInFlight = 32
        /// Wall-clock bound of the whole replay; jobs not finished by then are recorded as `lost`.
        public var timeoutSeconds = 3_600.0
        public var pollSeconds = 0.1
        /// Overrides of the trace's size and steps (the embedded test model wants small images).
        public var width: Int?
        public var height: Int?
        public var steps: Int?
        public init() {}
    }

    /// A 16x16 grayscale PNG: the conditioning image of every ControlNet unit (preprocessor "none").
    static let controlImage =
        "iVBORw0KGgoAAAANSUhEUgAAABAAAAAQCAAAAAA6mKC9AAAAYElEQVR4nGXKEQCAMABFwYfDYRiGw2EYDsPhMAzDMAzDMAzDMAzDMAzz3/GBzV0ZYtMN07Id14PJCl/Vqe3Hed3P+/0FJBgkWCRkSMiRUCDBIcEjoURChYSAhBoJEQnpA6LffAGXCC4+AAAAAElFTkSuQmCC"

    public let base: URL
    public let options: Options

    public init(url: String, options: Options) throws(TraceError) {
        guard let parsed = URL(string: url), let scheme = parsed.scheme, scheme == "http" || scheme == "https", let host = parsed.host else {
            throw .invalid("--url must be an http URL, got \"\(url)\"")
        }
        let h = host.lowercased().trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
        guard h == "localhost" || h == "::1" || h.hasPrefix("127.") else {
            throw .invalid("replay only targets a server on this machine (localhost, 127.0.0.0/8, ::1); refusing host \"\(host)\"")
        }
        guard options.speed > 0, options.speed.isFinite else { throw .invalid("--speed must be positive, got \(options.speed)") }
        guard (1...1024).contains(options.maxInFlight) else { throw .invalid("--max-in-flight must be between 1 and 1024") }
        guard options.timeoutSeconds > 0 else { throw .invalid("--timeout must be positive") }
        guard options.pollSeconds.isFinite, (0.01...60).contains(options.pollSeconds) else {
            throw .invalid("--poll-seconds must be between 0.01 and 60")
        }
        if let limit = options.limit, limit < 0 { throw .invalid("--limit must not be negative") }
        self.base = parsed
        self.options = options
    }

    static func session() -> URLSession {
        let configuration = URLSessionConfiguration.ephemeral
        configuration.timeoutIntervalForRequest = 60
        return URLSession(configuration: configuration)
    }

    func get(_ path: String, _ session: URLSession) async throws -> (Int, Data) {
        let (data, response) = try await session.data(from: base.appendingPathComponent(path))
        return ((response as? HTTPURLResponse)?.statusCode ?? 0, data)
    }

    func listIDs(_ path: String, _ session: URLSession) async throws -> [String] {
        let (status, data) = try await get(path, session)
        guard status == 200, let object = try JSONSerialization.jsonObject(with: data) as? [String: Any], let items = object["data"] as? [[String: Any]] else {
            throw TraceError.invalid("GET \(path) answered \(status), not a listing")
        }
        return items.compactMap { $0["id"] as? String }
    }

    /// Maps each trace adapter (per kind, across services) onto a server adapter by popularity rank.
    static func mapping(_ names: [[String]], onto available: [String]) -> [String: String] {
        var counts: [String: Int] = [:]
        for list in names { for n in list { counts[n, default: 0] += 1 } }
        guard !available.isEmpty else { return [:] }
        var map: [String: String] = [:]
        for (k, entry) in counts.sorted(by: { ($0.value, $1.key) > ($1.value, $0.key) }).enumerated() { map[entry.key] = available[k % available.count] }
        return map
    }

    public func run(_ trace: [TraceRecord]) async throws -> [TraceRecord] {
        let records = Array(trace.sorted { $0.timestamp < $1.timestamp }.prefix(options.limit ?? Int.max))
        guard let t0 = records.first?.timestamp else { return [] }
        let session = Self.session()
        let loraMap = Self.mapping(records.map(\.loras), onto: try await listIDs("v1/loras", session))
        let cnMap = Self.mapping(records.map(\.controlnets), onto: try await listIDs("v1/controlnets", session))
        let start = Date()
        let deadline = start.addingTimeInterval(options.timeoutSeconds)
        return try await withThrowingTaskGroup(of: (Int, TraceRecord).self) { group in
            var results = [TraceRecord?](repeating: nil, count: records.count)
            var inFlight = 0
            for (i, record) in records.enumerated() {
                let due = start.addingTimeInterval((record.timestamp - t0) / options.speed)
                if due > Date() { try await Task.sleep(nanoseconds: UInt64(min(due.timeIntervalSinceNow, 1e6) * 1e9)) }
                if inFlight >= options.maxInFlight, let (k, r) = try await group.next() {
                    results[k] = r
                    inFlight -= 1
                }
                var sent = record
                sent.loras = record.loras.compactMap { loraMap[$0] }
                sent.controlnets = record.controlnets.compactMap { cnMap[$0] }
                if let w = options.width { sent.width = w }
                if let h = options.height { sent.height = h }
                if let s = options.steps { sent.steps = s }
                inFlight += 1
                group.addTask { (i, await self.replayOne(sent, index: i, session: session, deadline: deadline)) }
            }
            while let (k, r) = try await group.next() { results[k] = r }
            return results.map { $0! }
        }
    }

    func replayOne(_ record: TraceRecord, index: Int, session: URLSession, deadline: Date) async -> TraceRecord {
        var out = record
        out.timestamp = Date().timeIntervalSince1970
        out.queueS = nil; out.totalS = nil; out.timings = [:]; out.loraCacheHit = nil; out.controlnetCacheHit = nil; out.loraPatchStep = nil
        out.error = nil
        let sentAt = Date()
        var body: [String: Any] = [
            "prompt": "trace replay request \(index)", "seed": index, "steps": record.steps,
            "loras": record.loras.map { ["name": $0] },
            "controls": record.controlnets.map { ["model": $0, "image": Self.controlImage] },
            "metadata": ["service": record.service, "instance": record.instance],
        ]
        if record.width > 0 && record.height > 0 { body["width"] = record.width; body["height"] = record.height }
        do {
            var request = URLRequest(url: base.appendingPathComponent("v1/images/jobs"))
            request.httpMethod = "POST"
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
            request.httpBody = try JSONSerialization.data(withJSONObject: body)
            let (data, response) = try await session.data(for: request)
            let status = (response as? HTTPURLResponse)?.statusCode ?? 0
            guard status == 202 || status == 200, let job = try JSONSerialization.jsonObject(with: data) as? [String: Any], let id = job["id"] as? String else {
                out.outcome = "rejected"
                out.error = "HTTP \(status): " + String(decoding: data.prefix(300), as: UTF8.self)
                out.latencyS = Date().timeIntervalSince(sentAt)
                return out
            }
            out.requestId = id
            while Date() < deadline {
                let (code, data) = try await get("v1/images/jobs/\(id)", session)
                if code == 200, let job = try JSONSerialization.jsonObject(with: data) as? [String: Any], let state = job["status"] as? String,
                    ["succeeded", "failed", "cancelled"].contains(state)
                {
                    out.latencyS = Date().timeIntervalSince(sentAt)
                    out.outcome = state
                    var timings = (job["timings"] as? [String: Any])?.compactMapValues { ($0 as? NSNumber)?.doubleValue } ?? [:]
                    out.queueS = timings.removeValue(forKey: "queue")
                    out.totalS = timings.removeValue(forKey: "total")
                    out.timings = timings
                    out.loraPatchStep = (job["lora_patch_step"] as? NSNumber)?.intValue
                    if out.loraPatchStep != nil && !record.loras.isEmpty { out.loraCacheHit = false }
                    out.error = job["error"] as? String
                    return out
                }
                try await Task.sleep(nanoseconds: UInt64(options.pollSeconds * 1e9))
            }
            out.outcome = "lost"
            out.error = "not finished within the replay's time bound"
        } catch {
            out.outcome = out.requestId == nil ? "rejected" : "lost"
            out.error = "\(error)"
        }
        out.latencyS = Date().timeIntervalSince(sentAt)
        return out
    }
}
