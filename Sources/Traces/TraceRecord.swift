import Foundation

/// One request of a trace: the paper's fields (timestamp, service, instance, base model, ControlNets, LoRAs,
/// size, steps) plus this server's per-stage timings, cache hits and outcome. The JSONL form is one object per
/// line with the snake_case keys below; docs/characterization.md is the schema's documentation.
public struct TraceRecord: Codable, Sendable, Equatable {
    /// Arrival time, seconds (Unix time for exported and replayed traces; seconds from the start for generated ones).
    public var timestamp: Double
    /// The service (the paper's scene_id, "A"/"B").
    public var service: String
    /// The serving instance (the paper's ip): caches are per instance.
    public var instance: String
    public var baseModel: String
    /// ControlNet ids, in request order.
    public var controlnets: [String]
    /// LoRA ids, in request order.
    public var loras: [String]
    /// Pixels; 0 when unknown.
    public var width: Int
    public var height: Int
    public var steps: Int
    /// Seconds between submission and start.
    public var queueS: Double?
    /// Seconds from start to finish (the server's `total` timing).
    public var totalS: Double?
    /// Per-stage seconds as a JobRecord carries them in `timings` (other than queue and total), e.g. `encode_prompt`,
    /// `denoise`, `decode`, `generate`.
    public var timings: [String: Double]
    /// Whether every LoRA of the request was already loaded; nil when not known or no LoRA.
    public var loraCacheHit: Bool?
    /// Whether every ControlNet of the request was already loaded; nil when not known or no ControlNet.
    public var controlnetCacheHit: Bool?
    /// `succeeded`, `failed`, `cancelled`, `rejected` (the server refused it) or `lost` (replay never saw its end).
    public var outcome: String
    /// The server's job id, if any.
    public var requestId: String?
    /// The step before which deferred LoRAs were patched in (bounded asynchronous loading), if any.
    public var loraPatchStep: Int?
    /// Replay: seconds from sending the request to seeing its end, as the client measured it.
    public var latencyS: Double?
    public var error: String?

    public init(
        timestamp: Double, service: String, instance: String, baseModel: String, controlnets: [String] = [], loras: [String] = [],
        width: Int, height: Int, steps: Int, queueS: Double? = nil, totalS: Double? = nil, timings: [String: Double] = [:],
        loraCacheHit: Bool? = nil, controlnetCacheHit: Bool? = nil, outcome: String = "succeeded", requestId: String? = nil,
        loraPatchStep: Int? = nil, latencyS: Double? = nil, error: String? = nil
    ) {
        self.timestamp = timestamp
        self.service = service
        self.instance = instance
        self.baseModel = baseModel
        self.controlnets = controlnets
        self.loras = loras
        self.width = width
        self.height = height
        self.steps = steps
        self.queueS = queueS
        self.totalS = totalS
        self.timings = timings
        self.loraCacheHit = loraCacheHit
        self.controlnetCacheHit = controlnetCacheHit
        self.outcome = outcome
        self.requestId = requestId
        self.loraPatchStep = loraPatchStep
        self.latencyS = latencyS
        self.error = error
    }

