import Foundation

/// Why a preprocessor name or its parameters were refused.
public enum ControlPreprocessorError: Error, CustomStringConvertible, Equatable, Sendable {
    case unsupported(String)
    case invalidParameter(String)

    public var description: String {
        switch self {
        case .unsupported(let name):
            "unsupported ControlNet preprocessor \"\(name)\"; supported: \(ControlPreprocessor.moduleList.joined(separator: ", ")) "
                + "(preprocessors that run a model, such as depth, openpose or scribble_hed, are not available: "
                + "preprocess the image elsewhere and send it with \"none\")"
        case .invalidParameter(let detail): "invalid ControlNet preprocessor parameter: \(detail)"
        }
    }
}

/// The ControlNet preprocessors that need no neural network. Each maps an RGB image to the conditioning image
/// the ControlNet expects (same size, RGB); sizing is separate (`ResizeMode`).
public enum ControlPreprocessor: Sendable, Equatable {
    /// The image as given (AUTOMATIC1111's "none"): depth, pose, normal or edge maps made elsewhere.
    case passthrough
    /// OpenCV Canny edges, white on black (`cv2.Canny(image, low, high)` on the RGB image).
    case canny(low: Double, high: Double)
    /// White where every channel is brighter than `level`, black elsewhere (AUTOMATIC1111's "threshold").
    case threshold(level: Double)
    /// Dark lines on a light background to white lines on black: invert, then `threshold(level)`, so a pixel
    /// turns white where every channel is darker than `255 - level`.
    case scribble(level: Double)
    /// `255 - x` per channel (AUTOMATIC1111's "invert (from white bg & black line)").
    case invert

    public static let defaultCannyThresholds = (low: 100.0, high: 200.0)
    public static let defaultThresholdLevel = 127.0

    /// Our module names, "none" first: the list for `/controlnet/module_list`.
    public static let moduleList = ["none", "canny", "threshold", "scribble", "invert"]

    /// AUTOMATIC1111's display labels for the same modules (`/controlnet/module_list?alias_names=true`).
    public static let moduleLabels = ["none", "canny", "threshold", "scribble", "invert (from white bg & black line)"]

    /// The preprocessor with default parameters from one of our names or an AUTOMATIC1111 module name or label
    /// ("invert (from white bg & black line)"), ignoring case; nil for anything else.
    public init?(name: String) {
        switch name.trimmingCharacters(in: .whitespaces).lowercased() {
        case "none", "passthrough", "": self = .passthrough
        case "canny": self = .canny(low: Self.defaultCannyThresholds.low, high: Self.defaultCannyThresholds.high)
        case "threshold", "binary": self = .threshold(level: Self.defaultThresholdLevel)
        case "scribble", "invert_threshold": self = .scribble(level: Self.defaultThresholdLevel)
        case "invert", "invert (from white bg & black line)": self = .invert
        default: return nil
        }
    }

    /// The preprocessor for an AUTOMATIC1111 ControlNet unit: `module` with its `threshold_a` / `threshold_b`
    /// sliders (canny: low / high; threshold and scribble: the level; others ignore them). A1111 sends -1 for
    /// "unset", which keeps the default.
    public static func named(_ module: String, thresholdA: Double? = nil, thresholdB: Double? = nil) throws -> ControlPreprocessor
    {
        guard let preprocessor = ControlPreprocessor(name: module) else { throw ControlPreprocessorError.unsupported(module) }
        func given(_ value: Double?) throws -> Double? {
            guard let value, value >= 0 else { return nil }
            guard value.isFinite else { throw ControlPreprocessorError.invalidParameter("\(value) for \(module)") }
            return value
        }
        switch preprocessor {
        case .canny(let low, let high):
            return .canny(low: try given(thresholdA) ?? low, high: try given(thresholdB) ?? high)
        case .threshold(let level):
            return .threshold(level: try given(thresholdA) ?? level)
        case .scribble(let level):
            return .scribble(level: try given(thresholdA) ?? level)
        case .passthrough, .invert:
            return preprocessor
        }
    }

    /// Our name for the preprocessor (one of `moduleList`).
    public var name: String {
        switch self {
        case .passthrough: "none"
        case .canny: "canny"
        case .threshold: "threshold"
        case .scribble: "scribble"
        case .invert: "invert"
        }
    }

    /// The conditioning image for `image`.
    public func callAsFunction(_ image: RGBImage) -> RGBImage {
        switch self {
        case .passthrough:
            return image
        case .canny(let low, let high):
            return CannyEdgeDetector(lowThreshold: low, highThreshold: high)(image)
        case .threshold(let level):
            return Self.binarize(image) { r, g, b in Double(min(r, g, b)) > level }
        case .scribble(let level):
            return Self.binarize(image) { r, g, b in Double(255 - max(r, g, b)) > level }
        case .invert:
            return RGBImage(width: image.width, height: image.height, pixels: image.pixels.map { 255 - $0 })
        }
    }

    /// 255 in all channels where `isWhite(r, g, b)`, else 0.
    private static func binarize(_ image: RGBImage, _ isWhite: (UInt8, UInt8, UInt8) -> Bool) -> RGBImage {
        var pixels = [UInt8](repeating: 0, count: image.pixels.count)
        image.pixels.withUnsafeBufferPointer { source in
            for i in Swift.stride(from: 0, to: source.count, by: 3) where isWhite(source[i], source[i + 1], source[i + 2]) {
                pixels[i] = 255
                pixels[i + 1] = 255
                pixels[i + 2] = 255
            }
        }
        return RGBImage(width: image.width, height: image.height, pixels: pixels)
    }
}
