import Charts
import Foundation
import Imaging
import Traces
import XCTest

/// `trace analyze`'s path end to end on a small generated trace: every chart is written as SVG and as a PNG that
/// decodes to the chart's laid-out size and carries the lines' colours (not a blank image).
final class TraceChartsTests: XCTestCase {
    func testAnalyzeWritesDecodablePNGs() throws {
        let dir = NSTemporaryDirectory() + "traces-charts-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let trace = dir + "/gen.jsonl"
        try Data(TraceIO.jsonl(try TraceGenerator(TraceGenerator.Parameters(requests: 2_000, seed: 3)).generate()).utf8)
            .write(to: URL(fileURLWithPath: trace))
        let analysis = TraceAnalysis(try TraceIO.read(path: trace))
        let out = dir + "/an"
        let files = try analysis.write(to: out)
        let charts = analysis.charts()
        XCTAssertEqual(Set(charts.keys), ["popularity_cdf.svg", "adapters_per_request.svg", "miss_rates.svg"])
        for (svgName, chart) in charts {
            let base = (svgName as NSString).deletingPathExtension
            XCTAssertTrue(files.contains(svgName) && files.contains(base + ".png"), base)
            let image = try ImageCodec.read(contentsOf: URL(fileURLWithPath: out + "/" + base + ".png"))
            let drawing = chart.drawing()
            XCTAssertEqual(image.width, drawing.width, base)
            XCTAssertEqual(image.height, drawing.height, base)
            var dark = 0, coloured = 0
            for y in 0..<image.height {
                for x in 0..<image.width {
                    let p = image[x, y]
                    if Int(p.red) + Int(p.green) + Int(p.blue) < 100 { dark += 1 }
                    if max(p.red, p.green, p.blue) - min(p.red, p.green, p.blue) > 60 { coloured += 1 }
                }
            }
            XCTAssertGreaterThan(dark, 1_000, "\(base): text drawn")
            XCTAssertGreaterThan(coloured, 500, "\(base): lines drawn")
            XCTAssertEqual(image, chart.rasterImage(), base)
        }
    }
}
