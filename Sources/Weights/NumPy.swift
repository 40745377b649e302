import Compute
import Foundation

/// Reads and writes NumPy `.npy` files (format versions 1.0, 2.0 and 3.0), the exchange format for
/// latents, embeddings and reference arrays from Python.
public enum NumPy {
    private static let magic: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59]  // "\x93NUMPY"
    /// numpy aligns the data to 64 bytes and leaves room to grow the first axis in place.
    private static let alignment = 64
    private static let growthAxisMaximumDigits = 21

    /// Reads a C-order little-endian float16, float32 or float64 array as Float32.
    public static func read(contentsOf url: URL) throws -> Tensor {
        let file = try MappedFile(url: url)
        return try withExtendedLifetime(file) { try decode(file.bytes, path: file.path) }
    }

    /// Decodes the bytes of a `.npy` file; `label` names it in errors.
    public static func decode(_ data: Data, label: String = "<memory>") throws -> Tensor {
        try data.withUnsafeBytes { try decode($0, path: label) }
    }

    /// Writes `tensor` as a float32 array in format 1.0 (2.0 if the header would not fit), byte for byte
    /// as `numpy.save` writes it.
    public static func write(_ tensor: Tensor, to url: URL) throws {
        do {
            try encode(tensor).write(to: url, options: .atomic)
        } catch {
            throw WeightsError.writeFailed(path: url.path, reason: error.localizedDescription)
        }
    }

    /// The bytes `write(_:to:)` writes.
    public static func encode(_ tensor: Tensor) -> Data {
        let shape = tensor.shape
        let shapeText: String
        switch shape.count {
        case 0: shapeText = "()"
        case 1: shapeText = "(\(shape[0]),)"
        default: shapeText = "(" + shape.map(String.init).joined(separator: ", ") + ")"
        }
        var dictionary = "{'descr': '<f4', 'fortran_order': False, 'shape': \(shapeText), }"
        if let first = shape.first {
            dictionary += String(repeating: " ", count: max(0, growthAxisMaximumDigits - String(first).count))
        }
        var header = Array(dictionary.utf8)
        let textLength = header.count + 1  // + the closing newline
        var prefix = magic
        var padding = alignment - (magic.count + 2 + 2 + textLength) % alignment
        if textLength + padding <= Int(UInt16.max) {
            prefix += [1, 0]
            let length = UInt16(textLength + padding)
            prefix += [UInt8(length & 0xFF), UInt8(length >> 8)]
        } else {
            padding = alignment - (magic.count + 2 + 4 + textLength) % alignment
            prefix += [2, 0]
            let length = UInt32(textLength + padding)
            prefix += (0..<4).map { UInt8((length >> (8 * $0)) & 0xFF) }
        }
        header += [UInt8](repeating: 0x20, count: padding) + [0x0A]

        var data = Data(prefix + header)
        tensor.withUnsafeBufferPointer { values in
            data.reserveCapacity(data.count + values.count * 4)
            for value in values {
                withUnsafeBytes(of: value.bitPattern.littleEndian) { data.append(contentsOf: $0) }
            }
        }
        return data
    }

    // MARK: - Reading

    private static func decode(_ bytes: UnsafeRawBufferPointer, path: String) throws -> Tensor {
        func invalid(_ detail: String) -> WeightsError { .invalidNumPy(path: path, detail: detail) }

        guard bytes.count >= magic.count + 2, bytes.prefix(magic.count).elementsEqual(magic) else {
            throw invalid("missing the \\x93NUMPY magic string")
        }
        let major = bytes[6]
        let minor = bytes[7]
        let lengthSize: Int
        switch (major, minor) {
        case (1, 0): lengthSize = 2
        case (2, 0), (3, 0): lengthSize = 4
        default: throw invalid("format version \(major).\(minor) is not supported (1.0, 2.0, 3.0 are)")
        }
        guard bytes.count >= 8 + lengthSize else { throw invalid("file ends inside the header length") }
        var headerLength = 0
        for i in 0..<lengthSize { headerLength |= Int(bytes[8 + i]) << (8 * i) }
        let headerStart = 8 + lengthSize
        guard headerStart + headerLength <= bytes.count else {
            throw invalid(
                "header length \(headerLength) runs past the end of the file (\(bytes.count) bytes); truncated?")
        }
        let header = try parseHeader(
            UnsafeRawBufferPointer(rebasing: bytes[headerStart..<(headerStart + headerLength)]), path: path)

        let elementSize: Int
        switch header.descr {
        case "<f2": elementSize = 2
        case "<f4": elementSize = 4
        case "<f8": elementSize = 8
        default:
            throw invalid(
                "dtype '\(header.descr)' is not supported (little-endian float16 '<f2', float32 '<f4' or float64 '<f8')")
        }
        guard !header.fortranOrder else {
            throw invalid("fortran_order is True; only C-order arrays are supported (save np.ascontiguousarray(a))")
        }
        var count = 1
        for dimension in header.shape {
            let (product, overflow) = count.multipliedReportingOverflow(by: dimension)
            guard !overflow else { throw invalid("shape \(header.shape) is too large") }
            count = product
        }
        let dataStart = headerStart + headerLength
        let (needed, overflow) = count.multipliedReportingOverflow(by: elementSize)
        guard !overflow else { throw invalid("shape \(header.shape) is too large") }
        guard needed <= bytes.count - dataStart else {
            throw invalid(
                "shape \(header.shape) of '\(header.descr)' needs \(needed) data bytes but the file has "
                    + "\(bytes.count - dataStart); truncated?")
        }

        let data = UnsafeRawBufferPointer(rebasing: bytes[dataStart...])
        return Tensor(shape: header.shape) { out in
            switch elementSize {
            case 2:
                for i in 0..<count {
                    out[i] = FloatConversion.float(
                        fromHalf: UInt16(littleEndian: data.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)))
                }
            case 4:
                for i in 0..<count {
                    out[i] = Float(
                        bitPattern: UInt32(littleEndian: data.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self)))
                }
            default:
                for i in 0..<count {
                    out[i] = Float(
                        Double(
                            bitPattern: UInt64(littleEndian: data.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self))))
                }
            }
        }
    }

    private struct Header {
        var descr: String
        var fortranOrder: Bool
        var shape: [Int]
    }

    /// Parses the header, a Python dict literal such as
    /// `{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }` followed by spaces and a newline.
    private static func parseHeader(_ text: UnsafeRawBufferPointer, path: String) throws -> Header {
        var reader = PythonLiteralReader(bytes: text)
        var descr: String?
        var fortranOrder: Bool?
        var shape: [Int]?
        do {
            try reader.expect(UInt8(ascii: "{"))
            while true {
                reader.skipWhitespace()
                if reader.consume(UInt8(ascii: "}")) { break }
                let key = try reader.string()
                try reader.expect(UInt8(ascii: ":"))
                switch key {
                case "descr": descr = try reader.string()
                case "fortran_order": fortranOrder = try reader.boolean()
                case "shape": shape = try reader.integerTuple()
                default: throw PythonLiteralReader.Failure(message: "unexpected key '\(key)'")
                }
                reader.skipWhitespace()
                if reader.consume(UInt8(ascii: ",")) { continue }
                try reader.expect(UInt8(ascii: "}"))
                break
            }
            reader.skipWhitespace()
            guard reader.atEnd else { throw PythonLiteralReader.Failure(message: "unexpected text after the dict") }
        } catch let failure as PythonLiteralReader.Failure {
            throw WeightsError.invalidNumPy(path: path, detail: "malformed header: \(failure.message)")
        }
        guard let descr, let fortranOrder, let shape else {
            throw WeightsError.invalidNumPy(
                path: path, detail: "the header must have the keys 'descr', 'fortran_order' and 'shape'")
        }
        return Header(descr: descr, fortranOrder: fortranOrder, shape: shape)
    }
}

