import Foundation

/// How a control (or init) image is fitted to the generation size: the three modes of AUTOMATIC1111's
/// ControlNet extension, with its geometry (scale factor, rounding, centring, fill colour).
public enum ResizeMode: String, CaseIterable, Sendable {
    /// Stretch to the target size, ignoring the aspect ratio.
    case justResize = "just_resize"
    /// Scale to cover the target, then crop the centre ("Inner Fit").
    case cropAndResize = "crop_and_resize"
    /// Scale to fit inside the target, then pad with the median colour of the image's border ("Outer Fit").
    case resizeAndFill = "resize_and_fill"

    /// The name AUTOMATIC1111 shows and its API takes.
    public var displayName: String {
        switch self {
        case .justResize: "Just Resize"
        case .cropAndResize: "Crop and Resize"
        case .resizeAndFill: "Resize and Fill"
        }
    }

    /// AUTOMATIC1111's integer for the mode (0, 1, 2), also accepted by its API.
    public var index: Int {
        switch self {
        case .justResize: 0
        case .cropAndResize: 1
        case .resizeAndFill: 2
        }
    }

    /// Accepts our names, AUTOMATIC1111's (current and legacy: "Inner Fit (Scale to Fit)", "Envelope (Outer
    /// Fit)", ...) and its integers as strings, ignoring case.
    public init?(name: String) {
        let key = name.trimmingCharacters(in: .whitespaces).lowercased()
        switch key {
        case "just_resize", "just resize", "resize", "0": self = .justResize
        case "crop_and_resize", "crop and resize", "inner fit (scale to fit)", "scale to fit (inner fit)", "inner_fit", "1":
            self = .cropAndResize
        case "resize_and_fill", "resize and fill", "outer fit (shrink to fit)", "envelope (outer fit)", "outer_fit", "2":
            self = .resizeAndFill
        default: return nil
        }
    }

    public init?(index: Int) {
        guard let mode = Self.allCases.first(where: { $0.index == index }) else { return nil }
        self = mode
    }

    /// The size a `imageWidth x imageHeight` image is scaled to before it is cropped (Crop and Resize) or placed
    /// (Resize and Fill) to fit `width x height`; for Just Resize, the target itself. Callers bound it before
    /// `apply`, whose memory it decides.
    public func scaledSize(width imageWidth: Int, height imageHeight: Int, toWidth width: Int, toHeight height: Int)
        -> (width: Int, height: Int)
    {
        let (oldWidth, oldHeight) = (Double(max(imageWidth, 1)), Double(max(imageHeight, 1)))
        let kHeight = Double(height) / oldHeight, kWidth = Double(width) / oldWidth
        func clamped(_ value: Double) -> Int { Int(min(value.rounded(.toNearestOrEven), Double(Int32.max))) }
        switch self {
        case .justResize:
            return (width, height)
        case .cropAndResize:
            let k = max(kHeight, kWidth)
            return (max(clamped(oldWidth * k), width), max(clamped(oldHeight * k), height))
        case .resizeAndFill:
            let k = min(kHeight, kWidth)
            return (min(max(clamped(oldWidth * k), 1), width), min(max(clamped(oldHeight * k), 1), height))
        }
    }

