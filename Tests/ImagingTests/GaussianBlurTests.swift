import Foundation
import Imaging
import XCTest

final class GaussianBlurTests: XCTestCase {
    /// cv2.GaussianBlur on 8-bit images is bit-exact fixed point; so is ours.
    func testMatchesOpenCVExactly() throws {
        let fixtures = try PreprocessorFixtures()
        for testCase in fixtures.manifest.blur {
            let (rgb, pixels, channels) = try fixtures.input(testCase.image)
            let expectedImage = try fixtures.read(testCase.file)
            let expected = channels == 1 ? PreprocessorFixtures.firstChannel(expectedImage) : expectedImage.pixels
            let blur = GaussianBlur(kernelSize: testCase.ksize, sigma: testCase.sigma)
            let blurred = blur.apply(to: pixels, width: rgb.width, height: rgb.height, channels: channels)
            let differing = zip(blurred, expected).filter { $0 != $1 }.count
            let maxDifference = zip(blurred, expected).map { abs(Int($0) - Int($1)) }.max() ?? 0
            XCTAssertEqual(differing, 0, "\(testCase.file): \(differing) bytes differ, by up to \(maxDifference)")
        }
        XCTAssertGreaterThanOrEqual(fixtures.manifest.blur.count, 15)
    }

    func testKernels() {
        // OpenCV's tables for sigma <= 0, and sizes derived from sigma.
        XCTAssertEqual(GaussianBlur(kernelSize: 5).fixedPointKernel, [16, 64, 96, 64, 16])
        XCTAssertEqual(GaussianBlur(kernelSize: 3).fixedPointKernel, [64, 128, 64])
        XCTAssertEqual(GaussianBlur(sigma: 2).kernelSize, 13)
        XCTAssertEqual(GaussianBlur(sigma: 0.5).kernelSize, 5)
        for size in [3, 5, 7, 9, 11] {
            for sigma in [0, 0.8, 1.4, 3] {
                XCTAssertEqual(GaussianBlur(kernelSize: size, sigma: sigma).fixedPointKernel.reduce(0, +), 256)
            }
        }
    }
}
