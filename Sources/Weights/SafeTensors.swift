import Compute
import Foundation

/// The element types a safetensors header may declare (names as in the format's specification).
public enum SafeTensorsDType: String, Sendable, CaseIterable {
    case float64 = "F64"
    case float32 = "F32"
    case float16 = "F16"
    case bfloat16 = "BF16"
    case int64 = "I64"
    case int32 = "I32"
    case int16 = "I16"
    case int8 = "I8"
    case uint8 = "U8"
    case bool = "BOOL"
    case float8E4M3 = "F8_E4M3"
    case float8E5M2 = "F8_E5M2"

    /// Bytes per element.
    public var byteSize: Int {
        switch self {
        case .float64, .int64: return 8
        case .float32, .int32: return 4
        case .float16, .bfloat16, .int16: return 2
        case .int8, .uint8, .bool, .float8E4M3, .float8E5M2: return 1
        }
    }

    /// Whether `SafeTensorsFile.tensor(_:)` can load this type as Float32.
    public var isFloatingPoint: Bool {
        switch self {
        case .float64, .float32, .float16, .bfloat16, .float8E4M3, .float8E5M2: return true
        case .int64, .int32, .int16, .int8, .uint8, .bool: return false
        }
    }
}

/// One tensor's header entry, validated.
public struct TensorInfo: Sendable, Equatable {
    public let name: String
    public let dtype: SafeTensorsDType
    public let shape: [Int]
    /// Byte range relative to the start of the data region (the header's `data_offsets`).
    public let dataOffsets: Range<Int>

    /// Number of elements (1 for a scalar).
    public var elementCount: Int { shape.reduce(1, *) }
}

/// A memory-mapped `.safetensors` file with a fully validated header.
///
/// Opening checks everything a malicious or damaged file could get wrong (header length, JSON, every
/// entry's dtype, shape and offsets, overlaps, holes) so that reading a tensor afterwards cannot go out
/// of bounds. Tensor data stays in the page cache until `tensor(_:)` copies it out as Float32.
public final class SafeTensorsFile: WeightSource, @unchecked Sendable {
    /// Headers larger than this are refused, as by the reference implementation.
    public static let maximumHeaderLength = 100_000_000

    public let url: URL
    /// Tensor names, sorted.
    public let names: [String]
    /// The header's `__metadata__` map (empty when absent).
    public let metadata: [String: String]

    private let infos: [String: TensorInfo]
    private let file: MappedFile
    private let dataRegion: UnsafeRawBufferPointer

    public var sourceDescription: String { file.path }

