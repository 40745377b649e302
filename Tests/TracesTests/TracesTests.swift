import Dependence
import Foundation
import Serving
import XCTest

@testable import Traces

final class TraceSchemaTests: XCTestCase {
    let sample = [
        TraceRecord(
            timestamp: 12.5, service: "A", instance: "A-1", baseModel: "sd15", controlnets: ["canny", "depth"], loras: ["x,y", "q\"uote"],
            width: 512, height: 768, steps: 20, queueS: 0.25, totalS: 3.125, timings: ["denoise": 2.5, "decode": 0.125],
            loraCacheHit: false, controlnetCacheHit: true, outcome: "succeeded", requestId: "job-1", loraPatchStep: 3, latencyS: 3.5),
        TraceRecord(timestamp: 13, service: "B", instance: "B-2", baseModel: "m", width: 0, height: 0, steps: 30, outcome: "failed", error: "boom\nline"),
    ]

    func testJSONLRoundTrip() throws {
        let text = TraceIO.jsonl(sample)
        XCTAssertEqual(text.split(separator: "\n").count, 2)
        XCTAssertTrue(text.hasPrefix("{\"timestamp\":12.5,\"service\":\"A\",\"instance\":\"A-1\",\"base_model\":\"sd15\""))
        XCTAssertEqual(try TraceIO.parseJSONL(Data(text.utf8)), sample)
    }

    func testCSVRoundTrip() throws {
        let text = TraceIO.csv(sample)
        XCTAssertTrue(text.hasPrefix(TraceIO.csvHeader.joined(separator: ",") + "\n"))
        XCTAssertEqual(try TraceIO.parseCSV(text), sample)
    }

    func testPaperStyleNullsDecode() throws {
        let line = #"{"timestamp": 1, "service": "A", "instance": "10.0.0.1", "base_model": "b", "controlnets": null, "loras": ["l1"]}"#
        let r = try TraceIO.parseJSONL(Data(line.utf8))
        XCTAssertEqual(r.first?.controlnets, [])
        XCTAssertEqual(r.first?.loras, ["l1"])
    }

    func testMalformedLineNamesItsNumber() {
        let good = TraceIO.jsonLine(sample[0])
        let text = good + "\n\n" + good + "\n{\"timestamp\": \"noon\"}\n" + good + "\n"
        XCTAssertThrowsError(try TraceIO.parseJSONL(Data(text.utf8), path: "t.jsonl")) { error in
            guard case TraceError.malformed(let path, let line, let reason) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(path, "t.jsonl")
            XCTAssertEqual(line, 4)
            XCTAssertTrue(reason.contains("timestamp"), reason)
        }
        XCTAssertThrowsError(try TraceIO.parseJSONL(Data((good + "\nnot json\n").utf8), path: "t")) { error in
            XCTAssertEqual((error as? TraceError).map { if case .malformed(_, let l, _) = $0 { return l } else { return -1 } }, 2)
            XCTAssertTrue("\(error)".hasPrefix("t:2: malformed trace line"), "\(error)")
        }
        // Two objects glued on one line must not pass as two records.
        XCTAssertThrowsError(try TraceIO.parseJSONL(Data((good + "," + good + "\n").utf8)))
    }

    func testMissingFile() {
        XCTAssertThrowsError(try TraceIO.read(path: "/nonexistent/trace.jsonl")) { error in
            XCTAssertEqual(error as? TraceError, .noSuchFile("/nonexistent/trace.jsonl"))
            XCTAssertEqual("\(error)", "no such file: /nonexistent/trace.jsonl")
        }
    }
}

final class CachePolicyTests: XCTestCase {
    // Sequence a b c a b d a b c d (ids 0..3), worked by hand.
    let seq: [Int32] = [0, 1, 2, 0, 1, 3, 0, 1, 2, 3]

