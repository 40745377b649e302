import CPNG
import CTurboJPEG
import CZlib
import Foundation

/// Why an image could not be read or written.
public enum ImageError: Error, CustomStringConvertible, Equatable, Sendable {
    case empty
    case unsupportedFormat(String)
    case corrupt(format: String, detail: String)
    case tooLarge(width: Int, height: Int, limit: String)
    case encodingFailed(String)

    public var description: String {
        switch self {
        case .empty: "the image data is empty"
        case .unsupportedFormat(let detail): "unsupported image format: \(detail) (PNG and JPEG are supported)"
        case .corrupt(let format, let detail): "corrupt \(format) image: \(detail)"
        case .tooLarge(let width, let height, let limit): "image of \(width)x\(height) exceeds the limit (\(limit))"
        case .encodingFailed(let detail): "could not encode the image: \(detail)"
        }
    }
}

/// Limits checked from the header, before any pixel memory is allocated.
public struct ImageLimits: Sendable {
    public var maximumBytes: Int
    public var maximumSide: Int
    public var maximumPixels: Int

    public init(maximumBytes: Int = 50 << 20, maximumSide: Int = 8192, maximumPixels: Int = 8192 * 8192) {
        self.maximumBytes = maximumBytes
        self.maximumSide = maximumSide
        self.maximumPixels = maximumPixels
    }

    public static let standard = ImageLimits()

    /// The largest side any limits allow: a row of RGBA bytes must fit libpng's 32-bit row stride.
    static let absoluteMaximumSide = Int(Int32.max) / 4

    /// Checks a header's dimensions before anything is allocated for the pixels (overflow-safe for any limits).
    public func check(width: Int, height: Int) throws {
        guard width > 0, height > 0 else { throw ImageError.corrupt(format: "image", detail: "zero width or height") }
        let side = min(maximumSide, Self.absoluteMaximumSide)
        let (pixels, overflow) = width.multipliedReportingOverflow(by: height)
        guard width <= side, height <= side, !overflow, pixels <= maximumPixels,
            !pixels.multipliedReportingOverflow(by: 4).overflow
        else {
            throw ImageError.tooLarge(width: width, height: height, limit: "\(side) px per side, \(maximumPixels) pixels")
        }
    }
}

/// PNG and JPEG decoding and PNG encoding through libpng and libjpeg-turbo.
public enum ImageCodec {
    public enum Format: String, Sendable { case png, jpeg }

    /// The format from the file's magic bytes.
    public static func sniff(_ data: Data) -> Format? {
        if data.starts(with: [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]) { return .png }
        if data.starts(with: [0xFF, 0xD8, 0xFF]) { return .jpeg }
        return nil
    }

    /// Decodes a PNG or JPEG to RGB (alpha is dropped, as PIL's `convert("RGB")` does; grayscale is expanded).
    public static func decode(_ data: Data, limits: ImageLimits = .standard) throws -> RGBImage {
        guard !data.isEmpty else { throw ImageError.empty }
        guard data.count <= limits.maximumBytes else {
            throw ImageError.tooLarge(width: 0, height: 0, limit: "\(limits.maximumBytes) bytes of file data")
        }
        switch sniff(data) {
        case .png: return try decodePNG(data, limits: limits)
        case .jpeg: return try decodeJPEG(data, limits: limits)
        case nil:
            let head = data.prefix(4).map { String(format: "%02x", $0) }.joined(separator: " ")
            throw ImageError.unsupportedFormat("the data starts with \(head)")
        }
    }

    /// Reads and decodes an image file.
    public static func read(contentsOf url: URL, limits: ImageLimits = .standard) throws -> RGBImage {
        let attributes = try? FileManager.default.attributesOfItem(atPath: url.path)
        if let size = attributes?[.size] as? Int, size > limits.maximumBytes {
            throw ImageError.tooLarge(width: 0, height: 0, limit: "\(limits.maximumBytes) bytes of file data")
        }
        return try decode(try Data(contentsOf: url), limits: limits)
    }

