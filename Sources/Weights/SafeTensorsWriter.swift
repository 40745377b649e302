import Compute
import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Writes Float32 tensors to a `.safetensors` file laid out as the reference implementation lays it out:
/// `__metadata__` first, tensors in sorted name order (data in the same order), header padded with
/// spaces to a multiple of 8 bytes so the data region is aligned.
public enum SafeTensorsWriter {
    /// How tensors are stored on disk.
    public enum Precision: Sendable {
        case float32
        /// IEEE half precision, rounded to nearest even; values beyond ±65504 become infinity.
        case float16

        var dtype: SafeTensorsDType { self == .float32 ? .float32 : .float16 }
    }

    /// Writes the file (through a temporary file renamed into place, so readers never see half a file).
    public static func write(
        _ tensors: [String: Tensor], metadata: [String: String] = [:], precision: Precision = .float32, to url: URL
    ) throws {
        let path = url.path
        guard tensors["__metadata__"] == nil else {
            throw WeightsError.writeFailed(path: path, reason: "'__metadata__' is reserved and cannot name a tensor")
        }
        let names = tensors.keys.sorted()
        let header = Array(headerJSON(tensors, names: names, metadata: metadata, precision: precision).utf8)

        let temporaryPath = path + ".partial"
        let descriptor = open(temporaryPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else {
            throw WeightsError.writeFailed(path: path, reason: String(cString: strerror(errno)))
        }
        var closed = false
        defer {
            if !closed {
                close(descriptor)
                unlink(temporaryPath)
            }
        }

        var length = UInt64(header.count).littleEndian
        try withUnsafeBytes(of: &length) { try writeAll(descriptor, $0, path: path) }
        try header.withUnsafeBytes { try writeAll(descriptor, $0, path: path) }
        for name in names {
            guard let tensor = tensors[name] else { continue }
            try tensor.withUnsafeBufferPointer { values in
                switch precision {
                case .float32:
                    try writeAll(descriptor, UnsafeRawBufferPointer(values), path: path)
                case .float16:
                    try writeHalf(descriptor, values, path: path)
                }
            }
        }

        closed = true
        guard close(descriptor) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temporaryPath)
            throw WeightsError.writeFailed(path: path, reason: reason)
        }
        guard rename(temporaryPath, path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temporaryPath)
            throw WeightsError.writeFailed(path: path, reason: reason)
        }
    }

    /// The header text, padded with spaces to a multiple of 8 bytes.
    static func headerJSON(
        _ tensors: [String: Tensor], names: [String], metadata: [String: String], precision: Precision
    ) -> String {
        var members: [(key: String, value: JSONValue)] = []
        if !metadata.isEmpty {
            let entries = metadata.keys.sorted().map { (key: $0, value: JSONValue.string(metadata[$0] ?? "")) }
            members.append((key: "__metadata__", value: .object(entries)))
        }
        var offset = 0
        for name in names {
            guard let tensor = tensors[name] else { continue }
            let byteCount = tensor.count * precision.dtype.byteSize
            members.append(
                (
                    key: name,
                    value: .object([
                        (key: "dtype", value: .string(precision.dtype.rawValue)),
                        (key: "shape", value: .array(tensor.shape.map { .integer($0) })),
                        (key: "data_offsets", value: .array([.integer(offset), .integer(offset + byteCount)])),
                    ])
                ))
            offset += byteCount
        }
        var text = JSONValue.object(members).serialized
        let remainder = text.utf8.count % 8
        if remainder != 0 { text += String(repeating: " ", count: 8 - remainder) }
        return text
    }

    private static func writeHalf(_ descriptor: Int32, _ values: UnsafeBufferPointer<Float>, path: String) throws {
        let chunk = 1 << 16
        var buffer = [UInt16](repeating: 0, count: min(chunk, values.count))
        var start = 0
        while start < values.count {
            let count = min(chunk, values.count - start)
            buffer.withUnsafeMutableBufferPointer { out in
                for i in 0..<count { out[i] = FloatConversion.half(from: values[start + i]).littleEndian }
            }
            try buffer.withUnsafeBytes {
                try writeAll(descriptor, UnsafeRawBufferPointer(rebasing: $0[0..<(count * 2)]), path: path)
            }
            start += count
        }
    }

    private static func writeAll(_ descriptor: Int32, _ bytes: UnsafeRawBufferPointer, path: String) throws {
        guard var pointer = bytes.baseAddress else { return }
        var remaining = bytes.count
        while remaining > 0 {
            let written = systemWrite(descriptor, pointer, remaining)
            if written < 0 {
                if errno == EINTR { continue }
                throw WeightsError.writeFailed(path: path, reason: String(cString: strerror(errno)))
            }
            pointer += written
            remaining -= written
        }
    }
}

private func systemWrite(_ descriptor: Int32, _ pointer: UnsafeRawPointer, _ count: Int) -> Int {
    #if canImport(Glibc)
        return Glibc.write(descriptor, pointer, count)
    #else
        return Darwin.write(descriptor, pointer, count)
    #endif
}