    enum CodingKeys: String, CodingKey {
        case timestamp, service, instance, controlnets, loras, width, height, steps, timings, outcome, error
        case baseModel = "base_model", queueS = "queue_s", totalS = "total_s", loraCacheHit = "lora_cache_hit"
        case controlnetCacheHit = "controlnet_cache_hit", requestId = "request_id", loraPatchStep = "lora_patch_step"
        case latencyS = "latency_s"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        timestamp = try c.decode(Double.self, forKey: .timestamp)
        service = try c.decodeIfPresent(String.self, forKey: .service) ?? ""
        instance = try c.decodeIfPresent(String.self, forKey: .instance) ?? ""
        baseModel = try c.decodeIfPresent(String.self, forKey: .baseModel) ?? ""
        // The paper's trace writes null for "none".
        controlnets = try c.decodeIfPresent([String].self, forKey: .controlnets) ?? []
        loras = try c.decodeIfPresent([String].self, forKey: .loras) ?? []
        width = try c.decodeIfPresent(Int.self, forKey: .width) ?? 0
        height = try c.decodeIfPresent(Int.self, forKey: .height) ?? 0
        steps = try c.decodeIfPresent(Int.self, forKey: .steps) ?? 0
        queueS = try c.decodeIfPresent(Double.self, forKey: .queueS)
        totalS = try c.decodeIfPresent(Double.self, forKey: .totalS)
        timings = try c.decodeIfPresent([String: Double].self, forKey: .timings) ?? [:]
        loraCacheHit = try c.decodeIfPresent(Bool.self, forKey: .loraCacheHit)
        controlnetCacheHit = try c.decodeIfPresent(Bool.self, forKey: .controlnetCacheHit)
        outcome = try c.decodeIfPresent(String.self, forKey: .outcome) ?? "succeeded"
        requestId = try c.decodeIfPresent(String.self, forKey: .requestId)
        loraPatchStep = try c.decodeIfPresent(Int.self, forKey: .loraPatchStep)
        latencyS = try c.decodeIfPresent(Double.self, forKey: .latencyS)
        error = try c.decodeIfPresent(String.self, forKey: .error)
    }
}

/// Errors reading or writing traces; each names the file and, for content, the 1-based line.
public enum TraceError: Error, Equatable, Sendable, CustomStringConvertible {
    case noSuchFile(String)
    case unreadable(String, String)
    case malformed(path: String, line: Int, reason: String)
    case tooLarge(path: String, limit: String)
    case invalid(String)

    public var description: String {
        switch self {
        case .noSuchFile(let path): return "no such file: \(path)"
        case .unreadable(let path, let why): return "cannot read \(path): \(why)"
        case .malformed(let path, let line, let reason): return "\(path):\(line): malformed trace line: \(reason)"
        case .tooLarge(let path, let limit): return "\(path): trace exceeds \(limit)"
        case .invalid(let message): return message
        }
    }
}

/// JSONL and CSV reading and writing.
public enum TraceIO {
    public struct Limits: Sendable {
        public var maxBytes: Int
        public var maxRecords: Int
        public var maxLineBytes: Int
        public init(maxBytes: Int = 4 << 30, maxRecords: Int = 50_000_000, maxLineBytes: Int = 1 << 20) {
            self.maxBytes = maxBytes
            self.maxRecords = maxRecords
            self.maxLineBytes = maxLineBytes
        }
    }

    // MARK: JSONL

    /// One record as a JSON line (no newline). Keys in schema order; absent optionals are left out.
    public static func jsonLine(_ r: TraceRecord) -> String {
        var s = "{\"timestamp\":\(number(r.timestamp)),\"service\":\(quote(r.service)),\"instance\":\(quote(r.instance))"
        s += ",\"base_model\":\(quote(r.baseModel)),\"controlnets\":[\(r.controlnets.map(quote).joined(separator: ","))]"
        s += ",\"loras\":[\(r.loras.map(quote).joined(separator: ","))],\"width\":\(r.width),\"height\":\(r.height),\"steps\":\(r.steps)"
        if let v = r.queueS { s += ",\"queue_s\":\(number(v))" }
        if let v = r.totalS { s += ",\"total_s\":\(number(v))" }
        if !r.timings.isEmpty {
            s += ",\"timings\":{" + r.timings.sorted { $0.key < $1.key }.map { "\(quote($0.key)):\(number($0.value))" }.joined(separator: ",") + "}"
        }
        if let v = r.loraCacheHit { s += ",\"lora_cache_hit\":\(v)" }
        if let v = r.controlnetCacheHit { s += ",\"controlnet_cache_hit\":\(v)" }
        s += ",\"outcome\":\(quote(r.outcome))"
        if let v = r.requestId { s += ",\"request_id\":\(quote(v))" }
        if let v = r.loraPatchStep { s += ",\"lora_patch_step\":\(v)" }
        if let v = r.latencyS { s += ",\"latency_s\":\(number(v))" }
        if let v = r.error { s += ",\"error\":\(quote(v))" }
        return s + "}"
    }

