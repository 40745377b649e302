import Charts
import Dependence
import Foundation
import Imaging
import XCTest

final class ChartsTests: XCTestCase {
    /// One panel, one horizontal line at y = 0.5 with the y range 0...1: it lands on the middle row of the plot area.
    func testHorizontalLineLandsOnMiddleRow() {
        let chart = SVGChart(title: "t", xLabel: "x", yLabel: "y",
                             panels: [SVGChart.Panel(title: "p", lines: [[(x: 0, y: 0.5), (x: 1, y: 0.5)]], yRange: 0...1)],
                             legend: [])
        let area = chart.plotArea(0)
        let image = chart.rasterImage()
        let drawing = chart.drawing()
        XCTAssertEqual(image.width, drawing.width)
        XCTAssertEqual(image.height, drawing.height)
        let middle = Int(((area.y0 + area.y1) / 2).rounded())
        XCTAssertEqual(Double(middle), (area.y0 + area.y1) / 2, "layout puts the plot area's middle on a pixel row")
        // Colour of line 0 of 1: hsl(0, 70%, 42%).
        let expected = ChartDrawing.Color(hue: 0, saturation: 0.7, lightness: 0.42)
        XCTAssertEqual(expected.svg, "hsl(0,70%,42%)")
        let columns = (Int(area.x0) + 10)...(Int(area.x1) - 10)
        for x in columns {
            let p = image[x, middle]
            XCTAssertEqual([p.red, p.green, p.blue], [expected.red, expected.green, expected.blue], "x = \(x)")
            for y in [middle - 3, middle - 2, middle + 2, middle + 3] {
                let q = image[x, y]
                XCTAssertEqual([q.red, q.green, q.blue], [255, 255, 255], "x = \(x), y = \(y)")
            }
        }
        // The frame is grey on its edges, and the top-left corner outside it is white.
        let frame = image[Int(area.x0), Int(area.y1) + 20]
        XCTAssertEqual([frame.red, frame.green, frame.blue], [0x99, 0x99, 0x99])
        XCTAssertEqual(image[0, image.height - 1].red, 255)
    }

    /// A glyph renders its bitmap at the baseline, pixel for pixel.
    func testGlyphRendersExpectedBitmap() {
        var canvas = RasterCanvas(width: 12, height: 12)
        canvas.drawText("A", x: 2, baseline: 9)
        let expected = [
            ".###.",
            "#...#",
            "#...#",
            "#####",
            "#...#",
            "#...#",
            "#...#",
        ]
        let image = canvas.image
        for y in 0..<12 {
            for x in 0..<12 {
                let row = y - 2, col = x - 2
                let ink = (0..<7).contains(row) && (0..<5).contains(col)
                    && Array(expected[row])[col] == "#"
                XCTAssertEqual(image[x, y].red, ink ? 0 : 255, "(\(x), \(y))")
            }
        }
        XCTAssertEqual(BitmapFont.glyph("A"), [0b01110, 0b10001, 0b10001, 0b11111, 0b10001, 0b10001, 0b10001])
        // Descenders go below the baseline; unknown characters draw as '?'.
        XCTAssertEqual(BitmapFont.glyph("g").count, 9)
        XCTAssertEqual(BitmapFont.glyph("€"), BitmapFont.glyph("?"))
        XCTAssertTrue(BitmapFont.hasGlyph("²"))
    }

    func testFontCoversPrintableASCII() {
        for code in 32...126 {
            let c = Character(UnicodeScalar(UInt8(code)))
            XCTAssertTrue(BitmapFont.hasGlyph(c), "missing glyph \(c)")
            if c != " " { XCTAssertTrue(BitmapFont.glyph(c).contains { $0 != 0 }, "blank glyph \(c)") }
        }
        XCTAssertTrue(BitmapFont.glyph(" ").allSatisfy { $0 == 0 })
    }

    func testTextAnchors() {
        let w = RasterCanvas.textWidth("abc", scale: 1, bold: false)
        XCTAssertEqual(w, 17)
        var canvas = RasterCanvas(width: 40, height: 12)
        canvas.draw(.text(ChartDrawing.Text(x: 30, y: 9, string: "l", anchor: .end)))
        // 'l' is 5 columns wide, so anchored at its end x = 30 it spans columns 25...29; its bottom row ".###."
        // (baseline 9, so row 8) inks 26...28.
        let image = canvas.image
        XCTAssertEqual(image[29, 8].red, 255)
        XCTAssertEqual(image[28, 8].red, 0)
        XCTAssertEqual(image[26, 8].red, 0)
        XCTAssertEqual(image[25, 8].red, 255)
    }

    /// PNG round trip through Imaging's codec, and distinct colours for the lines of a panel.
    func testPNGRoundTripAndDistinctColours() throws {
        let lines: [[(x: Double, y: Double)]] = (0..<5).map { k in (0...10).map { (x: Double($0), y: Double($0 * k)) } }
        var chart = SVGChart(title: "Power against R² (α = 0.05)", xLabel: "R²", yLabel: "power",
                             panels: [SVGChart.Panel(title: "dcor", lines: lines), SVGChart.Panel(title: "mic", lines: lines)],
                             legend: (0..<5).map { "f\($0)" })
        chart.columns = 2
        let image = chart.rasterImage()
        let png = try chart.png()
        XCTAssertEqual(ImageCodec.sniff(png), .png)
        let decoded = try ImageCodec.decode(png)
        XCTAssertEqual(decoded, image)
        let colours = Set((0..<5).map { k -> [UInt8] in
            let c = ChartDrawing.Color(hue: Double(k) * 72, saturation: 0.7, lightness: k % 2 == 0 ? 0.42 : 0.30)
            return [c.red, c.green, c.blue]
        })
        XCTAssertEqual(colours.count, 5)
        var present = Set<[UInt8]>()
        for y in 0..<image.height {
            for x in 0..<image.width {
                let p = image[x, y]
                if colours.contains([p.red, p.green, p.blue]) { present.insert([p.red, p.green, p.blue]) }
            }
        }
        XCTAssertEqual(present, colours, "every line's colour appears at full strength")
    }

    /// The SVG back end writes the same layout: one polyline per line, the frame, the text.
    func testSVGFromSameDrawing() {
        let chart = SVGChart(title: "a < b", xLabel: "x", yLabel: "y",
                             panels: [SVGChart.Panel(title: "p", lines: [[(x: 0, y: 0), (x: 1, y: 1)]], yRange: 0...1)], legend: ["one"])
        let svg = chart.render()
        XCTAssertTrue(svg.hasPrefix("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"1060\""))
        XCTAssertTrue(svg.contains(">a &lt; b</text>"))
        XCTAssertEqual(svg.components(separatedBy: "<polyline").count - 1, 1)
        XCTAssertEqual(svg.components(separatedBy: "<line ").count - 1, 1)  // the legend swatch
        XCTAssertTrue(svg.contains("stroke=\"hsl(0,70%,42%)\""))
        XCTAssertTrue(svg.contains("stroke=\"#999999\""))
    }
}
