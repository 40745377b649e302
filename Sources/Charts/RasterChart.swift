import Dependence
import Foundation
import Imaging

/// The raster back end of the project's charts: draws a `ChartDrawing` (the same layout `SVGChart.render()`
/// writes as SVG) into an `RGBImage`, and encodes it as PNG with Imaging's libpng wrapper.
///
/// This lives in its own target because Dependence has no dependencies and Imaging brings libpng; Traces and the
/// CLI depend on it to write each chart as both .svg and .png.
///
/// Coordinates are the drawing's pixels with pixel centres at integer coordinates (a line at y = 137 paints
/// row 137 fully), so the integer-aligned frames and ticks stay crisp. Lines are anti-aliased by coverage
/// (distance from the pixel centre to the segment against half the stroke width); each polyline is composited
/// once, so its joints don't darken. Text uses `BitmapFont`: 11-pixel text at scale 1, larger text (the title) at
/// scale 2 where it fits the canvas; bold draws each glyph twice, one pixel apart.
public struct RasterCanvas: Sendable {
    public let width: Int
    public let height: Int
    public private(set) var pixels: [UInt8]

    public init(width: Int, height: Int, background: ChartDrawing.Color = .white) {
        precondition(width > 0 && height > 0, "canvas needs a positive size")
        self.width = width
        self.height = height
        pixels = [UInt8](repeating: 0, count: width * height * 3)
        for i in 0..<(width * height) {
            pixels[3 * i] = background.red
            pixels[3 * i + 1] = background.green
            pixels[3 * i + 2] = background.blue
        }
    }

    public var image: RGBImage { RGBImage(width: width, height: height, pixels: pixels) }

    /// Paints `color` over pixel (x, y) with opacity `alpha` in [0, 1]; outside the canvas does nothing.
    public mutating func blend(x: Int, y: Int, _ color: ChartDrawing.Color, alpha: Double) {
        guard x >= 0, y >= 0, x < width, y < height, alpha > 0 else { return }
        let a = min(alpha, 1), i = 3 * (y * width + x)
        func mix(_ old: UInt8, _ new: UInt8) -> UInt8 { UInt8((Double(old) * (1 - a) + Double(new) * a).rounded()) }
        pixels[i] = mix(pixels[i], color.red)
        pixels[i + 1] = mix(pixels[i + 1], color.green)
        pixels[i + 2] = mix(pixels[i + 2], color.blue)
    }

    /// A polyline of the given stroke width, anti-aliased.
    public mutating func stroke(_ points: [ChartDrawing.Point], _ color: ChartDrawing.Color, width lineWidth: Double) {
        guard let first = points.first, points.allSatisfy({ $0.x.isFinite && $0.y.isFinite }) else { return }
        let half = max(lineWidth, 1) / 2
        let pad = half + 1
        let minX = max(Int((points.map(\.x).min()! - pad).rounded(.down)), 0)
        let maxX = min(Int((points.map(\.x).max()! + pad).rounded(.up)), width - 1)
        let minY = max(Int((points.map(\.y).min()! - pad).rounded(.down)), 0)
        let maxY = min(Int((points.map(\.y).max()! + pad).rounded(.up)), height - 1)
        guard minX <= maxX, minY <= maxY else { return }
        let bw = maxX - minX + 1
        var coverage = [Double](repeating: 0, count: bw * (maxY - minY + 1))
        let segments = points.count == 1 ? [(first, first)] : Array(zip(points, points.dropFirst()))
        for (a, b) in segments {
            let x0 = max(Int((min(a.x, b.x) - pad).rounded(.down)), minX), x1 = min(Int((max(a.x, b.x) + pad).rounded(.up)), maxX)
            let y0 = max(Int((min(a.y, b.y) - pad).rounded(.down)), minY), y1 = min(Int((max(a.y, b.y) + pad).rounded(.up)), maxY)
            guard x0 <= x1, y0 <= y1 else { continue }
            let dx = b.x - a.x, dy = b.y - a.y, length2 = dx * dx + dy * dy
            for y in y0...y1 {
                for x in x0...x1 {
                    let px = Double(x) - a.x, py = Double(y) - a.y
                    let t = length2 > 0 ? min(max((px * dx + py * dy) / length2, 0), 1) : 0
                    let ex = px - t * dx, ey = py - t * dy
                    let c = min(max(half + 0.5 - (ex * ex + ey * ey).squareRoot(), 0), 1)
                    let k = (y - minY) * bw + (x - minX)
                    if c > coverage[k] { coverage[k] = c }
                }
            }
        }
        for y in minY...maxY {
            for x in minX...maxX where coverage[(y - minY) * bw + (x - minX)] > 0 {
                blend(x: x, y: y, color, alpha: coverage[(y - minY) * bw + (x - minX)])
            }
        }
    }