    static func decodePNG(_ data: Data, limits: ImageLimits) throws -> RGBImage {
        var image = png_image()
        image.version = png_uint_32(PNG_IMAGE_VERSION)
        defer { png_image_free(&image) }
        let begun = data.withUnsafeBytes { raw in
            png_image_begin_read_from_memory(&image, raw.baseAddress, raw.count)
        }
        guard begun != 0 else { throw ImageError.corrupt(format: "PNG", detail: message(of: image)) }
        let (width, height) = (Int(image.width), Int(image.height))
        try limits.check(width: width, height: height)
        image.format = png_uint_32(PNG_FORMAT_FLAG_COLOR | PNG_FORMAT_FLAG_ALPHA)
        var rgba = [UInt8](repeating: 0, count: width * height * 4)
        let finished = data.withUnsafeBytes { _ in
            rgba.withUnsafeMutableBytes { buffer in
                png_image_finish_read(&image, nil, buffer.baseAddress, png_int_32(width * 4), nil)
            }
        }
        guard finished != 0 else { throw ImageError.corrupt(format: "PNG", detail: message(of: image)) }
        // Drop alpha in place (each write lands at or before its read), so decoding holds one pixel buffer.
        rgba.withUnsafeMutableBufferPointer { bytes in
            for i in 0..<(width * height) {
                bytes[3 * i] = bytes[4 * i]
                bytes[3 * i + 1] = bytes[4 * i + 1]
                bytes[3 * i + 2] = bytes[4 * i + 2]
            }
        }
        rgba.removeLast(width * height)
        return RGBImage(width: width, height: height, pixels: rgba)
    }

    private static func message(of image: png_image) -> String {
        var copy = image
        return withUnsafeBytes(of: &copy.message) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
    }

    /// Refuse progressive JPEGs with more than 500 scans (a few hundred bytes of them can keep a decoder busy for
    /// minutes); no valid encoder writes that many.
    static let jpegFlags = Int32(TJFLAG_LIMITSCANS)

    static func decodeJPEG(_ data: Data, limits: ImageLimits) throws -> RGBImage {
        guard let handle = tjInitDecompress() else { throw ImageError.corrupt(format: "JPEG", detail: "cannot initialise libjpeg-turbo") }
        defer { tjDestroy(handle) }
        var width: Int32 = 0, height: Int32 = 0, subsampling: Int32 = 0, colorspace: Int32 = 0
        let header = data.withUnsafeBytes { raw in
            tjDecompressHeader3(
                handle, raw.bindMemory(to: UInt8.self).baseAddress, UInt(raw.count), &width, &height, &subsampling, &colorspace)
        }
        guard header == 0 else { throw ImageError.corrupt(format: "JPEG", detail: String(cString: tjGetErrorStr2(handle))) }
        try limits.check(width: Int(width), height: Int(height))
        var rgb = [UInt8](repeating: 0, count: Int(width) * Int(height) * 3)
        let status = data.withUnsafeBytes { raw in
            rgb.withUnsafeMutableBufferPointer { out in
                tjDecompress2(
                    handle, raw.bindMemory(to: UInt8.self).baseAddress, UInt(raw.count), out.baseAddress, width, 0, height,
                    Int32(TJPF_RGB.rawValue), Self.jpegFlags)
            }
        }
        // Warnings count too: a truncated file only warns ("Premature end of JPEG file") and would come back
        // half grey, where PIL refuses it.
        if status != 0 { throw ImageError.corrupt(format: "JPEG", detail: String(cString: tjGetErrorStr2(handle))) }
        return RGBImage(width: Int(width), height: Int(height), pixels: rgb)
    }

