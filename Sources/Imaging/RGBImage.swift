import Compute

/// An 8-bit RGB image, rows top to bottom, pixels interleaved (`r, g, b, r, g, b, ...`).
public struct RGBImage: Sendable, Equatable {
    public let width: Int
    public let height: Int
    public var pixels: [UInt8]

    public init(width: Int, height: Int, pixels: [UInt8]) {
        precondition(width >= 0 && height >= 0 && pixels.count == width * height * 3, "RGB image needs width x height x 3 bytes")
        self.width = width
        self.height = height
        self.pixels = pixels
    }

    /// A solid-colour image.
    public init(width: Int, height: Int, red: UInt8, green: UInt8, blue: UInt8) {
        var pixels = [UInt8](repeating: 0, count: width * height * 3)
        for i in 0..<(width * height) {
            pixels[3 * i] = red
            pixels[3 * i + 1] = green
            pixels[3 * i + 2] = blue
        }
        self.init(width: width, height: height, pixels: pixels)
    }

    public subscript(x: Int, y: Int) -> (red: UInt8, green: UInt8, blue: UInt8) {
        let i = 3 * (y * width + x)
        return (pixels[i], pixels[i + 1], pixels[i + 2])
    }

    /// The image as a `[1, H, W, 3]` tensor in [-1, 1] (diffusers' `VaeImageProcessor` normalisation).
    public func tensor() -> Tensor {
        Tensor(shape: [1, height, width, 3]) { buffer in
            for i in 0..<pixels.count { buffer[i] = Float(pixels[i]) / 255 * 2 - 1 }
        }
    }

    /// The image as a `[1, H, W, 3]` tensor in [0, 1] (ControlNet conditioning images).
    public func unitTensor() -> Tensor {
        Tensor(shape: [1, height, width, 3]) { buffer in
            for i in 0..<pixels.count { buffer[i] = Float(pixels[i]) / 255 }
        }
    }

    /// Images from a `[N, H, W, 3]` tensor in [-1, 1], rounded as diffusers' `numpy_to_pil`
    /// (`round(clamp(x / 2 + 0.5, 0, 1) * 255)`).
    public static func images(fromSigned tensor: Tensor) -> [RGBImage] {
        precondition(tensor.rank == 4 && tensor.shape[3] == 3, "expected [N, H, W, 3], got \(tensor.shape)")
        let (count, height, width) = (tensor.shape[0], tensor.shape[1], tensor.shape[2])
        let perImage = height * width * 3
        return tensor.withUnsafeBufferPointer { values in
            (0..<count).map { n in
                var pixels = [UInt8](repeating: 0, count: perImage)
                for i in 0..<perImage {
                    let unit = min(max(values[n * perImage + i] / 2 + 0.5, 0), 1)
                    pixels[i] = UInt8((unit * 255).rounded(.toNearestOrEven))
                }
                return RGBImage(width: width, height: height, pixels: pixels)
            }
        }
    }

    /// Luma (ITU-R 601-2) with PIL's fixed-point rounding, so `convert("L")` results match exactly.
    public func grayscale() -> [UInt8] {
        (0..<(width * height)).map { i in
            let r = Int(pixels[3 * i]), g = Int(pixels[3 * i + 1]), b = Int(pixels[3 * i + 2])
            return UInt8((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16)
        }
    }

    /// An RGB image whose three channels are `gray`.
    public init(width: Int, height: Int, gray: [UInt8]) {
        precondition(gray.count == width * height, "gray image needs width x height bytes")
        var pixels = [UInt8](repeating: 0, count: width * height * 3)
        for i in 0..<gray.count {
            pixels[3 * i] = gray[i]
            pixels[3 * i + 1] = gray[i]
            pixels[3 * i + 2] = gray[i]
        }
        self.init(width: width, height: height, pixels: pixels)
    }
}
