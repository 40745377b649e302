import Imaging
import ParityTesting
import XCTest

/// SSIM and PSNR against scikit-image (tools/parity/make_image_quality_golden.py writes the golden:
/// `structural_similarity(channel_axis=-1, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
/// data_range=255)` and `peak_signal_noise_ratio(data_range=255)`).
final class ImageQualityTests: XCTestCase {
    private func image(_ golden: Golden, _ key: String) throws -> RGBImage {
        let tensor = try golden.tensor(key)
        XCTAssertEqual(tensor.shape.count, 3)
        return RGBImage(width: tensor.shape[1], height: tensor.shape[0], pixels: tensor.scalars.map { UInt8($0) })
    }

    func testSSIMAndPSNRMatchScikitImage() throws {
        let golden = try Golden("images/image_quality")
        let cases = Int(golden.metadata["cases"] ?? "") ?? 0
        XCTAssertEqual(cases, 3)
        for index in 0..<cases {
            let a = try image(golden, "input.a\(index)"), b = try image(golden, "input.b\(index)")
            let ssim = try ImageQuality.ssim(a, b), psnr = try ImageQuality.psnr(a, b)
            XCTAssertEqual(ssim, Double(try golden.tensor("output.ssim\(index)").scalars[0]), accuracy: 1e-5, "case \(index)")
            XCTAssertEqual(psnr, Double(try golden.tensor("output.psnr\(index)").scalars[0]), accuracy: 1e-3, "case \(index)")
        }
    }

    func testIdenticalImagesAreSSIMOneAndInfinitePSNR() throws {
        let pixels = (0..<(12 * 14 * 3)).map { UInt8(($0 * 37) % 256) }
        let a = RGBImage(width: 12, height: 14, pixels: pixels)
        XCTAssertEqual(try ImageQuality.ssim(a, a), 1, accuracy: 1e-12)
        XCTAssertEqual(try ImageQuality.psnr(a, a), .infinity)
    }

    func testSSIMIsSymmetricAndLowerForMoreNoise() throws {
        let width = 24, height = 24
        let base = (0..<(width * height * 3)).map { UInt8((($0 / 3) % width) * 10 % 256) }
        func noisy(_ amplitude: Int) -> RGBImage {
            RGBImage(width: width, height: height, pixels: base.enumerated().map { i, v in
                UInt8(clamping: Int(v) + ((i * 7919) % (2 * amplitude + 1)) - amplitude)
            })
        }
        let a = RGBImage(width: width, height: height, pixels: base)
        let small = try ImageQuality.ssim(a, noisy(5)), large = try ImageQuality.ssim(a, noisy(40))
        XCTAssertEqual(small, try ImageQuality.ssim(noisy(5), a), accuracy: 1e-12)
        XCTAssertGreaterThan(small, large)
        XCTAssertGreaterThan(try ImageQuality.psnr(a, noisy(5)), try ImageQuality.psnr(a, noisy(40)))
    }

    func testMismatchedOrTooSmallImagesThrow() {
        let a = RGBImage(width: 12, height: 12, red: 1, green: 2, blue: 3)
        let b = RGBImage(width: 12, height: 13, red: 1, green: 2, blue: 3)
        XCTAssertThrowsError(try ImageQuality.ssim(a, b))
        XCTAssertThrowsError(try ImageQuality.psnr(a, b))
        let tiny = RGBImage(width: 10, height: 12, red: 1, green: 2, blue: 3)
        XCTAssertThrowsError(try ImageQuality.ssim(tiny, tiny))
    }
}