    /// Opens `url`: mapped, or read into memory when it has at most `readingUpTo` bytes (`MappedFile`).
    public init(contentsOf url: URL, readingUpTo readLimit: Int = 0) throws {
        self.url = url
        file = try MappedFile(url: url, readingUpTo: readLimit)
        let path = file.path
        let bytes = file.bytes

        guard bytes.count >= 8 else {
            throw WeightsError.truncated(
                path: path,
                detail: "the file is \(bytes.count) bytes, shorter than the 8-byte header length that starts a "
                    + "safetensors file")
        }
        let headerLength = UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: 0, as: UInt64.self))
        guard headerLength <= UInt64(Self.maximumHeaderLength) else {
            throw WeightsError.invalidHeader(
                path: path,
                detail: "header length \(headerLength) bytes exceeds the limit of \(Self.maximumHeaderLength) bytes")
        }
        let headerEnd = 8 + Int(headerLength)
        guard headerEnd <= bytes.count else {
            throw WeightsError.truncated(
                path: path,
                detail: "the header length \(headerLength) runs past the end of the file (\(bytes.count) bytes, "
                    + "header needs \(headerEnd))")
        }
        let headerBytes = UnsafeRawBufferPointer(rebasing: bytes[8..<headerEnd])
        dataRegion = UnsafeRawBufferPointer(rebasing: bytes[headerEnd...])

        guard headerBytes.first == UInt8(ascii: "{") else {
            throw WeightsError.invalidHeader(path: path, detail: "the header is not a JSON object (it must start with '{')")
        }
        let header: JSONValue
        do {
            header = try JSONValue.parse(headerBytes)
        } catch {
            throw WeightsError.invalidHeader(path: path, detail: "the header is not valid JSON: \(error)")
        }
        guard case .object(let members) = header else {
            throw WeightsError.invalidHeader(path: path, detail: "the header is not a JSON object")
        }

        var metadata: [String: String] = [:]
        var infos: [String: TensorInfo] = [:]
        infos.reserveCapacity(members.count)
        for (key, value) in members {
            if key == "__metadata__" {
                metadata = try Self.parseMetadata(value, path: path)
            } else {
                infos[key] = try Self.parseEntry(name: key, value, dataLength: dataRegion.count, path: path)
            }
        }
        try Self.checkCoverage(infos.values, dataLength: dataRegion.count, path: path)

        self.metadata = metadata
        self.infos = infos
        self.names = infos.keys.sorted()
    }

    public func contains(_ name: String) -> Bool { infos[name] != nil }

    /// The header entry of one tensor.
    public func info(_ name: String) throws -> TensorInfo {
        guard let info = infos[name] else { throw WeightsError.tensorNotFound(source: file.path, tensor: name) }
        return info
    }

    public func shape(of name: String) throws -> [Int] { try info(name).shape }

    /// The tensor as Float32: F32 is copied, F16/BF16/F8 widened, F64 narrowed (round to nearest).
    /// Integer and boolean tensors are an error.
    public func tensor(_ name: String) throws -> Tensor { freshTensor(try floatingPointInfo(name)) }

    /// The tensors as stored (`WeightSource.storedTensors(_:prepare:)`): F16 and BF16 stay narrow, F32 as is, F64 and F8
    /// are widened to F32. A file read into memory (`readingUpTo`, as LoRAs are) gives views of its read buffer, which
    /// then stays alive with them and is what they hold (`bytes`: the whole file); only an element misaligned for its
    /// type, or a widened one, gets an allocation of its own. A mapped file's tensors are copied out, one allocation
    /// each (the mapping is read-only, and `prepare` may change a tensor in place).
    public func storedTensors(
        _ names: [String], prepare: (Int, StoredTensor) throws -> StoredTensor
    ) throws -> (tensors: [StoredTensor], bytes: Int) {
        let infos = try names.map { try floatingPointInfo($0) }
        var viewsBuffer = false
        var ownBytes = 0
        let tensors = try infos.enumerated().map { index, info -> StoredTensor in
            let source = UnsafeRawBufferPointer(rebasing: dataRegion[info.dataOffsets])
            let stored: StoredTensor
            if let format = Self.storedFormat(info.dtype) {
                let address = source.baseAddress.map { UnsafeMutableRawPointer(mutating: $0) }
                if file.isWritable, let address, Int(bitPattern: address) % format.byteSize == 0 {
                    stored = StoredTensor(format: format, shape: info.shape, bytes: address, owner: file)
                    viewsBuffer = true
                } else {
                    stored = StoredTensor(copying: source, format: format, shape: info.shape)
                    ownBytes += stored.byteCount
                }
            } else {
                stored = StoredTensor(freshTensor(info))
                ownBytes += stored.byteCount
            }
            return try prepare(index, stored)
        }
        return (tensors, ownBytes + (viewsBuffer ? file.bytes.count : 0))
    }

    /// The format a dtype is kept in by `storedTensors`; nil for one widened to F32.
    private static func storedFormat(_ dtype: SafeTensorsDType) -> StoredTensor.Format? {
        switch dtype {
        case .float32: .float32
        case .float16: .float16
        case .bfloat16: .bfloat16
        default: nil
        }
    }

    private func floatingPointInfo(_ name: String) throws -> TensorInfo {
        let info = try info(name)
        guard info.dtype.isFloatingPoint else {
            throw WeightsError.notFloatingPoint(path: file.path, tensor: name, dtype: info.dtype.rawValue)
        }
        return info
    }

    /// One tensor's data in an allocation of its own.
    private func freshTensor(_ info: TensorInfo) -> Tensor {
        Tensor(shape: info.shape) { destination in widen(info, into: destination) }
    }

    /// Copies one tensor's data out as Float32: F32 is copied, F16/BF16/F8 widened, F64 narrowed.
    private func widen(_ info: TensorInfo, into destination: UnsafeMutableBufferPointer<Float>) {
        let source = UnsafeRawBufferPointer(rebasing: dataRegion[info.dataOffsets])
        guard let base = source.baseAddress, let target = destination.baseAddress else { return }
        let count = destination.count
        switch info.dtype {
        case .float32:
            UnsafeMutableRawPointer(target).copyMemory(from: base, byteCount: count * 4)
        case .float16:
            FloatConversion.widenHalf(base, into: target, count: count)
        case .bfloat16:
            FloatConversion.widenBFloat16(base, into: target, count: count)
        case .float64:
            for i in 0..<count { target[i] = Float(base.loadUnaligned(fromByteOffset: 8 * i, as: Double.self)) }
        case .float8E4M3:
            FloatConversion.float8E4M3Table.withUnsafeBufferPointer { table in
                for i in 0..<count { target[i] = table[Int(source[i])] }
            }
        case .float8E5M2:
            for i in 0..<count { target[i] = FloatConversion.float(fromFloat8E5M2: source[i]) }
        case .int64, .int32, .int16, .int8, .uint8, .bool:
            break  // excluded by floatingPointInfo
        }
    }

    /// The tensor's bytes exactly as stored (little-endian, `info(name).dtype`), valid only inside `body`.
    /// For loaders that keep fp16/bf16 weights narrow instead of widening them.
    public func withRawBytes<R>(_ name: String, _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        let info = try info(name)
        return try withExtendedLifetime(file) {
            try body(UnsafeRawBufferPointer(rebasing: dataRegion[info.dataOffsets]))
        }
    }

    // MARK: - Header validation

    private static func parseMetadata(_ value: JSONValue, path: String) throws -> [String: String] {
        switch value {
        case .null:
            return [:]
        case .object(let members):
            var metadata: [String: String] = [:]
            for (key, entry) in members {
                guard case .string(let string) = entry else {
                    throw WeightsError.invalidHeader(
                        path: path, detail: "__metadata__ value for '\(key)' is \(entry.kindName), expected a string")
                }
                metadata[key] = string
            }
            return metadata
        default:
            throw WeightsError.invalidHeader(
                path: path, detail: "__metadata__ is \(value.kindName), expected an object of strings")
        }
    }

    private static func parseEntry(name: String, _ value: JSONValue, dataLength: Int, path: String) throws -> TensorInfo {
        func invalid(_ detail: String) -> WeightsError {
            .invalidTensorEntry(path: path, tensor: name, detail: detail)
        }
        guard case .object = value else { throw invalid("the entry is \(value.kindName), expected an object") }

        guard let dtypeValue = value["dtype"] else { throw invalid("missing 'dtype'") }
        guard case .string(let dtypeName) = dtypeValue else { throw invalid("'dtype' is \(dtypeValue.kindName)") }
        guard let dtype = SafeTensorsDType(rawValue: dtypeName) else {
            let known = SafeTensorsDType.allCases.map(\.rawValue).joined(separator: ", ")
            throw invalid("unknown dtype '\(dtypeName)' (known: \(known))")
        }

        guard let shapeValue = value["shape"] else { throw invalid("missing 'shape'") }
        guard let shape = nonNegativeIntegers(shapeValue) else {
            throw invalid("shape \(shapeValue.serialized) is not a list of non-negative integers")
        }

        guard let offsetsValue = value["data_offsets"] else { throw invalid("missing 'data_offsets'") }
        guard let offsets = nonNegativeIntegers(offsetsValue), offsets.count == 2 else {
            throw invalid("data_offsets \(offsetsValue.serialized) is not a pair of non-negative integers [begin, end]")
        }
        let (begin, end) = (offsets[0], offsets[1])
        guard begin <= end else { throw invalid("data_offsets [\(begin), \(end)] has begin after end") }
        guard end <= dataLength else {
            throw invalid(
                "data_offsets [\(begin), \(end)] run past the end of the data region (\(dataLength) bytes); "
                    + "the file may be truncated")
        }

        var elements = 1
        for dimension in shape {
            let (product, overflow) = elements.multipliedReportingOverflow(by: dimension)
            guard !overflow else { throw invalid("shape \(shape) has too many elements") }
            elements = product
        }
        // An empty tensor may not hide dimensions whose product overflows either (code that multiplies some of
        // the dimensions, in another order, would trap).
        var nonEmptyElements = 1
        for dimension in shape {
            let next = nonEmptyElements.multipliedReportingOverflow(by: max(dimension, 1))
            guard !next.overflow else { throw invalid("shape \(shape) has too many elements") }
            nonEmptyElements = next.partialValue
        }
        let (byteCount, overflow) = elements.multipliedReportingOverflow(by: dtype.byteSize)
        guard !overflow else { throw invalid("shape \(shape) of \(dtype.rawValue) is too large") }
        guard byteCount == end - begin else {
            throw invalid(
                "shape \(shape) of \(dtype.rawValue) needs \(byteCount) bytes but data_offsets [\(begin), \(end)] "
                    + "cover \(end - begin)")
        }
        return TensorInfo(name: name, dtype: dtype, shape: shape, dataOffsets: begin..<end)
    }

    private static func nonNegativeIntegers(_ value: JSONValue) -> [Int]? {
        guard case .array(let elements) = value else { return nil }
        var result: [Int] = []
        result.reserveCapacity(elements.count)
        for element in elements {
            guard case .integer(let integer) = element, integer >= 0 else { return nil }
            result.append(integer)
        }
        return result
    }

    /// Tensors must tile the data region exactly: no overlaps, no holes, nothing after the last one.
    private static func checkCoverage(_ infos: some Collection<TensorInfo>, dataLength: Int, path: String) throws {
        let ordered = infos.sorted {
            ($0.dataOffsets.lowerBound, $0.dataOffsets.upperBound, $0.name)
                < ($1.dataOffsets.lowerBound, $1.dataOffsets.upperBound, $1.name)
        }
        var cursor = 0
        var previous: String?
        for info in ordered {
            let begin = info.dataOffsets.lowerBound
            if begin < cursor, let previous {
                throw WeightsError.overlappingTensors(path: path, first: previous, second: info.name)
            }
            if begin > cursor {
                let after = previous.map { "after '\($0)'" } ?? "at the start"
                throw WeightsError.uncoveredData(
                    path: path, detail: "bytes \(cursor)..<\(begin) \(after) belong to no tensor (a hole before '\(info.name)')")
            }
            cursor = info.dataOffsets.upperBound
            previous = info.name
        }
        if cursor != dataLength {
            throw WeightsError.uncoveredData(
                path: path, detail: "\(dataLength - cursor) bytes after the last tensor belong to no tensor")
        }
    }
}