    /// Encodes a PNG; each `textChunks` entry becomes a `tEXt` chunk (Latin-1 keyword, text as UTF-8 —
    /// what AUTOMATIC1111 writes for its "parameters" chunk).
    public static func encodePNG(_ image: RGBImage, textChunks: [(keyword: String, text: String)] = []) throws -> Data {
        var descriptor = png_image()
        descriptor.version = png_uint_32(PNG_IMAGE_VERSION)
        descriptor.width = png_uint_32(image.width)
        descriptor.height = png_uint_32(image.height)
        descriptor.format = png_uint_32(PNG_FORMAT_FLAG_COLOR)
        var size: png_alloc_size_t = 0
        let measured = image.pixels.withUnsafeBytes { pixels in
            png_image_write_to_memory(&descriptor, nil, &size, 0, pixels.baseAddress, png_int_32(image.width * 3), nil)
        }
        guard measured != 0, size > 0 else { throw ImageError.encodingFailed(message(of: descriptor)) }
        var encoded = Data(count: Int(size))
        let written = encoded.withUnsafeMutableBytes { out in
            image.pixels.withUnsafeBytes { pixels in
                png_image_write_to_memory(&descriptor, out.baseAddress, &size, 0, pixels.baseAddress, png_int_32(image.width * 3), nil)
            }
        }
        png_image_free(&descriptor)
        guard written != 0 else { throw ImageError.encodingFailed(message(of: descriptor)) }
        encoded.count = Int(size)
        return try insertTextChunks(textChunks, into: encoded)
    }

    /// Places `tEXt` chunks right after IHDR (the simplified libpng writer cannot write text itself).
    static func insertTextChunks(_ chunks: [(keyword: String, text: String)], into png: Data) throws -> Data {
        if chunks.isEmpty { return png }
        let headerEnd = 8 + 4 + 4 + 13 + 4  // signature, IHDR length, type, data, CRC
        guard png.count > headerEnd else { throw ImageError.encodingFailed("PNG stream too short") }
        var result = png.prefix(headerEnd)
        for chunk in chunks {
            guard !chunk.keyword.isEmpty, chunk.keyword.count <= 79, let keyword = chunk.keyword.data(using: .isoLatin1) else {
                throw ImageError.encodingFailed("PNG text keyword must be 1-79 Latin-1 characters")
            }
            var body = Data("tEXt".utf8)
            body.append(keyword)
            body.append(0)
            body.append(Data(chunk.text.utf8))
            var length = UInt32(body.count - 4).bigEndian
            result.append(Data(bytes: &length, count: 4))
            result.append(body)
            var crc = UInt32(body.withUnsafeBytes { crc32(0, $0.bindMemory(to: Bytef.self).baseAddress, uInt($0.count)) }).bigEndian
            result.append(Data(bytes: &crc, count: 4))
        }
        result.append(png.suffix(from: png.startIndex + headerEnd))
        return Data(result)
    }

    /// The `tEXt` chunks of a PNG (keyword -> text), e.g. to read generation parameters back.
    public static func textChunks(of png: Data) -> [String: String] {
        var result: [String: String] = [:]
        var offset = 8
        let bytes = [UInt8](png)
        while offset + 12 <= bytes.count {
            let length = Int(bytes[offset]) << 24 | Int(bytes[offset + 1]) << 16 | Int(bytes[offset + 2]) << 8 | Int(bytes[offset + 3])
            let type = String(decoding: bytes[(offset + 4)..<(offset + 8)], as: UTF8.self)
            let start = offset + 8
            guard length >= 0, start + length + 4 <= bytes.count else { break }
            if type == "tEXt", let separator = bytes[start..<(start + length)].firstIndex(of: 0) {
                let keyword = String(decoding: bytes[start..<separator], as: UTF8.self)
                result[keyword] = String(decoding: bytes[(separator + 1)..<(start + length)], as: UTF8.self)
            }
            if type == "IEND" { break }
            offset = start + length + 4
        }
        return result
    }
}