    /// The image fitted to `width x height`; scaling uses `filter` (PIL LANCZOS by default, as diffusers).
    ///
    /// Crop and Resize scales by `max(height / h, width / w)` and Resize and Fill by the `min`; the scaled size is
    /// `round(w * k) x round(h * k)` (half to even), and the crop or the placement is offset by
    /// `(difference) / 2` rounded down, as the extension does.
    public func apply(to image: RGBImage, width: Int, height: Int, filter: ResampleFilter = .lanczos) -> RGBImage {
        precondition(width > 0 && height > 0, "resize target must be at least 1x1")
        let (oldWidth, oldHeight) = (Double(image.width), Double(image.height))
        let kHeight = Double(height) / oldHeight, kWidth = Double(width) / oldWidth
        switch self {
        case .justResize:
            return image.resized(width: width, height: height, filter: filter)
        case .cropAndResize:
            let k = max(kHeight, kWidth)
            let scaledWidth = max(Int((oldWidth * k).rounded(.toNearestOrEven)), width)
            let scaledHeight = max(Int((oldHeight * k).rounded(.toNearestOrEven)), height)
            let scaled = image.resized(width: scaledWidth, height: scaledHeight, filter: filter)
            return scaled.cropped(x: (scaledWidth - width) / 2, y: (scaledHeight - height) / 2, width: width, height: height)
        case .resizeAndFill:
            let k = min(kHeight, kWidth)
            let fill = image.medianBorderColor()
            let scaledWidth = min(max(Int((oldWidth * k).rounded(.toNearestOrEven)), 1), width)
            let scaledHeight = min(max(Int((oldHeight * k).rounded(.toNearestOrEven)), 1), height)
            let scaled = image.resized(width: scaledWidth, height: scaledHeight, filter: filter)
            var canvas = RGBImage(width: width, height: height, red: fill.red, green: fill.green, blue: fill.blue)
            canvas.paste(scaled, x: (width - scaledWidth) / 2, y: (height - scaledHeight) / 2)
            return canvas
        }
    }
}

extension RGBImage {
    /// The `width x height` region whose top-left corner is at (`x`, `y`); it must lie inside the image.
    public func cropped(x: Int, y: Int, width newWidth: Int, height newHeight: Int) -> RGBImage {
        precondition(
            x >= 0 && y >= 0 && newWidth >= 0 && newHeight >= 0 && x + newWidth <= width && y + newHeight <= height,
            "crop \(newWidth)x\(newHeight) at (\(x), \(y)) lies outside the \(width)x\(height) image")
        var result = [UInt8](repeating: 0, count: newWidth * newHeight * 3)
        for row in 0..<newHeight {
            let from = ((y + row) * width + x) * 3
            result.replaceSubrange((row * newWidth * 3)..<((row + 1) * newWidth * 3), with: pixels[from..<(from + newWidth * 3)])
        }
        return RGBImage(width: newWidth, height: newHeight, pixels: result)
    }

    /// Copies `image` in with its top-left corner at (`x`, `y`); what falls outside is dropped.
    public mutating func paste(_ image: RGBImage, x: Int, y: Int) {
        let left = max(x, 0), right = min(x + image.width, width)
        guard left < right else { return }
        for row in max(y, 0)..<min(y + image.height, height) {
            let from = ((row - y) * image.width + (left - x)) * 3
            let to = (row * width + left) * 3
            pixels.replaceSubrange(to..<(to + (right - left) * 3), with: image.pixels[from..<(from + (right - left) * 3)])
        }
    }

    /// Per channel, the median of the first and last rows and the first and last columns (corners counted
    /// twice), truncated to a byte: `np.median(borders, axis=0).astype(uint8)`, the fill of "Resize and Fill".
    public func medianBorderColor() -> (red: UInt8, green: UInt8, blue: UInt8) {
        var histograms = [[Int]](repeating: [Int](repeating: 0, count: 256), count: 3)
        func count(_ x: Int, _ y: Int) {
            let i = (y * width + x) * 3
            for c in 0..<3 { histograms[c][Int(pixels[i + c])] += 1 }
        }
        for x in 0..<width {
            count(x, 0)
            count(x, height - 1)
        }
        for y in 0..<height {
            count(0, y)
            count(width - 1, y)
        }
        let total = 2 * (width + height)
        func value(at rank: Int, _ histogram: [Int]) -> Int {
            var seen = 0
            for v in 0..<256 {
                seen += histogram[v]
                if seen > rank { return v }
            }
            return 255
        }
        let medians = histograms.map { histogram -> UInt8 in
            if total % 2 == 1 { return UInt8(value(at: total / 2, histogram)) }
            // The mean of the two middle values, truncated (both are integers, so this is floor).
            return UInt8((value(at: total / 2 - 1, histogram) + value(at: total / 2, histogram)) / 2)
        }
        return (medians[0], medians[1], medians[2])
    }
}
