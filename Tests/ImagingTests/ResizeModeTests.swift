import Foundation
import Imaging
import XCTest

final class ResizeModeTests: XCTestCase {
    /// A `width x height` image whose pixel (x, y) is (x, y, 7).
    private func coordinates(_ width: Int, _ height: Int) -> RGBImage {
        var pixels: [UInt8] = []
        for y in 0..<height { for x in 0..<width { pixels += [UInt8(x), UInt8(y), 7] } }
        return RGBImage(width: width, height: height, pixels: pixels)
    }

    func testJustResizeStretches() {
        let out = ResizeMode.justResize.apply(to: coordinates(4, 2), width: 8, height: 8, filter: .nearest)
        XCTAssertEqual(out.width, 8)
        XCTAssertEqual(out.height, 8)
        XCTAssertTrue(out[0, 0] == (0, 0, 7))
        XCTAssertTrue(out[7, 7] == (3, 1, 7))
        XCTAssertTrue(out[2, 3] == (1, 0, 7))
        XCTAssertTrue(out[2, 4] == (1, 1, 7))
    }

    /// 8x4 into 4x4: scale by max(4/4, 4/8) = 1, keep the middle four columns (offset (8 - 4) / 2 = 2).
    func testCropAndResizeCoversAndCentres() {
        let out = ResizeMode.cropAndResize.apply(to: coordinates(8, 4), width: 4, height: 4, filter: .nearest)
        XCTAssertEqual(out.width, 4)
        XCTAssertEqual(out.height, 4)
        for y in 0..<4 { for x in 0..<4 { XCTAssertTrue(out[x, y] == (UInt8(x + 2), UInt8(y), 7), "(\(x), \(y))") } }
        // 4x8 into 8x8: scaled 2x to 8x16, rows 4..<12 kept, so output row y shows source row (y + 4) / 2.
        let tall = ResizeMode.cropAndResize.apply(to: coordinates(4, 8), width: 8, height: 8, filter: .nearest)
        for y in 0..<8 { XCTAssertTrue(tall[5, y] == (2, UInt8((y + 4) / 2), 7), "row \(y)") }
        // 5x3 into 4x4: k = 4/3, scaled to round(6.67) x 4 = 7x4, crop offset (7 - 4) / 2 = 1 column.
        let odd = ResizeMode.cropAndResize.apply(to: coordinates(5, 3), width: 4, height: 4, filter: .nearest)
        let scaled = coordinates(5, 3).resized(width: 7, height: 4, filter: .nearest)
        for y in 0..<4 { for x in 0..<4 { XCTAssertTrue(odd[x, y] == scaled[x + 1, y]) } }
    }

    /// 4x2 into 8x8: scale by min(8/2, 8/4) = 2 to 8x4, placed at row (8 - 4) / 2 = 2, the rest the border median.
    func testResizeAndFillFitsAndPadsWithBorderMedian() {
        let source = coordinates(4, 2)
        let out = ResizeMode.resizeAndFill.apply(to: source, width: 8, height: 8, filter: .nearest)
        XCTAssertEqual(out.width, 8)
        XCTAssertEqual(out.height, 8)
        // Border pixels: rows 0 and 1 (x = 0,1,2,3 each), columns 0 and 3 (y = 0, 1): reds 0,1,2,3 twice, 0,0,3,3;
        // sorted 0 0 0 0 1 1 2 2 3 3 3 3: median (1 + 2) / 2 = 1.5 -> 1. Greens: six 0s, six 1s -> 0.5 -> 0.
        let fill = source.medianBorderColor()
        XCTAssertTrue(fill == (1, 0, 7))
        for y in 0..<8 {
            for x in 0..<8 {
                let expected: (red: UInt8, green: UInt8, blue: UInt8) =
                    (2..<6).contains(y) ? (UInt8(x / 2), UInt8((y - 2) / 2), 7) : fill
                XCTAssertTrue(out[x, y] == expected, "(\(x), \(y)): \(out[x, y])")
            }
        }
        // Wide target: a 2x4 image into 8x4 sits in columns 3..<5.
        let narrow = ResizeMode.resizeAndFill.apply(to: coordinates(2, 4), width: 8, height: 4, filter: .nearest)
        for x in 0..<8 { XCTAssertEqual(narrow[x, 1].blue, 7) }
        XCTAssertTrue(narrow[3, 2] == (0, 2, 7))
        XCTAssertTrue(narrow[4, 2] == (1, 2, 7))
        XCTAssertTrue(narrow[0, 2] == coordinates(2, 4).medianBorderColor())
    }

    func testSameAspectIsPlainResizeInEveryMode() {
        let source = coordinates(6, 3)
        let plain = source.resized(width: 12, height: 6)
        for mode in ResizeMode.allCases {
            XCTAssertEqual(mode.apply(to: source, width: 12, height: 6), plain, "\(mode)")
        }
    }

    func testNames() {
        XCTAssertEqual(ResizeMode(name: "Just Resize"), .justResize)
        XCTAssertEqual(ResizeMode(name: "Crop and Resize"), .cropAndResize)
        XCTAssertEqual(ResizeMode(name: "Resize and Fill"), .resizeAndFill)
        XCTAssertEqual(ResizeMode(name: "Inner Fit (Scale to Fit)"), .cropAndResize)
        XCTAssertEqual(ResizeMode(name: "Envelope (Outer Fit)"), .resizeAndFill)
        XCTAssertEqual(ResizeMode(name: "resize_and_fill"), .resizeAndFill)
        XCTAssertEqual(ResizeMode(name: "1"), .cropAndResize)
        XCTAssertEqual(ResizeMode(index: 2), .resizeAndFill)
        XCTAssertNil(ResizeMode(name: "stretch"))
        for mode in ResizeMode.allCases {
            XCTAssertEqual(ResizeMode(name: mode.displayName), mode)
            XCTAssertEqual(ResizeMode(name: mode.rawValue), mode)
        }
    }
}