    public static func jsonl(_ records: [TraceRecord]) -> String {
        var out = ""
        out.reserveCapacity(records.count * 200)
        for r in records {
            out += jsonLine(r)
            out += "\n"
        }
        return out
    }

    /// Reads a JSONL trace file. Blank lines are skipped; a malformed line is an error naming its line number.
    public static func readJSONL(path: String, limits: Limits = Limits()) throws(TraceError) -> [TraceRecord] {
        let data = try readFile(path, limits: limits)
        return try parseJSONL(data, path: path, limits: limits)
    }

    public static func parseJSONL(_ data: Data, path: String = "<trace>", limits: Limits = Limits()) throws(TraceError) -> [TraceRecord] {
        // Split into lines, then decode in batches of lines joined into one JSON array (one decoder call per batch
        // instead of per line); a batch that fails is decoded line by line to name the bad line.
        var lines: [(number: Int, range: Range<Int>)] = []
        data.withUnsafeBytes { (raw: UnsafeRawBufferPointer) in
            var start = 0, number = 1
            let n = raw.count
            var i = 0
            while i <= n {
                if i == n || raw[i] == 0x0A {
                    var end = i
                    if end > start && raw[end - 1] == 0x0D { end -= 1 }
                    var s = start
                    while s < end && (raw[s] == 0x20 || raw[s] == 0x09) { s += 1 }
                    if s < end { lines.append((number, start..<end)) }
                    number += 1
                    start = i + 1
                }
                i += 1
            }
        }
        for line in lines where line.range.count > limits.maxLineBytes {
            throw .malformed(path: path, line: line.number, reason: "line longer than \(limits.maxLineBytes) bytes")
        }
        guard lines.count <= limits.maxRecords else { throw .tooLarge(path: path, limit: "\(limits.maxRecords) records") }
        let decoder = JSONDecoder()
        var records: [TraceRecord] = []
        records.reserveCapacity(lines.count)
        let batch = 2048
        var b = 0
        while b < lines.count {
            let slice = lines[b..<min(b + batch, lines.count)]
            var joined = Data([0x5B])
            joined.reserveCapacity(slice.reduce(2) { $0 + $1.range.count + 1 })
            for (k, line) in slice.enumerated() {
                if k > 0 { joined.append(0x2C) }
                joined.append(data[data.startIndex + line.range.lowerBound..<data.startIndex + line.range.upperBound])
            }
            joined.append(0x5D)
            if let decoded = try? decoder.decode([TraceRecord].self, from: joined), decoded.count == slice.count {
                records += decoded
            } else {
                for line in slice {
                    let bytes = data[data.startIndex + line.range.lowerBound..<data.startIndex + line.range.upperBound]
                    do {
                        records.append(try decoder.decode(TraceRecord.self, from: Data(bytes)))
                    } catch {
                        throw .malformed(path: path, line: line.number, reason: describe(error))
                    }
                }
            }
            b += batch
        }
        return records
    }

    static func describe(_ error: any Error) -> String {
        switch error {
        case DecodingError.keyNotFound(let key, _): return "missing field \"\(key.stringValue)\""
        case DecodingError.typeMismatch(let type, let context):
            return "field \"\(context.codingPath.map(\.stringValue).joined(separator: "."))\" is not \(type)"
        case DecodingError.valueNotFound(let type, let context):
            return "field \"\(context.codingPath.map(\.stringValue).joined(separator: "."))\" is null, expected \(type)"
        case DecodingError.dataCorrupted(let context):
            if context.codingPath.isEmpty { return "not a valid JSON object" }
            return "field \"\(context.codingPath.map(\.stringValue).joined(separator: "."))\": \(context.debugDescription)"
        default: return "\(error)"
        }
    }

