import Foundation

/// Canny edge detection equal to OpenCV's `cv2.Canny(image, low, high)` (3x3 Sobel, L1 gradient), the call
/// AUTOMATIC1111's ControlNet extension and the diffusers ControlNet examples make.
///
/// The steps, as OpenCV does them: Sobel derivatives with replicated borders; magnitude `|dx| + |dy|`, for
/// colour images taken per pixel from the channel with the largest magnitude (the first on ties); thresholds
/// swapped if `low > high` and floored; non-maximum suppression with OpenCV's integer tangent test (a pixel
/// must beat one neighbour strictly and the other or equal, and both strictly on diagonals; outside the image
/// counts as magnitude 0); hysteresis that keeps weak pixels 8-connected to a pixel above `high`.
public struct CannyEdgeDetector: Sendable, Equatable {
    public var lowThreshold: Double
    public var highThreshold: Double
    /// An optional Gaussian blur first (`cv2.Canny` itself does not blur; classic Canny does).
    public var blur: GaussianBlur?

    public init(lowThreshold: Double = 100, highThreshold: Double = 200, blur: GaussianBlur? = nil) {
        precondition(!lowThreshold.isNaN && !highThreshold.isNaN, "Canny thresholds must be numbers")
        self.lowThreshold = lowThreshold
        self.highThreshold = highThreshold
        self.blur = blur
    }

    /// White edges on black, the same in all three channels: the ControlNet conditioning image.
    public func callAsFunction(_ image: RGBImage) -> RGBImage {
        RGBImage(width: image.width, height: image.height, gray: edges(of: image))
    }

    /// The edge map of a colour image (255 on edges, 0 elsewhere), one byte per pixel.
    public func edges(of image: RGBImage) -> [UInt8] {
        edges(of: image.pixels, width: image.width, height: image.height, channels: 3)
    }

    /// The edge map of an interleaved 8-bit image with `channels` channels (1 for gray), one byte per pixel.
    public func edges(of pixels: [UInt8], width: Int, height: Int, channels: Int = 1) -> [UInt8] {
        precondition(
            channels >= 1 && pixels.count == width * height * channels,
            "Canny: \(pixels.count) bytes for \(width)x\(height)x\(channels)")
        if width == 0 || height == 0 { return [] }
        let source = blur?.apply(to: pixels, width: width, height: height, channels: channels) ?? pixels
        var (low, high) = (lowThreshold, highThreshold)
        if low > high { swap(&low, &high) }
        let lowInt = Int32(floor(min(max(low, -1e9), 1e9)))
        let highInt = Int32(floor(min(max(high, -1e9), 1e9)))

        let gradients = Self.gradients(source, width: width, height: height, channels: channels)
        let stride = width + 2
        // 0: may be an edge, 1: cannot be an edge, 2: is an edge. The one-pixel frame stays 1.
        var map = [UInt8](repeating: 1, count: stride * (height + 2))
        var edges = [UInt8](repeating: 0, count: width * height)
        let stack = UnsafeMutablePointer<Int32>.allocate(capacity: width * height + 1)
        defer { stack.deallocate() }
        var top = 0

        gradients.magnitude.withUnsafeBufferPointer { magnitude in
            gradients.dx.withUnsafeBufferPointer { dx in
                gradients.dy.withUnsafeBufferPointer { dy in
                    map.withUnsafeMutableBufferPointer { map in
                        let mag = magnitude.baseAddress!
                        let tan22: Int32 = 13573  // tan(22.5°) in Q15, rounded
                        for y in 0..<height {
                            for x in 0..<width {
                                let p = (y + 1) * stride + x + 1
                                let m = mag[p]
                                guard m > lowInt else { continue }
                                let xs = Int32(dx[y * width + x]), ys = Int32(dy[y * width + x])
                                let ax = abs(xs), ay = abs(ys) << 15
                                let tan22x = ax * tan22
                                let isMaximum: Bool
                                if ay < tan22x {  // mostly horizontal gradient: compare left and right
                                    isMaximum = m > mag[p - 1] && m >= mag[p + 1]
                                } else if ay > tan22x + (ax << 16) {  // mostly vertical: above and below
                                    isMaximum = m > mag[p - stride] && m >= mag[p + stride]
                                } else {  // diagonal: down-right when the signs agree, down-left otherwise
                                    let s = (xs ^ ys) < 0 ? -1 : 1
                                    isMaximum = m > mag[p - stride - s] && m > mag[p + stride + s]
                                }
                                guard isMaximum else { continue }
                                if m > highInt {
                                    map[p] = 2
                                    stack[top] = Int32(p)
                                    top += 1
                                } else {
                                    map[p] = 0
                                }
                            }
                        }
                        // Hysteresis: grow from the strong pixels through 8-connected candidates.
                        let neighbours = [-1, 1, -stride - 1, -stride, -stride + 1, stride - 1, stride, stride + 1]
                        while top > 0 {
                            top -= 1
                            let p = Int(stack[top])
                            for offset in neighbours where map[p + offset] == 0 {
                                map[p + offset] = 2
                                stack[top] = Int32(p + offset)
                                top += 1
                            }
                        }
                        edges.withUnsafeMutableBufferPointer { out in
                            for y in 0..<height {
                                for x in 0..<width where map[(y + 1) * stride + x + 1] == 2 { out[y * width + x] = 255 }
                            }
                        }
                    }
                }
            }
        }
        return edges
    }

