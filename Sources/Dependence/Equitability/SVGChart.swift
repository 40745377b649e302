import Foundation

/// Small-multiple line charts: one panel per measure, one line per relationship.
///
/// The chart is laid out once, renderer-neutrally, by `drawing()` (a `ChartDrawing`: text, rectangles and
/// polylines in pixel coordinates); `render()` writes that drawing as SVG text here, and the `Charts` target
/// (`RasterChart`, which depends on Imaging) draws the same drawing into an RGB image and a PNG. This target
/// keeps no dependencies; the raster back end lives where libpng already is.
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

    static func color(_ k: Int, of count: Int) -> ChartDrawing.Color {
        ChartDrawing.Color(hue: Double(k) * 360 / Double(max(count, 1)), saturation: 0.7, lightness: k % 2 == 0 ? 0.42 : 0.30)
    }

    static func format(_ v: Double) -> String {
        if v == 0 { return "0" }
        if abs(v) >= 1000 || abs(v) < 0.01 { return String(format: "%.2g", v) }
        return String(format: "%.2f", v)
    }

    /// Geometry of panel `k`: its plot area (x0 left, x1 right, y0 bottom, y1 top, in pixels).
    public struct PlotArea: Sendable, Equatable {
        public var x0: Double, x1: Double, y0: Double, y1: Double
    }

    static let panelWidth = 260.0, panelHeight = 190.0, margin = 44.0, top = 48.0

    /// The plot area of panel `k` in the drawing.
    public func plotArea(_ k: Int) -> PlotArea {
        let ox = 10 + Double(k % columns) * Self.panelWidth, oy = Self.top + Double(k / columns) * Self.panelHeight
        return PlotArea(x0: ox + Self.margin, x1: ox + Self.panelWidth - 12, y0: oy + Self.panelHeight - 30, y1: oy + 18)
    }

    /// The chart laid out as text, rectangles and polylines (y grows downwards; text positions are baselines).
    public func drawing() -> ChartDrawing {
        let pw = Self.panelWidth, ph = Self.panelHeight, top = Self.top
        let rows = (panels.count + columns - 1) / columns
        let legendHeight = Double((legend.count + 2) / 3) * 15 + 20
        let width = Double(columns) * pw + 20, height = top + Double(rows) * ph + legendHeight
        var d = ChartDrawing(width: Int(width), height: Int(height))
        d.elements.append(.text(ChartDrawing.Text(x: 10, y: 20, string: title, size: 15, bold: true)))
        d.elements.append(.text(ChartDrawing.Text(x: 10, y: 38, string: "x: \(xLabel); y: \(yLabel)")))
        for (k, panel) in panels.enumerated() {
            let oy = top + Double(k / columns) * ph
            let area = plotArea(k)
            let (x0, x1, y0, y1) = (area.x0, area.x1, area.y0, area.y1)
            let points = panel.lines.flatMap { $0 }
            let xs = points.map(\.x), ys = points.map(\.y)
            let xmin = xs.min() ?? 0, xmax = xs.max() ?? 1
            var yr = panel.yRange ?? ((ys.min() ?? 0)...(ys.max() ?? 1))
            if yr.upperBound <= yr.lowerBound { yr = (yr.lowerBound - 0.5)...(yr.lowerBound + 0.5) }
            func px(_ x: Double) -> Double { x0 + (x - xmin) / max(xmax - xmin, 1e-12) * (x1 - x0) }
            func py(_ y: Double) -> Double { y0 - (y - yr.lowerBound) / (yr.upperBound - yr.lowerBound) * (y0 - y1) }
            d.elements.append(.text(ChartDrawing.Text(x: x0, y: oy + 12, string: panel.title, bold: true)))
            d.elements.append(.rect(x: x0, y: y1, width: x1 - x0, height: y0 - y1, stroke: .gray))
            for t in 0...4 {
                let yv = yr.lowerBound + (yr.upperBound - yr.lowerBound) * Double(t) / 4
                d.elements.append(.text(ChartDrawing.Text(x: x0 - 3, y: py(yv) + 4, string: Self.format(yv), anchor: .end)))
                let xv = xmin + (xmax - xmin) * Double(t) / 4
                d.elements.append(.text(ChartDrawing.Text(x: px(xv), y: y0 + 13, string: Self.format(xv), anchor: .middle)))
            }
            for (li, line) in panel.lines.enumerated() where !line.isEmpty {
                d.elements.append(.polyline(line.map { ChartDrawing.Point(x: px($0.x), y: py($0.y)) },
                                            stroke: Self.color(li, of: panel.lines.count), width: 1.2))
            }
        }
        let ly = top + Double(rows) * ph + 8
        for (k, name) in legend.enumerated() {
            let lx = 10 + Double(k % 3) * (width / 3), yy = ly + Double(k / 3) * 15
            d.elements.append(.line(from: ChartDrawing.Point(x: lx, y: yy), to: ChartDrawing.Point(x: lx + 18, y: yy),
                                    stroke: Self.color(k, of: legend.count), width: 2))
            d.elements.append(.text(ChartDrawing.Text(x: lx + 22, y: yy + 4, string: name)))
        }
        return d
    }

    /// The chart as SVG text.
    public func render() -> String { drawing().svg() }
}

