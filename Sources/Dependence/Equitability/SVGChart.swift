import Foundation

/// Small-multiple line charts as SVG text: one panel per measure, one line per relationship.
public struct SVGChart: Sendable {
    public struct Panel: Sendable {
        public var title: String
        public var lines: [[(x: Double, y: Double)]]
        public var yRange: ClosedRange<Double>?  // nil: fitted to the data
        public init(title: String, lines: [[(x: Double, y: Double)]], yRange: ClosedRange<Double>? = nil) {
            self.title = title
            self.lines = lines
            self.yRange = yRange
        }
    }

    public var title: String
    public var xLabel: String
    public var yLabel: String
    public var panels: [Panel]
    public var legend: [String]
    public var columns = 4

    public init(title: String, xLabel: String, yLabel: String, panels: [Panel], legend: [String]) {
        self.title = title
        self.xLabel = xLabel
        self.yLabel = yLabel
        self.panels = panels
        self.legend = legend
    }

    static func color(_ k: Int, of count: Int) -> String {
        let hue = Double(k) * 360 / Double(max(count, 1))
        return String(format: "hsl(%.0f,70%%,%d%%)", hue, k % 2 == 0 ? 42 : 30)
    }

    static func format(_ v: Double) -> String {
        if v == 0 { return "0" }
        if abs(v) >= 1000 || abs(v) < 0.01 { return String(format: "%.2g", v) }
        return String(format: "%.2f", v)
    }

    public func render() -> String {
        let pw = 260.0, ph = 190.0, margin = 44.0, top = 48.0
        let rows = (panels.count + columns - 1) / columns
        let legendHeight = Double((legend.count + 2) / 3) * 15 + 20
        let width = Double(columns) * pw + 20, height = top + Double(rows) * ph + legendHeight
        var s = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height))\" "
        s += "font-family=\"sans-serif\" font-size=\"11\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
        s += "<text x=\"10\" y=\"20\" font-size=\"15\" font-weight=\"bold\">\(escape(title))</text>\n"
        s += "<text x=\"10\" y=\"38\">x: \(escape(xLabel)); y: \(escape(yLabel))</text>\n"
        for (k, panel) in panels.enumerated() {
            let ox = 10 + Double(k % columns) * pw, oy = top + Double(k / columns) * ph
            let x0 = ox + margin, x1 = ox + pw - 12, y0 = oy + ph - 30, y1 = oy + 18
            let points = panel.lines.flatMap { $0 }
            let xs = points.map(\.x), ys = points.map(\.y)
            let xmin = xs.min() ?? 0, xmax = xs.max() ?? 1
            var yr = panel.yRange ?? ((ys.min() ?? 0)...(ys.max() ?? 1))
            if yr.upperBound <= yr.lowerBound { yr = (yr.lowerBound - 0.5)...(yr.lowerBound + 0.5) }
            func px(_ x: Double) -> Double { x0 + (x - xmin) / max(xmax - xmin, 1e-12) * (x1 - x0) }
            func py(_ y: Double) -> Double { y0 - (y - yr.lowerBound) / (yr.upperBound - yr.lowerBound) * (y0 - y1) }
            s += "<text x=\"\(ox + margin)\" y=\"\(oy + 12)\" font-weight=\"bold\">\(escape(panel.title))</text>\n"
            s += String(format: "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"#999\"/>\n",
                        x0, y1, x1 - x0, y0 - y1)
            for t in 0...4 {
                let yv = yr.lowerBound + (yr.upperBound - yr.lowerBound) * Double(t) / 4
                s += String(format: "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">", x0 - 3, py(yv) + 4) + Self.format(yv) + "</text>\n"
                let xv = xmin + (xmax - xmin) * Double(t) / 4
                s += String(format: "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">", px(xv), y0 + 13) + Self.format(xv) + "</text>\n"
            }
            for (li, line) in panel.lines.enumerated() where !line.isEmpty {
                let path = line.map { String(format: "%.1f,%.1f", px($0.x), py($0.y)) }.joined(separator: " ")
                s += "<polyline fill=\"none\" stroke=\"\(Self.color(li, of: panel.lines.count))\" stroke-width=\"1.2\" points=\"\(path)\"/>\n"
            }
        }
        let ly = top + Double(rows) * ph + 8
        for (k, name) in legend.enumerated() {
            let lx = 10 + Double(k % 3) * (width / 3), yy = ly + Double(k / 3) * 15
            s += String(format: "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" ", lx, yy, lx + 18, yy)
            s += "stroke=\"\(Self.color(k, of: legend.count))\" stroke-width=\"2\"/>"
            s += String(format: "<text x=\"%.1f\" y=\"%.1f\">", lx + 22, yy + 4) + escape(name) + "</text>\n"
        }
        return s + "</svg>\n"
    }

    private func escape(_ t: String) -> String {
        t.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
    }
}
