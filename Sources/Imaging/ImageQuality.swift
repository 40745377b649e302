import Foundation

/// Full-reference image quality: SSIM (Wang, Bovik, Sheikh & Simoncelli 2004) and PSNR of two RGB images of the
/// same size, on 8-bit values (data range 255).
///
/// SSIM follows the paper's reference setting, as scikit-image's `structural_similarity(a, b, channel_axis=-1,
/// gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255)` computes it: means, variances
/// and the covariance under an 11x11 Gaussian window (sigma 1.5, normalised; separable), K1 = 0.01, K2 = 0.03, the
/// SSIM map averaged over the positions where the window lies inside the image (5 pixels cropped at each border),
/// **per channel (R, G, B), then averaged over the three channels**. Both are checked against scikit-image in
/// `ImageQualityTests` (golden written by tools/parity/make_image_quality_golden.py).
public enum ImageQuality {
    public enum Failure: Error, CustomStringConvertible {
        case sizeMismatch(String)
        public var description: String {
            switch self {
            case .sizeMismatch(let message): return message
            }
        }
    }

    /// Window radius (11x11) and Gaussian sigma of SSIM.
    public static let windowRadius = 5
    public static let sigma = 1.5

    /// Mean SSIM over the three channels, in [-1, 1] (1: identical). Images smaller than the 11x11 window throw.
    public static func ssim(_ a: RGBImage, _ b: RGBImage) throws -> Double {
        try checkSizes(a, b)
        guard a.width >= 2 * windowRadius + 1, a.height >= 2 * windowRadius + 1 else {
            throw Failure.sizeMismatch("SSIM needs images of at least 11x11 pixels, got \(a.width)x\(a.height)")
        }
        var total = 0.0
        for channel in 0..<3 { total += ssim(channel: channel, a, b) }
        return total / 3
    }

    /// PSNR in dB over all channels: 10 log10(255² / MSE); `.infinity` for identical images.
    public static func psnr(_ a: RGBImage, _ b: RGBImage) throws -> Double {
        try checkSizes(a, b)
        var sum = 0.0
        for (x, y) in zip(a.pixels, b.pixels) {
            let d = Double(x) - Double(y)
            sum += d * d
        }
        let mse = sum / Double(max(a.pixels.count, 1))
        return mse == 0 ? .infinity : 10 * log10(255 * 255 / mse)
    }

    private static func checkSizes(_ a: RGBImage, _ b: RGBImage) throws {
        guard a.width == b.width, a.height == b.height else {
            throw Failure.sizeMismatch("images differ in size: \(a.width)x\(a.height) and \(b.width)x\(b.height)")
        }
    }

    /// The normalised 1-D Gaussian (scipy's `gaussian_filter` weights at truncate 3.5: radius 5 for sigma 1.5).
    static let kernel: [Double] = {
        let raw = (-windowRadius...windowRadius).map { exp(-0.5 * Double($0 * $0) / (sigma * sigma)) }
        let sum = raw.reduce(0, +)
        return raw.map { $0 / sum }
    }()

    /// Gaussian-weighted mean of `values` (width x height) at every position whose window lies inside the image:
    /// (width - 10) x (height - 10) values, row-major.
    static func filterValid(_ values: [Double], width: Int, height: Int) -> [Double] {
        let r = windowRadius, outW = width - 2 * r, outH = height - 2 * r
        var rows = [Double](repeating: 0, count: outW * height)
        for y in 0..<height {
            for x in 0..<outW {
                var s = 0.0
                for k in 0...(2 * r) { s += kernel[k] * values[y * width + x + k] }
                rows[y * outW + x] = s
            }
        }
        var out = [Double](repeating: 0, count: outW * outH)
        for y in 0..<outH {
            for x in 0..<outW {
                var s = 0.0
                for k in 0...(2 * r) { s += kernel[k] * rows[(y + k) * outW + x] }
                out[y * outW + x] = s
            }
        }
        return out
    }

    static func ssim(channel: Int, _ a: RGBImage, _ b: RGBImage) -> Double {
        let count = a.width * a.height
        var x = [Double](repeating: 0, count: count), y = x
        for i in 0..<count {
            x[i] = Double(a.pixels[3 * i + channel])
            y[i] = Double(b.pixels[3 * i + channel])
        }
        let w = a.width, h = a.height
        let mx = filterValid(x, width: w, height: h), my = filterValid(y, width: w, height: h)
        func product(_ p: [Double], _ q: [Double]) -> [Double] { zip(p, q).map { $0 * $1 } }
        let mxx = filterValid(product(x, x), width: w, height: h), myy = filterValid(product(y, y), width: w, height: h)
        let mxy = filterValid(product(x, y), width: w, height: h)
        let c1: Double = (0.01 * 255) * (0.01 * 255), c2: Double = (0.03 * 255) * (0.03 * 255)
        var total = 0.0
        for i in 0..<mx.count {
            let vx = mxx[i] - mx[i] * mx[i], vy = myy[i] - my[i] * my[i], vxy = mxy[i] - mx[i] * my[i]
            total += ((2 * mx[i] * my[i] + c1) * (2 * vxy + c2)) / ((mx[i] * mx[i] + my[i] * my[i] + c1) * (vx + vy + c2))
        }
        return total / Double(mx.count)
    }
}
