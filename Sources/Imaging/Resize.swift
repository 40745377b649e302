import Foundation

/// Resampling filters of PIL's `Image.resize`.
public enum ResampleFilter: String, CaseIterable, Sendable {
    case nearest, bilinear, bicubic, lanczos

    /// Accepts PIL's names in any case (`"LANCZOS"`, `"Bicubic"`) and `"antialias"` (PIL's old LANCZOS name).
    public init?(name: String) {
        let lowered = name.lowercased()
        if lowered == "antialias" { self = .lanczos; return }
        self.init(rawValue: lowered)
    }

    /// Half the filter's width in source pixels at scale 1.
    var support: Double {
        switch self {
        case .nearest: 0.5
        case .bilinear: 1
        case .bicubic: 2
        case .lanczos: 3
        }
    }

    /// The filter's weight at distance `x`, spelled as Pillow's Resample.c so the doubles round the same.
    func weight(_ x: Double) -> Double {
        switch self {
        case .nearest:
            return x > -0.5 && x <= 0.5 ? 1 : 0
        case .bilinear:
            let x = abs(x)
            return x < 1 ? 1 - x : 0
        case .bicubic:
            let a = -0.5
            let x = abs(x)
            if x < 1 { return ((a + 2) * x - (a + 3)) * x * x + 1 }
            if x < 2 { return (((x - 5) * x + 8) * x - 4) * a }
            return 0
        case .lanczos:
            guard -3 <= x && x < 3 else { return 0 }
            return Self.sinc(x) * Self.sinc(x / 3)
        }
    }

    private static func sinc(_ x: Double) -> Double {
        if x == 0 { return 1 }
        let y = x * Double.pi
        return sin(y) / y
    }
}

extension RGBImage {
    /// The image resized as PIL's `Image.resize((width, height), filter)` does it for RGB images, bit for bit:
    /// a separable convolution (two passes in Pillow 13's order, each rounded to 8 bits) whose filter widens by
    /// the scale factor when shrinking, with weights normalised per output pixel and rounded to 22 fractional
    /// bits. diffusers' `VaeImageProcessor` resizes init and control images with `LANCZOS`.
    public func resized(width newWidth: Int, height newHeight: Int, filter: ResampleFilter = .lanczos) -> RGBImage {
        RGBImage(
            width: newWidth, height: newHeight,
            pixels: Resampler.resize(
                pixels, width: width, height: height, channels: 3, toWidth: newWidth, toHeight: newHeight, filter: filter))
    }
}

/// PIL's 8-bit resampling (libImaging/Resample.c, and Geometry.c for NEAREST) on interleaved bytes.
enum Resampler {
    static let precisionBits = 32 - 8 - 2

    static func resize(
        _ pixels: [UInt8], width: Int, height: Int, channels: Int, toWidth: Int, toHeight: Int, filter: ResampleFilter
    ) -> [UInt8] {
        precondition(toWidth > 0 && toHeight > 0, "resize: height and width must be > 0")
        precondition(pixels.count == width * height * channels && width > 0 && height > 0, "resize: empty or malformed image")
        if toWidth == width && toHeight == height { return pixels }
        if filter == .nearest {
            return nearest(pixels, width: width, height: height, channels: channels, toWidth: toWidth, toHeight: toHeight)
        }
        let vertical = coefficients(inSize: height, outSize: toHeight, filter: filter)
        // Pillow 13 runs the vertical pass first when the height shrinks by more than twice the pixels the
        // width does (earlier Pillow always went horizontal first; the results differ by at most 1 in a few pixels).
        let verticalFirst = height - toHeight > 0 && height - toHeight > (width - toWidth) * 2
        if verticalFirst {
            let shrunk = verticalPass(
                pixels, width: width, height: height, channels: channels, rowOffset: 0, toHeight: toHeight, coefficients: vertical
            )
            if toWidth == width { return shrunk }
            let horizontal = coefficients(inSize: width, outSize: toWidth, filter: filter)
            return horizontalPass(
                shrunk, width: width, channels: channels, rows: 0..<toHeight, toWidth: toWidth, coefficients: horizontal)
        }
        var source = pixels
        var sourceHeight = height
        var firstRow = 0
        if toWidth != width {
            // Only the rows the vertical pass reads.
            firstRow = vertical.bounds[0].start
            let lastRow = vertical.bounds[toHeight - 1].start + vertical.bounds[toHeight - 1].count
            let horizontal = coefficients(inSize: width, outSize: toWidth, filter: filter)
            source = horizontalPass(
                pixels, width: width, channels: channels, rows: firstRow..<lastRow, toWidth: toWidth, coefficients: horizontal)
            sourceHeight = lastRow - firstRow
        }
        if toHeight == height { return source }
        return verticalPass(
            source, width: toWidth, height: sourceHeight, channels: channels, rowOffset: firstRow, toHeight: toHeight,
            coefficients: vertical)
    }

    struct Coefficients {
        /// Per output pixel: the first source index and how many follow.
        var bounds: [(start: Int, count: Int)]
        /// `kernelSize` fixed-point weights per output pixel (Q22).
        var weights: [Int32]
        var kernelSize: Int
    }

