import Foundation
import Imaging
import XCTest

final class ResizeTests: XCTestCase {
    /// PIL's `Image.resize` goldens (LANCZOS, BICUBIC, BILINEAR, NEAREST; down, up and one-axis scales).
    func testMatchesPIL() throws {
        let fixtures = try PreprocessorFixtures()
        for testCase in fixtures.manifest.resize {
            let (rgb, _, _) = try fixtures.input(testCase.image)
            let expected = try fixtures.read(testCase.file)
            let filter = try XCTUnwrap(ResampleFilter(name: testCase.filter))
            let resized = rgb.resized(width: testCase.width, height: testCase.height, filter: filter)
            XCTAssertEqual(resized.width, expected.width)
            XCTAssertEqual(resized.height, expected.height)
            let differing = zip(resized.pixels, expected.pixels).filter { $0 != $1 }.count
            let maxDifference = zip(resized.pixels, expected.pixels).map { abs(Int($0) - Int($1)) }.max() ?? 0
            XCTAssertEqual(differing, 0, "\(testCase.file): \(differing) bytes differ, by up to \(maxDifference)")
        }
        XCTAssertGreaterThanOrEqual(fixtures.manifest.resize.count, 10)
    }

    func testSameSizeIsIdentityAndSolidStaysSolid() {
        let image = RGBImage(width: 7, height: 5, pixels: (0..<105).map { UInt8($0 * 2) })
        XCTAssertEqual(image.resized(width: 7, height: 5), image)
        let solid = RGBImage(width: 13, height: 9, red: 200, green: 0, blue: 255)
        for filter in ResampleFilter.allCases {
            XCTAssertEqual(
                solid.resized(width: 31, height: 4, filter: filter),
                RGBImage(width: 31, height: 4, red: 200, green: 0, blue: 255), "\(filter)")
        }
    }

    func testFilterNames() {
        XCTAssertEqual(ResampleFilter(name: "LANCZOS"), .lanczos)
        XCTAssertEqual(ResampleFilter(name: "antialias"), .lanczos)
        XCTAssertEqual(ResampleFilter(name: "Bicubic"), .bicubic)
        XCTAssertNil(ResampleFilter(name: "hamming"))
    }
}