    func testHandComputed() {
        // C=1: every access differs from the previous one -> 10 misses for every policy.
        for p in CachePolicy.allCases { XCTAssertEqual(p.misses(seq, capacity: 1), 10, "\(p)") }
        // LRU C=2: cycle of 3+ distinct ids thrashes: all 10 miss. C=3: a b c (3) a b hit, d evicts c (4), a b hit,
        // c evicts d (5), d evicts a (6) -> 6.
        XCTAssertEqual(CachePolicy.lru.misses(seq, capacity: 2), 10)
        XCTAssertEqual(CachePolicy.lru.misses(seq, capacity: 3), 6)
        XCTAssertEqual(CachePolicy.lru.misses(seq, capacity: 4), 4)
        // Belady C=2: a b miss; c: evict b (next 4) vs a (3) -> evict b... next uses a@3 b@4 -> evict b, miss 3;
        // a hit; b: cache {a,c}, next a@6 c@8 -> evict c, miss 4; d: {a,b}, next a@6 b@7 -> evict b, miss 5;
        // a hit; b: {a,d} next a@never d@9 -> evict a, miss 6; c: {b,d} next b@never -> evict b, miss 7; d hit. = 7
        XCTAssertEqual(CachePolicy.belady.misses(seq, capacity: 2), 7)
        // Belady C=3: a b c (3), a b hit, d: {a,b,c} next a@6 b@7 c@8 -> evict c (4), a b hit, c: {a,b,d} next
        // a,b never, d@9 -> evict a (5), d hit -> 5.
        XCTAssertEqual(CachePolicy.belady.misses(seq, capacity: 3), 5)
        // LFU C=2: a b (2); c evicts LRU of freq-1 {a,b} = a (3); a evicts b (f1, older than c) (4); b evicts c (5);
        // d evicts a (6); a evicts b (7); b evicts d (8); c evicts a (9); d evicts b (10) -> 10.
        XCTAssertEqual(CachePolicy.lfu.misses(seq, capacity: 2), 10)
        // LFU C=3: a b c (3); a,b hit (f2); d evicts c (f1) (4); a,b hit (f3); c evicts d (5); d evicts c (6) -> 6.
        XCTAssertEqual(CachePolicy.lfu.misses(seq, capacity: 3), 6)
    }

    func testLFUDiffersFromLRU() {
        // a a b c a: LRU C=2: a(1) a b(2) c evicts a(3) a evicts b(4) = 4. LFU: c evicts b (f1) (3), a hit = 3.
        let s: [Int32] = [0, 0, 1, 2, 0]
        XCTAssertEqual(CachePolicy.lru.misses(s, capacity: 2), 4)
        XCTAssertEqual(CachePolicy.lfu.misses(s, capacity: 2), 3)
    }

    func testBeladyIsABound() {
        var rng = Xoshiro256StarStar(seed: 7)
        for trial in 0..<200 {
            let alphabet = 2 + rng.below(12)
            let s = (0..<(1 + rng.below(200))).map { _ in Int32(rng.below(alphabet)) }
            for c in 1...10 {
                let b = CachePolicy.belady.misses(s, capacity: c)
                XCTAssertLessThanOrEqual(b, CachePolicy.lru.misses(s, capacity: c), "trial \(trial) C=\(c)")
                XCTAssertLessThanOrEqual(b, CachePolicy.lfu.misses(s, capacity: c), "trial \(trial) C=\(c)")
                XCTAssertGreaterThanOrEqual(b, Set(s).count, "compulsory misses")
                if c > 1 { XCTAssertLessThanOrEqual(b, CachePolicy.belady.misses(s, capacity: c - 1)) }
            }
        }
    }
}

final class TraceGeneratorTests: XCTestCase {
    func testDeterministic() throws {
        var p = TraceGenerator.Parameters(requests: 2_000, seed: 42)
        p.lorasPerService = 200
        let a = TraceIO.jsonl(try TraceGenerator(p).generate())
        XCTAssertEqual(a, TraceIO.jsonl(try TraceGenerator(p).generate()))
        p.seed = 43
        XCTAssertNotEqual(a, TraceIO.jsonl(try TraceGenerator(p).generate()))
    }

