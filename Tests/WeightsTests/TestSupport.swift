import Foundation
import Weights
import XCTest

/// A fresh directory under the system temporary directory, removed when the test case is torn down.
final class TemporaryDirectory {
    let url: URL

    init() throws {
        url = FileManager.default.temporaryDirectory
            .appendingPathComponent("swiftdiffusion-weights-\(UUID().uuidString)", isDirectory: true)
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(at: url) }

    func file(_ name: String) -> URL { url.appendingPathComponent(name) }

    @discardableResult
    func write(_ bytes: [UInt8], to name: String) throws -> URL {
        let target = file(name)
        try FileManager.default.createDirectory(
            at: target.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data(bytes).write(to: target)
        return target
    }

    @discardableResult
    func write(_ text: String, to name: String) throws -> URL {
        try write(Array(text.utf8), to: name)
    }
}

/// The bytes of a safetensors file with this header text and data region; `headerLength` overrides the
/// 8-byte length prefix to build corrupt files.
func safetensorsBytes(header: String, data: [UInt8] = [], headerLength: UInt64? = nil) -> [UInt8] {
    let headerBytes = Array(header.utf8)
    let length = headerLength ?? UInt64(headerBytes.count)
    return (0..<8).map { UInt8((length >> (8 * $0)) & 0xFF) } + headerBytes + data
}

func littleEndianBytes(_ values: [Float]) -> [UInt8] {
    values.flatMap { value in (0..<4).map { UInt8((value.bitPattern >> (8 * $0)) & 0xFF) } }
}

func littleEndianBytes(_ values: [UInt16]) -> [UInt8] {
    values.flatMap { [UInt8($0 & 0xFF), UInt8($0 >> 8)] }
}

func littleEndianBytes(_ values: [Double]) -> [UInt8] {
    values.flatMap { value in (0..<8).map { UInt8((value.bitPattern >> (8 * $0)) & 0xFF) } }
}

/// Asserts that `body` throws a `WeightsError` whose description contains every one of `fragments`,
/// and returns the error for further checks.
@discardableResult
func assertWeightsError<T>(
    _ fragments: [String], file: StaticString = #filePath, line: UInt = #line, _ body: () throws -> T
) -> WeightsError? {
    do {
        _ = try body()
        XCTFail("expected a WeightsError mentioning \(fragments), but nothing was thrown", file: file, line: line)
        return nil
    } catch let error as WeightsError {
        let message = error.description
        for fragment in fragments where !message.contains(fragment) {
            XCTFail("error \"\(message)\" does not mention \"\(fragment)\"", file: file, line: line)
        }
        return error
    } catch {
        XCTFail("expected a WeightsError, got \(type(of: error)): \(error)", file: file, line: line)
        return nil
    }
}

/// Bitwise equality that treats NaN like any other bit pattern.
func assertBitwiseEqual(_ actual: [Float], _ expected: [Float], file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(actual.map(\.bitPattern), expected.map(\.bitPattern), "\(actual) != \(expected)", file: file, line: line)
}