    /// Pillow's `precompute_coeffs` followed by `normalize_coeffs_8bpc`.
    static func coefficients(inSize: Int, outSize: Int, filter: ResampleFilter) -> Coefficients {
        let scale = Double(inSize) / Double(outSize)
        let filterScale = max(scale, 1)
        let support = filter.support * filterScale
        let kernelSize = Int(support.rounded(.up)) * 2 + 1
        let inverseFilterScale = 1 / filterScale
        var bounds: [(start: Int, count: Int)] = []
        bounds.reserveCapacity(outSize)
        var weights = [Int32](repeating: 0, count: outSize * kernelSize)
        var taps = [Double](repeating: 0, count: kernelSize)
        for xx in 0..<outSize {
            let center = (Double(xx) + 0.5) * scale
            let start = max(Int(center - support + 0.5), 0)
            let end = min(Int(center + support + 0.5), inSize)
            let count = end - start
            var total = 0.0
            for x in 0..<count {
                let w = filter.weight((Double(x + start) - center + 0.5) * inverseFilterScale)
                taps[x] = w
                total += w
            }
            for x in 0..<count {
                let k = total != 0 ? taps[x] / total : taps[x]
                let scaled = k * Double(1 << precisionBits)
                weights[xx * kernelSize + x] = Int32(k < 0 ? -0.5 + scaled : 0.5 + scaled)
            }
            bounds.append((start, count))
        }
        return Coefficients(bounds: bounds, weights: weights, kernelSize: kernelSize)
    }

    /// Pillow's `clip8`: the Q22 sum (already offset by one half) to a byte, clamped.
    @inline(__always) static func clip8(_ sum: Int32) -> UInt8 {
        UInt8(truncatingIfNeeded: min(max(sum >> Int32(precisionBits), 0), 255))
    }

    static func horizontalPass(
        _ pixels: [UInt8], width: Int, channels: Int, rows: Range<Int>, toWidth: Int, coefficients: Coefficients
    ) -> [UInt8] {
        var output = [UInt8](repeating: 0, count: rows.count * toWidth * channels)
        let half: Int32 = 1 << Int32(precisionBits - 1)
        pixels.withUnsafeBufferPointer { source in
            output.withUnsafeMutableBufferPointer { out in
                coefficients.weights.withUnsafeBufferPointer { weights in
                    var sums = [Int32](repeating: 0, count: channels)
                    for (outRow, y) in rows.enumerated() {
                        let line = source.baseAddress! + y * width * channels
                        let destination = out.baseAddress! + outRow * toWidth * channels
                        for xx in 0..<toWidth {
                            let (start, count) = coefficients.bounds[xx]
                            let k = weights.baseAddress! + xx * coefficients.kernelSize
                            for c in 0..<channels { sums[c] = half }
                            for x in 0..<count {
                                let pixel = line + (start + x) * channels
                                for c in 0..<channels { sums[c] &+= Int32(pixel[c]) &* k[x] }
                            }
                            for c in 0..<channels { destination[xx * channels + c] = clip8(sums[c]) }
                        }
                    }
                }
            }
        }
        return output
    }

    static func verticalPass(
        _ pixels: [UInt8], width: Int, height: Int, channels: Int, rowOffset: Int, toHeight: Int, coefficients: Coefficients
    ) -> [UInt8] {
        let rowLength = width * channels
        var output = [UInt8](repeating: 0, count: toHeight * rowLength)
        let half: Int32 = 1 << Int32(precisionBits - 1)
        pixels.withUnsafeBufferPointer { source in
            output.withUnsafeMutableBufferPointer { out in
                coefficients.weights.withUnsafeBufferPointer { weights in
                    var sums = [Int32](repeating: 0, count: rowLength)
                    sums.withUnsafeMutableBufferPointer { sums in
                        for yy in 0..<toHeight {
                            let (start, count) = coefficients.bounds[yy]
                            let k = weights.baseAddress! + yy * coefficients.kernelSize
                            for i in 0..<rowLength { sums[i] = half }
                            for y in 0..<count {
                                let line = source.baseAddress! + (start - rowOffset + y) * rowLength
                                let weight = k[y]
                                for i in 0..<rowLength { sums[i] &+= Int32(line[i]) &* weight }
                            }
                            let destination = out.baseAddress! + yy * rowLength
                            for i in 0..<rowLength { destination[i] = clip8(sums[i]) }
                        }
                    }
                }
            }
        }
        return output
    }

    /// Pillow's NEAREST (`ImagingScaleAffine`): source position `(x + 0.5) * scale`, accumulated in doubles.
    static func nearest(_ pixels: [UInt8], width: Int, height: Int, channels: Int, toWidth: Int, toHeight: Int) -> [UInt8] {
        func table(inSize: Int, outSize: Int) -> [Int] {
            let step = Double(inSize) / Double(outSize)
            var position = step * 0.5
            var result = [Int](repeating: -1, count: outSize)
            for i in 0..<outSize {
                let index = position < 0 ? -1 : Int(position)
                if index >= 0 && index < inSize { result[i] = index }
                position += step
            }
            return result
        }
        let columns = table(inSize: width, outSize: toWidth)
        let rows = table(inSize: height, outSize: toHeight)
        var output = [UInt8](repeating: 0, count: toWidth * toHeight * channels)
        for (yy, y) in rows.enumerated() where y >= 0 {
            for (xx, x) in columns.enumerated() where x >= 0 {
                for c in 0..<channels {
                    output[(yy * toWidth + xx) * channels + c] = pixels[(y * width + x) * channels + c]
                }
            }
        }
        return output
    }
}