    func testZipfExponentAndCountsRecovered() throws {
        var p = TraceGenerator.Parameters(requests: 60_000, seed: 1)
        p.services = 1
        p.lorasPerService = 500
        p.loraZipf = 1.2
        let records = try TraceGenerator(p).generate()
        // Ranks are encoded in the names (A-lora-001 is rank 1).
        let ranks = records.flatMap { $0.loras.map { Int($0.split(separator: "-").last!)! } }
        let s = TraceGenerator.estimateZipfExponent(ranks: ranks, count: 500)
        XCTAssertEqual(s, 1.2, accuracy: 0.05)
        // Second and later LoRAs of a request are drawn without replacement, which slightly flattens the law; the
        // first LoRA of each request is an exact Zipf draw.
        let firsts = records.compactMap { $0.loras.first.map { Int($0.split(separator: "-").last!)! } }
        XCTAssertEqual(TraceGenerator.estimateZipfExponent(ranks: firsts, count: 500), 1.2, accuracy: 0.03)
        // LoRAs per request: 0.40, 0.40, 0.15, 0.05 (binomial SD at n = 60,000 is < 0.002).
        let n = Double(records.count)
        for (k, expected) in p.loraCountProbabilities.enumerated() {
            XCTAssertEqual(Double(records.filter { $0.loras.count == k }.count) / n, expected, accuracy: 0.01, "\(k) LoRAs")
        }
        XCTAssertTrue(records.allSatisfy { Set($0.loras).count == $0.loras.count })
    }

    func testDiurnalShape() throws {
        var p = TraceGenerator.Parameters(requests: 48_000, seed: 3)
        p.days = 2
        let records = try TraceGenerator(p).generate()
        XCTAssertEqual(records.map(\.timestamp), records.map(\.timestamp).sorted())
        var hours = [Double](repeating: 0, count: 24)
        for r in records { hours[Int(r.timestamp / 3600) % 24] += 1 }
        // Expected per hour: N · ∫ over the hour of (1 + a cos(2π(h − 14)/24)) / 24.
        let a = p.diurnalAmplitude
        for h in 0..<24 {
            let integral = 1 + a * 24 / (2 * Double.pi) * (sin(2 * Double.pi * (Double(h + 1) - 14) / 24) - sin(2 * Double.pi * (Double(h) - 14) / 24))
            let expected = Double(records.count) * integral / 24
            XCTAssertEqual(hours[h], expected, accuracy: 5 * sqrt(expected), "hour \(h)")
        }
        XCTAssertEqual(hours.firstIndex(of: hours.max()!)!, 13, accuracy: 1)
        XCTAssertGreaterThan(hours.max()! / hours.min()!, 3)
    }

    func testServicesHaveTheirOwnAdapters() throws {
        var p = TraceGenerator.Parameters(requests: 3_000, seed: 5)
        p.services = 3
        let records = try TraceGenerator(p).generate()
        for r in records {
            XCTAssertTrue((r.loras + r.controlnets).allSatisfy { $0.hasPrefix(r.service + "-") })
            XCTAssertTrue(r.instance.hasPrefix(r.service + "-"))
        }
        XCTAssertEqual(Set(records.map(\.service)), ["A", "B", "C"])
    }

    func testBadParameters() {
        var p = TraceGenerator.Parameters(requests: 10, seed: 0)
        p.diurnalAmplitude = 1.5
        XCTAssertThrowsError(try TraceGenerator(p)) { XCTAssertTrue("\($0)".contains("--diurnal-amplitude"), "\($0)") }
    }
}