/// A chart laid out in pixels, independent of the output format: `svg()` here, `RasterChart` (target Charts) for PNG.
public struct ChartDrawing: Sendable {
    public struct Point: Sendable, Equatable {
        public var x: Double, y: Double
        public init(x: Double, y: Double) { self.x = x; self.y = y }
    }

    /// A colour given as HSL (how the SVG names it) with its sRGB bytes (what a raster back end paints).
    public struct Color: Sendable, Equatable {
        public var red: UInt8, green: UInt8, blue: UInt8
        public var svg: String

        public init(red: UInt8, green: UInt8, blue: UInt8) {
            self.red = red
            self.green = green
            self.blue = blue
            svg = String(format: "#%02x%02x%02x", red, green, blue)
        }

        /// Hue in degrees, saturation and lightness in [0, 1] (CSS `hsl()`).
        public init(hue: Double, saturation: Double, lightness: Double) {
            let c = (1 - abs(2 * lightness - 1)) * saturation
            let h = hue.truncatingRemainder(dividingBy: 360) / 60
            let x = c * (1 - abs(h.truncatingRemainder(dividingBy: 2) - 1))
            let (r, g, b): (Double, Double, Double) =
                h < 1 ? (c, x, 0) : h < 2 ? (x, c, 0) : h < 3 ? (0, c, x) : h < 4 ? (0, x, c) : h < 5 ? (x, 0, c) : (c, 0, x)
            let m = lightness - c / 2
            func byte(_ v: Double) -> UInt8 { UInt8(min(max(((v + m) * 255).rounded(), 0), 255)) }
            red = byte(r)
            green = byte(g)
            blue = byte(b)
            svg = String(format: "hsl(%.0f,%.0f%%,%.0f%%)", hue, saturation * 100, lightness * 100)
        }

        public static let black = Color(red: 0, green: 0, blue: 0)
        public static let gray = Color(red: 0x99, green: 0x99, blue: 0x99)
        public static let white = Color(red: 255, green: 255, blue: 255)
    }

    public enum Anchor: Sendable, Equatable { case start, middle, end }

    /// Text with its anchor point on the baseline; `size` in pixels (11: body text, 15: the title).
    public struct Text: Sendable, Equatable {
        public var x: Double, y: Double
        public var string: String
        public var size: Double
        public var bold: Bool
        public var anchor: Anchor
        public init(x: Double, y: Double, string: String, size: Double = 11, bold: Bool = false, anchor: Anchor = .start) {
            self.x = x
            self.y = y
            self.string = string
            self.size = size
            self.bold = bold
            self.anchor = anchor
        }
    }

    public enum Element: Sendable {
        case text(Text)
        /// An outlined rectangle, 1 pixel wide.
        case rect(x: Double, y: Double, width: Double, height: Double, stroke: Color)
        case polyline([Point], stroke: Color, width: Double)
        /// A single segment (legend swatches).
        case line(from: Point, to: Point, stroke: Color, width: Double)
    }

    public var width: Int
    public var height: Int
    public var elements: [Element] = []

    public init(width: Int, height: Int, elements: [Element] = []) {
        self.width = width
        self.height = height
        self.elements = elements
    }

    /// The drawing as an SVG document on a white background.
    public func svg() -> String {
        var s = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(width)\" height=\"\(height)\" "
        s += "font-family=\"sans-serif\" font-size=\"11\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
        for element in elements {
            switch element {
            case .text(let t):
                s += String(format: "<text x=\"%.1f\" y=\"%.1f\"", t.x, t.y)
                if t.size != 11 { s += String(format: " font-size=\"%.0f\"", t.size) }
                if t.bold { s += " font-weight=\"bold\"" }
                switch t.anchor {
                case .start: break
                case .middle: s += " text-anchor=\"middle\""
                case .end: s += " text-anchor=\"end\""
                }
                s += ">\(Self.escape(t.string))</text>\n"
            case let .rect(x, y, w, h, stroke):
                s += String(format: "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" ", x, y, w, h)
                s += "stroke=\"\(stroke.svg)\"/>\n"
            case let .polyline(points, stroke, width):
                let path = points.map { String(format: "%.1f,%.1f", $0.x, $0.y) }.joined(separator: " ")
                s += "<polyline fill=\"none\" stroke=\"\(stroke.svg)\" stroke-width=\"\(width)\" points=\"\(path)\"/>\n"
            case let .line(a, b, stroke, width):
                s += String(format: "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" ", a.x, a.y, b.x, b.y)
                s += "stroke=\"\(stroke.svg)\" stroke-width=\"\(width)\"/>\n"
            }
        }
        return s + "</svg>\n"
    }

    static func escape(_ t: String) -> String {
        t.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
    }
}