    static func readFile(_ path: String, limits: Limits) throws(TraceError) -> Data {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { throw .noSuchFile(path) }
        guard !isDirectory.boolValue else { throw .unreadable(path, "is a directory") }
        let size = ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber)?.intValue ?? 0
        guard size <= limits.maxBytes else { throw .tooLarge(path: path, limit: "\(limits.maxBytes) bytes") }
        do {
            return try Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped)
        } catch {
            throw .unreadable(path, error.localizedDescription)
        }
    }

    // MARK: CSV

    /// CSV columns: the scalar fields, lists joined with `;`, timings as `stage=seconds` pairs joined with `;`.
    public static let csvHeader = [
        "timestamp", "service", "instance", "base_model", "controlnets", "loras", "width", "height", "steps", "queue_s", "total_s",
        "timings", "lora_cache_hit", "controlnet_cache_hit", "outcome", "request_id", "lora_patch_step", "latency_s", "error",
        "controlnet_count", "lora_count",
    ]

    public static func csv(_ records: [TraceRecord]) -> String {
        var out = csvHeader.joined(separator: ",") + "\n"
        func opt(_ v: Double?) -> String { v.map(number) ?? "" }
        for r in records {
            let fields: [String] = [
                number(r.timestamp), r.service, r.instance, r.baseModel, r.controlnets.joined(separator: ";"), r.loras.joined(separator: ";"),
                "\(r.width)", "\(r.height)", "\(r.steps)", opt(r.queueS), opt(r.totalS),
                r.timings.sorted { $0.key < $1.key }.map { "\($0.key)=\(number($0.value))" }.joined(separator: ";"),
                r.loraCacheHit.map { "\($0)" } ?? "", r.controlnetCacheHit.map { "\($0)" } ?? "", r.outcome, r.requestId ?? "",
                r.loraPatchStep.map { "\($0)" } ?? "", opt(r.latencyS), r.error ?? "", "\(r.controlnets.count)", "\(r.loras.count)",
            ]
            out += fields.map(csvField).joined(separator: ",") + "\n"
        }
        return out
    }

    /// Reads the CSV form back (the columns of `csvHeader`, any order; the two count columns are ignored).
    public static func parseCSV(_ text: String, path: String = "<trace>") throws(TraceError) -> [TraceRecord] {
        let rows = csvRows(text)
        guard let header = rows.first?.fields else { return [] }
        var index: [String: Int] = [:]
        for (i, name) in header.enumerated() { index[name] = i }
        for required in ["timestamp", "service", "instance"] where index[required] == nil {
            throw .malformed(path: path, line: 1, reason: "missing column \"\(required)\"")
        }
        var records: [TraceRecord] = []
        for row in rows.dropFirst() {
            let line = row.line
            func field(_ name: String) -> String { index[name].flatMap { $0 < row.fields.count ? row.fields[$0] : nil } ?? "" }
            func double(_ name: String) throws(TraceError) -> Double? {
                let f = field(name)
                if f.isEmpty { return nil }
                guard let v = Double(f) else { throw .malformed(path: path, line: line, reason: "\(name) \"\(f)\" is not a number") }
                return v
            }
            func int(_ name: String) throws(TraceError) -> Int? {
                let f = field(name)
                if f.isEmpty { return nil }
                guard let v = Int(f) else { throw .malformed(path: path, line: line, reason: "\(name) \"\(f)\" is not an integer") }
                return v
            }
            func bool(_ name: String) throws(TraceError) -> Bool? {
                switch field(name) {
                case "": return nil
                case "true", "1": return true
                case "false", "0": return false
                case let f: throw .malformed(path: path, line: line, reason: "\(name) \"\(f)\" is not true/false")
                }
            }
            func list(_ name: String) -> [String] { field(name).split(separator: ";").map(String.init) }
            guard row.fields.count == header.count else {
                throw .malformed(path: path, line: line, reason: "\(row.fields.count) fields, the header has \(header.count)")
            }
            guard let timestamp = try double("timestamp") else { throw .malformed(path: path, line: line, reason: "empty timestamp") }
            var timings: [String: Double] = [:]
            for pair in list("timings") {
                let parts = pair.split(separator: "=", maxSplits: 1)
                guard parts.count == 2, let v = Double(parts[1]) else {
                    throw .malformed(path: path, line: line, reason: "timing \"\(pair)\" is not stage=seconds")
                }
                timings[String(parts[0])] = v
            }
            let request = field("request_id"), error = field("error")
            records.append(
                TraceRecord(
                    timestamp: timestamp, service: field("service"), instance: field("instance"), baseModel: field("base_model"),
                    controlnets: list("controlnets"), loras: list("loras"), width: try int("width") ?? 0, height: try int("height") ?? 0,
                    steps: try int("steps") ?? 0, queueS: try double("queue_s"), totalS: try double("total_s"), timings: timings,
                    loraCacheHit: try bool("lora_cache_hit"), controlnetCacheHit: try bool("controlnet_cache_hit"),
                    outcome: field("outcome").isEmpty ? "succeeded" : field("outcome"), requestId: request.isEmpty ? nil : request,
                    loraPatchStep: try int("lora_patch_step"), latencyS: try double("latency_s"), error: error.isEmpty ? nil : error))
        }
        return records
    }

    /// Reads a trace file: `.csv` as CSV, anything else as JSONL.
    public static func read(path: String, limits: Limits = Limits()) throws(TraceError) -> [TraceRecord] {
        if path.lowercased().hasSuffix(".csv") {
            let data = try readFile(path, limits: limits)
            guard let text = String(data: data, encoding: .utf8) else { throw .unreadable(path, "not UTF-8") }
            return try parseCSV(text, path: path)
        }
        return try readJSONL(path: path, limits: limits)
    }

    /// Writes `records` as CSV when `path` ends in `.csv`, else JSONL.
    public static func write(_ records: [TraceRecord], to path: String) throws {
        let text = path.lowercased().hasSuffix(".csv") ? csv(records) : jsonl(records)
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
    }

    // MARK: helpers

    static func number(_ v: Double) -> String {
        guard v.isFinite else { return "null" }
        if v == v.rounded(), abs(v) < 1e15 { return String(Int64(v)) }
        return "\(v)"
    }

    static func quote(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if u.value < 0x20 { out += String(format: "\\u%04x", u.value) } else { out.unicodeScalars.append(u) }
            }
        }
        return out + "\""
    }

    static func csvField(_ s: String) -> String {
        if s.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) {
            return "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\""
        }
        return s
    }

    /// RFC 4180 records with the 1-based line each starts on.
    static func csvRows(_ text: String) -> [(line: Int, fields: [String])] {
        var rows: [(Int, [String])] = []
        var fields: [String] = [], field = "", inQuotes = false, line = 1, rowLine = 1, sawAny = false
        var it = Array(text.unicodeScalars)[...]
        while let c = it.popFirst() {
            if inQuotes {
                if c == "\"" {
                    if it.first == "\"" { field.unicodeScalars.append("\""); it.removeFirst() } else { inQuotes = false }
                } else {
                    if c == "\n" { line += 1 }
                    field.unicodeScalars.append(c)
                }
                continue
            }
            switch c {
            case "\"": inQuotes = true; sawAny = true
            case ",": fields.append(field); field = ""; sawAny = true
            case "\r": break
            case "\n":
                if sawAny || !field.isEmpty { fields.append(field); rows.append((rowLine, fields)) }
                fields = []; field = ""; sawAny = false
                line += 1; rowLine = line
            default: field.unicodeScalars.append(c); sawAny = true
            }
        }
        if sawAny || !field.isEmpty { fields.append(field); rows.append((rowLine, fields)) }
        return rows
    }
}