final class TraceAnalysisTests: XCTestCase {
    func testSmallTraceByHand() throws {
        func r(_ t: Double, _ i: String, _ cn: [String], _ l: [String]) -> TraceRecord {
            TraceRecord(timestamp: t, service: "S", instance: i, baseModel: "b", controlnets: cn, loras: l, width: 8, height: 8, steps: 1)
        }
        // Instance 1 in time order: LoRAs a b c a b d a b c d (the hand-computed sequence), listed out of order.
        let names = ["a", "b", "c", "a", "b", "d", "a", "b", "c", "d"]
        var records = names.enumerated().reversed().map { r(Double($0.offset), "S-1", $0.offset == 0 ? ["cn1"] : [], [$0.element]) }
        records.append(r(0, "S-2", [], []))
        let analysis = TraceAnalysis(records)
        let v = try XCTUnwrap(analysis.services.first)
        XCTAssertEqual(v.requests, 11)
        XCTAssertEqual(v.withLoRA, 10)
        XCTAssertEqual(v.withControlNet, 1)
        XCTAssertEqual(v.lorasPerRequest, [1, 10])
        let pop = try XCTUnwrap(analysis.popularity.first { $0.kind == .lora })
        XCTAssertEqual(pop.counts, [3, 3, 2, 2])
        XCTAssertEqual(pop.cdf[1], 0.6, accuracy: 1e-12)
        XCTAssertEqual(pop.adaptersCovering(0.5), 2)
        XCTAssertEqual(analysis.instances.map(\.uniqueLoRAs), [4, 0])
        let lru = try XCTUnwrap(analysis.totalCurve(service: "S", kind: .lora, policy: .lru))
        XCTAssertEqual(Array(lru.misses.prefix(4)), [10, 10, 6, 4])
        XCTAssertEqual(lru.rates[2], 0.6, accuracy: 1e-12)
        XCTAssertEqual(Array(try XCTUnwrap(analysis.totalCurve(service: "S", kind: .lora, policy: .belady)).misses.prefix(3)), [10, 7, 5])
        let dir = NSTemporaryDirectory() + "traces-analysis-\(UUID().uuidString)"
        let files = try analysis.write(to: dir)
        XCTAssertTrue(files.contains("miss_rates.svg") && files.contains("summary.md") && files.contains("popularity.csv"))
        let svg = try String(contentsOfFile: dir + "/miss_rates.svg", encoding: .utf8)
        XCTAssertTrue(svg.hasPrefix("<svg") && svg.contains("polyline"))
        try? FileManager.default.removeItem(atPath: dir)
    }

    /// 1,000,000 requests must analyse in under a minute in a release build; the debug suite checks 50,000 in a
    /// proportional 3 s (times 2 for the debug build's slack on shared cores).
    func testAnalysisSpeed() throws {
        let records = try TraceGenerator(TraceGenerator.Parameters(requests: 50_000, seed: 9)).generate()
        let start = Date()
        let analysis = TraceAnalysis(records)
        let seconds = Date().timeIntervalSince(start)
        XCTAssertEqual(analysis.requests, 50_000)
        XCTAssertLessThan(seconds, 6, "analysis of 50,000 requests took \(seconds) s")
        // Belady is a lower bound of both online policies at every size, per service.
        for v in analysis.services {
            for kind in TraceAnalysis.AdapterKind.allCases {
                let b = analysis.totalCurve(service: v.service, kind: kind, policy: .belady)!.misses
                for p in [CachePolicy.lru, .lfu] {
                    XCTAssertTrue(zip(b, analysis.totalCurve(service: v.service, kind: kind, policy: p)!.misses).allSatisfy { $0 <= $1 })
                }
            }
        }
    }

    func testDriversFindTheLatencyModel() throws {
        var p = TraceGenerator.Parameters(requests: 5_000, seed: 11)
        p.services = 1
        let records = try TraceGenerator(p).generate()
        var options = TraceDrivers.Options()
        options.sample = 600
        options.permutations = 99
        options.measures = ["spearman", "dcor"]
        let drivers = try TraceDrivers(records, options: options)
        let latency = try XCTUnwrap(drivers.targets.first { $0.name == "latency" })
        XCTAssertEqual(latency.rows, 600)
        // In the latency model a LoRA miss costs 2.5 s against ~1-3 s of compute: the cache hit or the step
        // count leads; steps and pixels are significant.
        let ranking = drivers.ranking(latency).map(\.feature)
        XCTAssertTrue(["cache_hit", "steps", "pixels", "lora_count"].contains(ranking[0]), "\(ranking)")
        for e in latency.entries where ["steps", "pixels", "cache_hit"].contains(e.feature) {
            guard case .success(let r) = e.result else { return XCTFail("\(e.feature) \(e.measure)") }
            XCTAssertLessThan(try XCTUnwrap(r.pValue), 0.05, "\(e.feature) \(e.measure)")
        }
        let misses = try XCTUnwrap(drivers.targets.first { $0.name == "cache_misses" })
        XCTAssertEqual(drivers.ranking(misses).first?.feature.hasPrefix("lora"), true, "\(drivers.ranking(misses).map(\.feature))")
        XCTAssertTrue(drivers.markdown().contains(DriverScreen.caveat))
        XCTAssertThrowsError(try TraceDrivers(records, options: { var o = options; o.measures = ["nope"]; return o }()))
    }
}

