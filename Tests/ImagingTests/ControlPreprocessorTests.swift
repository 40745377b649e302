import Foundation
import Imaging
import XCTest

final class ControlPreprocessorTests: XCTestCase {
    private let image = RGBImage(width: 4, height: 1, pixels: [0, 0, 0, 200, 130, 128, 127, 255, 255, 255, 255, 255])

    func testThresholdIsWhereEveryChannelExceedsTheLevel() {
        // A1111 "threshold": result[min(img, axis=2) > thr_a] = 255.
        let out = ControlPreprocessor.threshold(level: 127)(image)
        XCTAssertEqual(out.pixels, [0, 0, 0, 255, 255, 255, 0, 0, 0, 255, 255, 255])
        XCTAssertEqual(ControlPreprocessor.threshold(level: 0)(image).pixels[0..<6], [0, 0, 0, 255, 255, 255])
    }

    func testScribbleTurnsDarkLinesWhite() {
        // White where every channel is below 255 - 127 = 128: only the black pixel.
        let out = ControlPreprocessor.scribble(level: 127)(image)
        XCTAssertEqual(out.pixels, [255, 255, 255, 0, 0, 0, 0, 0, 0, 0, 0, 0])
        let grey = RGBImage(width: 2, height: 1, pixels: [127, 127, 127, 128, 128, 128])
        XCTAssertEqual(ControlPreprocessor.scribble(level: 127)(grey).pixels, [255, 255, 255, 0, 0, 0])
    }

    func testInvertAndPassthrough() {
        XCTAssertEqual(ControlPreprocessor.invert(image).pixels, image.pixels.map { 255 - $0 })
        XCTAssertEqual(ControlPreprocessor.passthrough(image), image)
    }

    func testCannyMatchesTheDetector() {
        var pixels = [UInt8](repeating: 30, count: 16 * 16 * 3)
        for y in 4..<12 { for x in 4..<12 { pixels[(y * 16 + x) * 3 + 1] = 220 } }
        let square = RGBImage(width: 16, height: 16, pixels: pixels)
        XCTAssertEqual(
            ControlPreprocessor(name: "canny")!(square), CannyEdgeDetector(lowThreshold: 100, highThreshold: 200)(square))
        XCTAssertTrue(ControlPreprocessor(name: "canny")!(square).pixels.contains(255))
    }

    func testNames() throws {
        XCTAssertEqual(ControlPreprocessor(name: "none"), .passthrough)
        XCTAssertEqual(ControlPreprocessor(name: "canny"), .canny(low: 100, high: 200))
        XCTAssertEqual(ControlPreprocessor(name: "invert (from white bg & black line)"), .invert)
        XCTAssertEqual(ControlPreprocessor(name: "threshold"), .threshold(level: 127))
        XCTAssertEqual(ControlPreprocessor(name: "scribble"), .scribble(level: 127))
        XCTAssertEqual(try ControlPreprocessor.named("canny", thresholdA: 50, thresholdB: 150), .canny(low: 50, high: 150))
        XCTAssertEqual(try ControlPreprocessor.named("canny", thresholdA: -1, thresholdB: -1), .canny(low: 100, high: 200))
        XCTAssertEqual(try ControlPreprocessor.named("threshold", thresholdA: 64), .threshold(level: 64))
        for name in ControlPreprocessor.moduleList + ControlPreprocessor.moduleLabels {
            XCTAssertNotNil(ControlPreprocessor(name: name), name)
        }
        XCTAssertEqual(ControlPreprocessor.moduleList.first, "none")
        XCTAssertThrowsError(try ControlPreprocessor.named("scribble_hed")) { error in
            XCTAssertEqual(error as? ControlPreprocessorError, .unsupported("scribble_hed"))
            let message = "\(error)"
            for name in ControlPreprocessor.moduleList { XCTAssertTrue(message.contains(name), message) }
        }
        XCTAssertNil(ControlPreprocessor(name: "depth_midas"))
    }
}
