import Foundation
import Imaging
import ParityTesting
import XCTest

/// `Tests/Fixtures/preprocessors/`: OpenCV and PIL outputs written by tools/parity/make_preprocessor_goldens.py,
/// listed in `manifest.json`.
struct PreprocessorFixtures {
    struct Image: Decodable {
        let name: String
        let file: String
        let channels: Int
    }
    struct Blur: Decodable {
        let ksize: Int
        let sigma: Double
    }
    struct CannyCase: Decodable {
        let image: String
        let low: Double
        let high: Double
        let blur: Blur?
        let file: String
    }
    struct BlurCase: Decodable {
        let image: String
        let ksize: Int
        let sigma: Double
        let file: String
    }
    struct ResizeCase: Decodable {
        let image: String
        let width: Int
        let height: Int
        let filter: String
        let file: String
    }
    struct Manifest: Decodable {
        let images: [Image]
        let canny: [CannyCase]
        let blur: [BlurCase]
        let resize: [ResizeCase]
    }

    struct FixtureError: Error, CustomStringConvertible {
        let message: String
        var description: String { message }
    }

    static let regenerate = "/work/venv/bin/python tools/parity/make_preprocessor_goldens.py"
    let directory = Golden.fixturesDirectory.appendingPathComponent("preprocessors")
    let manifest: Manifest

    init() throws {
        let url = directory.appendingPathComponent("manifest.json")
        guard let data = try? Data(contentsOf: url) else {
            throw FixtureError(message: "missing \(url.path); regenerate with \(Self.regenerate)")
        }
        manifest = try JSONDecoder().decode(Manifest.self, from: data)
    }

    func read(_ file: String) throws -> RGBImage {
        try ImageCodec.read(contentsOf: directory.appendingPathComponent(file))
    }

    /// A fixture image: RGB, or for grayscale PNGs (decoded with three equal channels) the one channel.
    func input(_ name: String) throws -> (rgb: RGBImage, pixels: [UInt8], channels: Int) {
        guard let entry = manifest.images.first(where: { $0.name == name }) else {
            throw FixtureError(message: "no image \(name) in the manifest; regenerate with \(Self.regenerate)")
        }
        let image = try read(entry.file)
        return (image, entry.channels == 1 ? Self.firstChannel(image) : image.pixels, entry.channels)
    }

    static func firstChannel(_ image: RGBImage) -> [UInt8] {
        Swift.stride(from: 0, to: image.pixels.count, by: 3).map { image.pixels[$0] }
    }
}