    /// Glyph scale for a font size in pixels: 1 up to 12 px, then 2.
    public static func scale(forSize size: Double) -> Int { size > 12 ? 2 : 1 }

    /// Width in pixels of `string` drawn at `scale`.
    public static func textWidth(_ string: String, scale: Int, bold: Bool) -> Int {
        let n = string.count
        return n == 0 ? 0 : n * (BitmapFont.advance * scale + (bold ? 1 : 0)) - scale
    }

    /// Draws `string` with its left end at `x` and its baseline at `baseline` (the row below the glyphs' last row).
    public mutating func drawText(_ string: String, x: Int, baseline: Int, scale: Int = 1, bold: Bool = false,
                                  color: ChartDrawing.Color = .black) {
        var penX = x
        for c in string {
            let rows = BitmapFont.glyph(c)
            let top = baseline - BitmapFont.ascent * scale
            for (r, bits) in rows.enumerated() {
                for col in 0..<BitmapFont.glyphWidth where bits & (1 << (BitmapFont.glyphWidth - 1 - col)) != 0 {
                    for dy in 0..<scale {
                        for dx in 0..<(scale + (bold ? 1 : 0)) {
                            blend(x: penX + col * scale + dx, y: top + r * scale + dy, color, alpha: 1)
                        }
                    }
                }
            }
            penX += BitmapFont.advance * scale + (bold ? 1 : 0)
        }
    }

    /// Draws one element of a chart drawing.
    public mutating func draw(_ element: ChartDrawing.Element) {
        switch element {
        case .text(let t):
            // Large text that would run off the canvas at scale 2 (a long title over two narrow panels) drops to scale 1.
            var scale = Self.scale(forSize: t.size)
            if scale > 1, t.anchor == .start, Int(t.x.rounded()) + Self.textWidth(t.string, scale: scale, bold: t.bold) > width { scale = 1 }
            let w = Double(Self.textWidth(t.string, scale: scale, bold: t.bold))
            let left: Double
            switch t.anchor {
            case .start: left = t.x
            case .middle: left = t.x - w / 2
            case .end: left = t.x - w
            }
            guard left.isFinite, t.y.isFinite else { return }
            drawText(t.string, x: Int(left.rounded()), baseline: Int(t.y.rounded()), scale: scale, bold: t.bold)
        case let .rect(x, y, w, h, color):
            let p = [ChartDrawing.Point(x: x, y: y), ChartDrawing.Point(x: x + w, y: y), ChartDrawing.Point(x: x + w, y: y + h),
                     ChartDrawing.Point(x: x, y: y + h), ChartDrawing.Point(x: x, y: y)]
            stroke(p, color, width: 1)
        case let .polyline(points, color, lineWidth):
            stroke(points, color, width: lineWidth)
        case let .line(from, to, color, lineWidth):
            stroke([from, to], color, width: lineWidth)
        }
    }
}

public enum RasterChart {
    /// The drawing as an RGB image on white.
    public static func image(_ drawing: ChartDrawing) -> RGBImage {
        var canvas = RasterCanvas(width: max(drawing.width, 1), height: max(drawing.height, 1))
        for element in drawing.elements { canvas.draw(element) }
        return canvas.image
    }

    /// The drawing as PNG bytes.
    public static func png(_ drawing: ChartDrawing) throws -> Data {
        try ImageCodec.encodePNG(image(drawing))
    }
}

extension SVGChart {
    /// The chart as an RGB image (the same layout as `render()`'s SVG).
    public func rasterImage() -> RGBImage { RasterChart.image(drawing()) }

    /// The chart as PNG bytes.
    public func png() throws -> Data { try RasterChart.png(drawing()) }
}