/// Reads the few Python literals a `.npy` header uses: quoted strings, True/False, tuples of integers.
private struct PythonLiteralReader {
    struct Failure: Error { let message: String }

    let bytes: UnsafeRawBufferPointer
    var position = 0

    init(bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    var atEnd: Bool { position == bytes.count }

    mutating func skipWhitespace() {
        while position < bytes.count, [0x20, 0x0A, 0x0D, 0x09].contains(bytes[position]) { position += 1 }
    }

    mutating func consume(_ byte: UInt8) -> Bool {
        skipWhitespace()
        guard position < bytes.count, bytes[position] == byte else { return false }
        position += 1
        return true
    }

    mutating func expect(_ byte: UInt8) throws {
        guard consume(byte) else {
            throw Failure(message: "expected '\(UnicodeScalar(byte))' at byte \(position)")
        }
    }

    mutating func string() throws -> String {
        skipWhitespace()
        guard position < bytes.count, bytes[position] == UInt8(ascii: "'") || bytes[position] == UInt8(ascii: "\"") else {
            throw Failure(message: "expected a quoted string at byte \(position)")
        }
        let quote = bytes[position]
        position += 1
        let start = position
        while position < bytes.count, bytes[position] != quote {
            guard bytes[position] != UInt8(ascii: "\\") else { throw Failure(message: "escapes are not supported") }
            position += 1
        }
        guard position < bytes.count else { throw Failure(message: "unterminated string") }
        let text = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<position]), as: UTF8.self)
        position += 1
        return text
    }

    mutating func boolean() throws -> Bool {
        skipWhitespace()
        if matchWord("True") { return true }
        if matchWord("False") { return false }
        throw Failure(message: "expected True or False at byte \(position)")
    }

    mutating func integerTuple() throws -> [Int] {
        try expect(UInt8(ascii: "("))
        var values: [Int] = []
        while true {
            if consume(UInt8(ascii: ")")) { return values }
            values.append(try integer())
            if consume(UInt8(ascii: ",")) { continue }
            try expect(UInt8(ascii: ")"))
            return values
        }
    }

    private mutating func integer() throws -> Int {
        skipWhitespace()
        let start = position
        while position < bytes.count, bytes[position] >= UInt8(ascii: "0"), bytes[position] <= UInt8(ascii: "9") {
            position += 1
        }
        let text = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<position]), as: UTF8.self)
        guard let value = Int(text) else {
            throw Failure(message: "expected a non-negative integer in the shape at byte \(start)")
        }
        if position < bytes.count, bytes[position] == UInt8(ascii: "L") { position += 1 }  // Python 2 long
        return value
    }

    private mutating func matchWord(_ word: String) -> Bool {
        let utf8 = Array(word.utf8)
        guard position + utf8.count <= bytes.count,
            UnsafeRawBufferPointer(rebasing: bytes[position..<(position + utf8.count)]).elementsEqual(utf8)
        else { return false }
        position += utf8.count
        return true
    }
}