    /// Sobel derivatives (replicated border) and L1 magnitudes; magnitudes sit in a zero frame one pixel wide
    /// (`(width + 2) x (height + 2)`), derivatives are `width x height`. Colour images keep, per pixel, the
    /// derivatives of the channel with the largest magnitude.
    static func gradients(
        _ pixels: [UInt8], width: Int, height: Int, channels cn: Int
    )
        -> (magnitude: [Int32], dx: [Int16], dy: [Int16])
    {
        let stride = width + 2
        var magnitude = [Int32](repeating: 0, count: stride * (height + 2))
        var dx = [Int16](repeating: 0, count: width * height)
        var dy = [Int16](repeating: 0, count: width * height)
        let rowLength = width * cn
        let paddedLength = rowLength + 2 * cn
        // Per row, on the row padded by one replicated pixel each side: the column sums a + 2b + c (smoothed
        // across rows) and differences c - a; the 3x3 Sobel is then a difference / smoothing along the row.
        let columnSum = UnsafeMutablePointer<Int32>.allocate(capacity: paddedLength)
        let columnDifference = UnsafeMutablePointer<Int32>.allocate(capacity: paddedLength)
        let channelDx = UnsafeMutablePointer<Int32>.allocate(capacity: rowLength)
        let channelDy = UnsafeMutablePointer<Int32>.allocate(capacity: rowLength)
        defer {
            columnSum.deallocate()
            columnDifference.deallocate()
            channelDx.deallocate()
            channelDy.deallocate()
        }
        pixels.withUnsafeBufferPointer { source in
            magnitude.withUnsafeMutableBufferPointer { magnitude in
                dx.withUnsafeMutableBufferPointer { dx in
                    dy.withUnsafeMutableBufferPointer { dy in
                        for y in 0..<height {
                            let above = source.baseAddress! + max(y - 1, 0) * rowLength
                            let row = source.baseAddress! + y * rowLength
                            let below = source.baseAddress! + min(y + 1, height - 1) * rowLength
                            for i in 0..<rowLength {
                                columnSum[cn + i] = Int32(above[i]) + 2 * Int32(row[i]) + Int32(below[i])
                                columnDifference[cn + i] = Int32(below[i]) - Int32(above[i])
                            }
                            for c in 0..<cn {
                                columnSum[c] = columnSum[cn + c]
                                columnDifference[c] = columnDifference[cn + c]
                                columnSum[cn + rowLength + c] = columnSum[rowLength + c]
                                columnDifference[cn + rowLength + c] = columnDifference[rowLength + c]
                            }
                            let magnitudeRow = magnitude.baseAddress! + (y + 1) * stride + 1
                            let dxRow = dx.baseAddress! + y * width
                            let dyRow = dy.baseAddress! + y * width
                            if cn == 1 {
                                for x in 0..<width {
                                    let gx = columnSum[x + 2] - columnSum[x]
                                    let gy = columnDifference[x] + 2 * columnDifference[x + 1] + columnDifference[x + 2]
                                    dxRow[x] = Int16(truncatingIfNeeded: gx)
                                    dyRow[x] = Int16(truncatingIfNeeded: gy)
                                    magnitudeRow[x] = abs(gx) + abs(gy)
                                }
                                continue
                            }
                            for i in 0..<rowLength {
                                channelDx[i] = columnSum[i + 2 * cn] - columnSum[i]
                                channelDy[i] = columnDifference[i] + 2 * columnDifference[i + cn] + columnDifference[i + 2 * cn]
                            }
                            for x in 0..<width {
                                var best = x * cn
                                var bestMagnitude = abs(channelDx[best]) + abs(channelDy[best])
                                for i in (x * cn + 1)..<(x * cn + cn) {
                                    let m = abs(channelDx[i]) + abs(channelDy[i])
                                    if m > bestMagnitude {
                                        bestMagnitude = m
                                        best = i
                                    }
                                }
                                dxRow[x] = Int16(truncatingIfNeeded: channelDx[best])
                                dyRow[x] = Int16(truncatingIfNeeded: channelDy[best])
                                magnitudeRow[x] = bestMagnitude
                            }
                        }
                    }
                }
            }
        }
        return (magnitude, dx, dy)
    }
}
