import Foundation
import Imaging
import ParityTesting
import XCTest

final class ImageCodecTests: XCTestCase {
    private var fixtures: URL { Golden.fixturesDirectory.appendingPathComponent("images") }

    /// Every fixture decodes to exactly the pixels PIL's `convert("RGB")` gives (tools/parity/make_image_fixtures.py).
    func testDecodingMatchesPIL() throws {
        for name in ["photo.jpg", "photo_420.jpg", "gray.jpg", "gray.png", "rgba.png", "palette.png"] {
            let image = try ImageCodec.read(contentsOf: fixtures.appendingPathComponent(name))
            let expectedName = name.replacingOccurrences(of: ".", with: "_") + ".expected.png"
            let expected = try ImageCodec.read(contentsOf: fixtures.appendingPathComponent(expectedName))
            XCTAssertEqual(image.width, expected.width, name)
            XCTAssertEqual(image.height, expected.height, name)
            let differing = zip(image.pixels, expected.pixels).filter { $0 != $1 }.count
            XCTAssertEqual(differing, 0, "\(name): \(differing) bytes differ from PIL")
        }
    }

    func testPNGRoundTripWithParametersChunk() throws {
        var pixels = [UInt8](repeating: 0, count: 5 * 3 * 3)
        for i in pixels.indices { pixels[i] = UInt8((i * 37) % 256) }
        let image = RGBImage(width: 5, height: 3, pixels: pixels)
        let parameters = "a red circle\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 42, Size: 5x3"
        let png = try ImageCodec.encodePNG(image, textChunks: [("parameters", parameters)])
        XCTAssertEqual(try ImageCodec.decode(png), image)
        XCTAssertEqual(ImageCodec.textChunks(of: png)["parameters"], parameters)
    }

    func testTensorConversions() {
        let image = RGBImage(width: 2, height: 1, pixels: [0, 128, 255, 10, 20, 30])
        let signed = image.tensor()
        XCTAssertEqual(signed.shape, [1, 1, 2, 3])
        XCTAssertEqual(signed[0, 0, 0, 0], -1)
        XCTAssertEqual(signed[0, 0, 0, 2], 1)
        XCTAssertEqual(RGBImage.images(fromSigned: signed), [image])
    }

    func testBadInputGivesErrors() throws {
        XCTAssertThrowsError(try ImageCodec.decode(Data())) { XCTAssertEqual($0 as? ImageError, .empty) }
        XCTAssertThrowsError(try ImageCodec.decode(Data("GIF89a....".utf8))) { error in
            XCTAssertTrue("\(error)".contains("unsupported image format"), "\(error)")
        }
        for name in ["photo.jpg", "rgba.png"] {
            let data = try Data(contentsOf: fixtures.appendingPathComponent(name))
            XCTAssertThrowsError(try ImageCodec.decode(data.prefix(data.count / 2)), "truncated \(name)") { error in
                XCTAssertTrue("\(error)".contains("corrupt"), "\(error)")
            }
            var flipped = data
            for i in stride(from: 40, to: flipped.count, by: 7) { flipped[i] ^= 0x5A }
            XCTAssertThrowsError(try ImageCodec.decode(flipped), "garbled \(name)")
        }
        let big = try Data(contentsOf: fixtures.appendingPathComponent("photo.jpg"))
        XCTAssertThrowsError(try ImageCodec.decode(big, limits: ImageLimits(maximumSide: 16))) { error in
            guard case .tooLarge = error as? ImageError else { return XCTFail("\(error)") }
        }
    }
}
