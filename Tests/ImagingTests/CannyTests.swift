import Foundation
import Imaging
import XCTest

final class CannyTests: XCTestCase {
    /// Every cv2.Canny golden (thresholds 100/200, 50/150, swapped 200/100, 0/0, and GaussianBlur 5x5 σ1.4 first)
    /// on gray and colour images, including sizes that are not multiples of 8: every pixel must agree.
    func testMatchesOpenCV() throws {
        let fixtures = try PreprocessorFixtures()
        var worst = 1.0
        var report: [String] = []
        for testCase in fixtures.manifest.canny {
            let (image, pixels, channels) = try fixtures.input(testCase.image)
            let expected = try PreprocessorFixtures.firstChannel(fixtures.read(testCase.file))
            let blur = testCase.blur.map { GaussianBlur(kernelSize: $0.ksize, sigma: $0.sigma) }
            let detector = CannyEdgeDetector(lowThreshold: testCase.low, highThreshold: testCase.high, blur: blur)
            let edges = detector.edges(of: pixels, width: image.width, height: image.height, channels: channels)
            XCTAssertEqual(edges.count, expected.count, testCase.file)
            let equal = zip(edges, expected).filter { $0 == $1 }.count
            let agreement = Double(equal) / Double(expected.count)
            worst = min(worst, agreement)
            if equal < expected.count { report.append("\(testCase.file): \(expected.count - equal) of \(expected.count) differ") }
            // Exact: a 99% floor would let a wrong `>=` in suppression or a wrong channel tie rule pass (they cost
            // 0.5% of pixels on these images).
            XCTAssertEqual(
                equal, expected.count, "\(testCase.file): \(expected.count - equal) of \(expected.count) pixels differ")
            XCTAssertEqual(Set(edges).subtracting([0, 255]), [], "edge maps hold only 0 and 255")
        }
        XCTAssertGreaterThan(fixtures.manifest.canny.count, 30)
        print("Canny vs OpenCV: \(fixtures.manifest.canny.count) cases, worst agreement \(worst * 100)%")
        report.forEach { print("  " + $0) }
    }

    /// For a gray image stored as RGB, the three-channel path equals the one-channel path (ties pick the first).
    func testColourPathOnGrayEqualsGrayPath() throws {
        let fixtures = try PreprocessorFixtures()
        let (rgb, gray, _) = try fixtures.input("shapes_97x61")
        let detector = CannyEdgeDetector(lowThreshold: 50, highThreshold: 150)
        XCTAssertEqual(detector.edges(of: rgb), detector.edges(of: gray, width: rgb.width, height: rgb.height))
    }

    func testConditioningImageIsWhiteOnBlackInThreeChannels() {
        // A bright square on black: its outline, nothing inside or far outside.
        var pixels = [UInt8](repeating: 0, count: 20 * 20 * 3)
        for y in 5..<15 { for x in 5..<15 { for c in 0..<3 { pixels[(y * 20 + x) * 3 + c] = 200 } } }
        let image = RGBImage(width: 20, height: 20, pixels: pixels)
        let edges = CannyEdgeDetector()(image)
        XCTAssertEqual(edges.width, 20)
        XCTAssertEqual(edges.height, 20)
        XCTAssertEqual(
            edges, RGBImage(width: 20, height: 20, gray: PreprocessorFixtures.firstChannel(edges)), "three equal channels")
        XCTAssertEqual(edges[10, 10].red, 0, "inside the square")
        XCTAssertEqual(edges[1, 1].red, 0, "far outside")
        let onEdge = (5..<15).contains { edges[$0, 4].red == 255 || edges[$0, 5].red == 255 }
        XCTAssertTrue(onEdge, "the top edge is found")
    }

    func testFlatImageHasNoEdgesAndTinyImagesWork() {
        let flat = RGBImage(width: 9, height: 7, red: 10, green: 200, blue: 30)
        XCTAssertEqual(CannyEdgeDetector(lowThreshold: 0, highThreshold: 0).edges(of: flat), [UInt8](repeating: 0, count: 63))
        for (width, height) in [(1, 1), (1, 5), (5, 1), (2, 2)] {
            let pixels = (0..<(width * height)).map { UInt8(($0 * 97) % 256) }
            let edges = CannyEdgeDetector(lowThreshold: 10, highThreshold: 20).edges(of: pixels, width: width, height: height)
            XCTAssertEqual(edges.count, width * height)
        }
    }

    /// A 512x512 colour image should take a few milliseconds (optimised build); this guards against a
    /// 10x regression, not a benchmark.
    func testSpeed() {
        var pixels = [UInt8](repeating: 0, count: 512 * 512 * 3)
        var state: UInt32 = 1
        for i in pixels.indices {
            state = state &* 1_664_525 &+ 1_013_904_223
            let x = (i / 3) % 512, y = i / 3 / 512
            pixels[i] = UInt8(truncatingIfNeeded: (x / 32 + y / 32) % 2 * 160 + Int(state >> 28))
        }
        let image = RGBImage(width: 512, height: 512, pixels: pixels)
        let gray = PreprocessorFixtures.firstChannel(image)
        let detector = CannyEdgeDetector()
        _ = detector.edges(of: image)
        let clock = ContinuousClock()
        let colour = clock.measure { for _ in 0..<5 { _ = detector.edges(of: image) } } / 5
        let single = clock.measure { for _ in 0..<5 { _ = detector.edges(of: gray, width: 512, height: 512) } } / 5
        print("Canny 512x512: RGB \(colour), gray \(single)")
        XCTAssertLessThan(colour, .milliseconds(100))
    }
}
