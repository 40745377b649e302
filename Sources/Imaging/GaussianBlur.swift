import Foundation

/// OpenCV's `cv2.GaussianBlur` on 8-bit images, bit for bit: a separable Gaussian whose taps are rounded
/// to 8 fractional bits (with error diffusion, the centre tap taking the remainder so they sum to exactly 1),
/// integer sums, one rounding at the end, `BORDER_REFLECT_101` borders.
public struct GaussianBlur: Sendable, Equatable {
    /// Odd number of taps per axis; 0 derives it from `sigma` as OpenCV does for 8-bit images
    /// (`round(sigma * 6 + 1) | 1`).
    public let kernelSize: Int
    /// Standard deviation in pixels; 0 or less takes OpenCV's default for the size
    /// (`0.3 * ((kernelSize - 1) * 0.5 - 1) + 0.8`, and the binomial tables for sizes 3, 5, 7 and 9).
    public let sigma: Double

    public init(kernelSize: Int = 0, sigma: Double = 0) {
        precondition(kernelSize > 0 || sigma > 0, "GaussianBlur needs a kernel size or a positive sigma")
        let size = kernelSize > 0 ? kernelSize : (Int((sigma * 6 + 1).rounded(.toNearestOrEven)) | 1)
        precondition(size % 2 == 1, "GaussianBlur kernel size must be odd, got \(size)")
        self.kernelSize = size
        self.sigma = max(sigma, 0)
    }

    /// The taps in units of 1/256 (they sum to 256), as OpenCV's `ufixedpoint16` kernel for 8-bit images.
    public var fixedPointKernel: [Int] {
        Self.fixedPointKernel(taps: Self.kernel(size: kernelSize, sigma: sigma))
    }

    /// The kernel in floating point (`cv2.getGaussianKernel`).
    public static func kernel(size n: Int, sigma: Double) -> [Double] {
        if sigma <= 0 {
            switch n {
            case 1: return [1]
            case 3: return [0.25, 0.5, 0.25]
            case 5: return [0.0625, 0.25, 0.375, 0.25, 0.0625]
            case 7: return [0.03125, 0.109375, 0.21875, 0.28125, 0.21875, 0.109375, 0.03125]
            case 9: return [4, 13, 30, 51, 60, 51, 30, 13, 4].map { $0 / 256 }
            default: break
            }
        }
        let sigmaX = sigma > 0 ? sigma : Double(n) * 0.15 + 0.35
        let scale = -0.125 / (sigmaX * sigmaX)
        let half = (n - 1) / 2
        var values = [Double](repeating: 0, count: half)
        var sum = 0.0
        var x = 1 - n  // twice the distance from the centre
        for i in 0..<half {
            values[i] = exp(Double(x * x) * scale)
            sum += values[i]
            x += 2
        }
        sum = sum * 2 + 1
        if n % 2 == 0 { sum += 1 }
        let inverse = 1 / sum
        var result = [Double](repeating: inverse, count: n)
        for i in 0..<half {
            result[i] = values[i] * inverse
            result[n - 1 - i] = result[i]
        }
        return result
    }

    /// Rounds taps to 8 fractional bits with error diffusion; the centre tap takes what makes the sum 256.
    static func fixedPointKernel(taps: [Double]) -> [Int] {
        let n = taps.count
        var result = [Int](repeating: 0, count: n)
        var error = 0.0
        var sum = 0
        for i in 0..<(n / 2) {
            let adjusted = taps[i] * 256 + error
            let rounded = adjusted.rounded(.toNearestOrEven)
            error = adjusted - rounded
            result[i] = Int(rounded)
            result[n - 1 - i] = Int(rounded)
            sum += Int(rounded)
        }
        result[n / 2] = 256 - 2 * sum
        return result
    }

    /// Blurs an interleaved 8-bit image with `channels` channels (1 for gray, 3 for RGB).
    public func apply(to pixels: [UInt8], width: Int, height: Int, channels: Int = 1) -> [UInt8] {
        precondition(
            pixels.count == width * height * channels, "GaussianBlur: \(pixels.count) bytes for \(width)x\(height)x\(channels)")
        if pixels.isEmpty { return pixels }
        // OpenCV drops the blur along an axis of length 1.
        let kernelX = width == 1 ? [256] : fixedPointKernel
        let kernelY = height == 1 ? [256] : fixedPointKernel
        if kernelX.count == 1 && kernelY.count == 1 { return pixels }
        let radiusX = kernelX.count / 2, radiusY = kernelY.count / 2
        let columnIndex = (-radiusX..<(width + radiusX)).map { reflect101($0, width) }
        let rowIndex = (-radiusY..<(height + radiusY)).map { reflect101($0, height) }
        let rowLength = width * channels

        // Horizontal pass into Q8 integers, kept for every source row.
        var horizontal = [Int32](repeating: 0, count: height * rowLength)
        var output = [UInt8](repeating: 0, count: pixels.count)
        pixels.withUnsafeBufferPointer { source in
            horizontal.withUnsafeMutableBufferPointer { rows in
                kernelX.map(Int32.init).withUnsafeBufferPointer { taps in
                    columnIndex.withUnsafeBufferPointer { columns in
                        for y in 0..<height {
                            let input = source.baseAddress! + y * rowLength
                            let out = rows.baseAddress! + y * rowLength
                            for x in 0..<width {
                                for c in 0..<channels {
                                    var sum: Int32 = 0
                                    for k in 0..<taps.count {
                                        sum += taps[k] * Int32(input[columns[x + k] * channels + c])
                                    }
                                    out[x * channels + c] = sum
                                }
                            }
                        }
                    }
                }
            }
            // Vertical pass in Q16, rounded half up.
            horizontal.withUnsafeBufferPointer { rows in
                output.withUnsafeMutableBufferPointer { out in
                    kernelY.map(Int32.init).withUnsafeBufferPointer { taps in
                        var accumulator = [Int32](repeating: 0, count: rowLength)
                        accumulator.withUnsafeMutableBufferPointer { acc in
                            for y in 0..<height {
                                for i in 0..<rowLength { acc[i] = 1 << 15 }
                                for k in 0..<taps.count {
                                    let tap = taps[k]
                                    let row = rows.baseAddress! + rowIndex[y + k] * rowLength
                                    for i in 0..<rowLength { acc[i] += tap * row[i] }
                                }
                                let destination = out.baseAddress! + y * rowLength
                                for i in 0..<rowLength { destination[i] = UInt8(truncatingIfNeeded: min(acc[i] >> 16, 255)) }
                            }
                        }
                    }
                }
            }
        }
        return output
    }

    /// Blurs each channel of an RGB image.
    public func apply(to image: RGBImage) -> RGBImage {
        RGBImage(
            width: image.width, height: image.height,
            pixels: apply(to: image.pixels, width: image.width, height: image.height, channels: 3))
    }
}

/// OpenCV's `BORDER_REFLECT_101` (`gfedcb|abcdefgh|gfedcba`), also for images shorter than the reach.
func reflect101(_ index: Int, _ length: Int) -> Int {
    if length == 1 { return 0 }
    var p = index
    while p < 0 || p >= length {
        p = p < 0 ? -p : 2 * length - 2 - p
    }
    return p
}