final class TraceExportTests: XCTestCase {
    func testExportFromSQLiteJobStore() async throws {
        let dir = NSTemporaryDirectory() + "traces-export-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/jobs.sqlite"
        let store = try SQLiteJobStore(path: path)
        var spec = JobSpec(prompt: "a cat", steps: 12)
        spec.model = "sd-tiny"
        spec.loras = [LoRASpec(name: "papercut")]
        spec.metadata = ["service": "A"]
        var job = JobRecord(id: "j1", spec: spec, createdAt: Date(timeIntervalSince1970: 1_000))
        job.status = .succeeded
        job.timings = ["queue": 0.5, "total": 2.25, "denoise": 2.0]
        job.loraPatchStep = 3
        job.infotext = "a cat\nSteps: 12, Sampler: Euler, Size: 64x96, Seed: 1"
        try await store.insert(job)
        var other = JobRecord(id: "j2", spec: JobSpec(prompt: "x", width: 32, height: 32, steps: 4), createdAt: Date(timeIntervalSince1970: 2_000))
        other.status = .failed
        other.error = "out of memory"
        try await store.insert(other)
        let trace = try TraceExport.export(storePath: path, instance: "host-1")
        XCTAssertEqual(trace.count, 2)
        XCTAssertEqual(
            trace[0],
            TraceRecord(
                timestamp: 1_000, service: "A", instance: "host-1", baseModel: "sd-tiny", loras: ["papercut"], width: 64, height: 96, steps: 12,
                queueS: 0.5, totalS: 2.25, timings: ["denoise": 2.0], loraCacheHit: false, outcome: "succeeded", requestId: "j1", loraPatchStep: 3))
        XCTAssertEqual(trace[1].service, "local")
        XCTAssertEqual(trace[1].width, 32)
        XCTAssertEqual(trace[1].outcome, "failed")
        XCTAssertEqual(trace[1].error, "out of memory")
        XCTAssertEqual(try TraceExport.export(storePath: path, instance: "h", limit: 1).count, 1)
        // A record with the engine's cache use: hits when every LoRA / every ControlNet was in memory.
        var cached = JobRecord(id: "j3", spec: spec, createdAt: Date(timeIntervalSince1970: 3_000))
        cached.spec.controls = [ControlSpec(model: "canny", image: Data())]
        cached.status = .succeeded
        cached.cache = CacheUse(modelHit: true, loraHits: 1, loraMisses: 0, controlnetHits: 0, controlnetMisses: 1)
        try await store.insert(cached)
        let third = try TraceExport.export(storePath: path, instance: "h")[2]
        XCTAssertEqual(third.loraCacheHit, true)
        XCTAssertEqual(third.controlnetCacheHit, false)
        XCTAssertThrowsError(try TraceExport.export(storePath: dir + "/none.sqlite")) { XCTAssertEqual("\($0)", "no such file: \(dir)/none.sqlite") }
    }

    func testReplayRefusesRemoteHosts() {
        XCTAssertThrowsError(try TraceReplay(url: "http://example.com:7860", options: .init())) { XCTAssertTrue("\($0)".contains("refusing host"), "\($0)") }
        XCTAssertNoThrow(try TraceReplay(url: "http://127.0.0.1:7860", options: .init()))
        XCTAssertNoThrow(try TraceReplay(url: "http://[::1]:7860", options: .init()))
        XCTAssertEqual(TraceReplay.mapping([["x", "y"], ["y"], ["z"]], onto: ["s1", "s2"]), ["y": "s1", "x": "s2", "z": "s1"])
    }
}
