import Compute
import Foundation
import Weights
import XCTest

final class NumPyTests: XCTestCase {
    private var directory: TemporaryDirectory!

    override func setUpWithError() throws { directory = try TemporaryDirectory() }
    override func tearDown() { directory = nil }

    /// `np.save(f, np.arange(6, dtype=np.float32).reshape(2, 3) - 2.5)` with numpy 2.4.6.
    private let numpyWritten: [UInt8] =
        [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59, 0x01, 0x00, 0x76, 0x00]
        + Array("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }".utf8)
        + [UInt8](repeating: 0x20, count: 58) + [0x0A]
        + [0, 0, 32, 192, 0, 0, 192, 191, 0, 0, 0, 191, 0, 0, 0, 63, 0, 0, 192, 63, 0, 0, 32, 64]

    /// A `.npy` file with this header dict, padded as numpy pads it.
    private func npy(_ dictionary: String, version: UInt8 = 1, data: [UInt8]) -> [UInt8] {
        let lengthSize = version == 1 ? 2 : 4
        let text = Array(dictionary.utf8)
        let padding = 64 - (8 + lengthSize + text.count + 1) % 64
        let length = text.count + padding + 1
        return [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59, version, 0]
            + (0..<lengthSize).map { UInt8((length >> (8 * $0)) & 0xFF) }
            + text + [UInt8](repeating: 0x20, count: padding) + [0x0A] + data
    }

    func testReadsFileWrittenByNumPy() throws {
        XCTAssertEqual(numpyWritten.count, 152)
        let url = try directory.write(numpyWritten, to: "a.npy")
        let tensor = try NumPy.read(contentsOf: url)
        XCTAssertEqual(tensor.shape, [2, 3])
        XCTAssertEqual(tensor.scalars, [-2.5, -1.5, -0.5, 0.5, 1.5, 2.5])
    }

    func testWriterMatchesNumPyByteForByte() throws {
        let tensor = Tensor(shape: [2, 3], values: [-2.5, -1.5, -0.5, 0.5, 1.5, 2.5])
        XCTAssertEqual(Array(NumPy.encode(tensor)), numpyWritten)
        // Scalar and 1-D headers as numpy writes them: `()` and `(3,)`.
        let scalar = NumPy.encode(Tensor(scalar: 7))
        XCTAssertTrue(String(decoding: scalar, as: UTF8.self).contains("'shape': (), }                    "))
        XCTAssertEqual(scalar.count, 128 + 4)
        let vector = NumPy.encode(Tensor(shape: [3], repeating: 0))
        XCTAssertTrue(String(decoding: vector, as: UTF8.self).contains("'shape': (3,), }"))
        XCTAssertEqual(vector.count % 64, 12)
    }

    func testRoundTrip() throws {
        for shape in [[], [0], [5], [2, 3, 4], [1, 1, 1, 1, 7]] {
            let count = shape.reduce(1, *)
            let tensor = Tensor(shape: shape, values: (0..<count).map { Float($0) * 0.37 - 3 })
            let url = directory.file("round.npy")
            try NumPy.write(tensor, to: url)
            let loaded = try NumPy.read(contentsOf: url)
            XCTAssertTrue(loaded.isBitwiseEqual(to: tensor), "\(shape)")
            XCTAssertEqual(try Data(contentsOf: url).count % 64, (count * 4) % 64, "data is 64-byte aligned")
        }
    }

    func testReadsFloat64() throws {
        // np.array([1.5, -2.25, 3e-40, 1e300]).tofile bytes; 1e300 overflows Float32 to infinity.
        let data: [UInt8] = [
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xF8, 0x3F, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0xC0,
            0x6B, 0x03, 0x33, 0x3B, 0x39, 0x22, 0xBA, 0x37, 0x9C, 0x75, 0x00, 0x88, 0x3C, 0xE4, 0x37, 0x7E,
        ]
        let bytes = npy("{'descr': '<f8', 'fortran_order': False, 'shape': (4,), }", data: data)
        let tensor = try NumPy.decode(Data(bytes))
        XCTAssertEqual(tensor.shape, [4])
        assertBitwiseEqual(tensor.scalars, [1.5, -2.25, Float(3e-40), .infinity])
    }

    func testReadsFloat16() throws {
        let bytes = npy(
            "{'descr': '<f2', 'fortran_order': False, 'shape': (2, 2), }",
            data: [0x00, 0x3C, 0x66, 0x2E, 0xFF, 0x7B, 0x01, 0x80])
        let tensor = try NumPy.decode(Data(bytes))
        XCTAssertEqual(tensor.shape, [2, 2])
        XCTAssertEqual(tensor.scalars, [1.0, 0.0999755859375, 65504.0, -5.9604645e-08])
    }

    func testFormatVersions2And3() throws {
        let data = littleEndianBytes([Float(0), 1, 2])
        for version: UInt8 in [2, 3] {
            let bytes = npy("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", version: version, data: data)
            XCTAssertEqual(try NumPy.decode(Data(bytes)).scalars, [0, 1, 2], "version \(version)")
        }
        // Key order and quoting are free in the dict; Python 2 wrote longs as `3L`.
        let reordered = npy("{\"shape\": (3L,), \"fortran_order\": False, \"descr\": \"<f4\"}", data: data)
        XCTAssertEqual(try NumPy.decode(Data(reordered)).shape, [3])
    }

    func testFortranOrderIsRefused() {
        let bytes = npy("{'descr': '<f4', 'fortran_order': True, 'shape': (3, 2), }", data: [UInt8](repeating: 0, count: 24))
        assertWeightsError(["f.npy", "fortran_order is True", "C-order"]) { try NumPy.decode(Data(bytes), label: "f.npy") }
    }

    func testTruncatedFiles() throws {
        let url = try directory.write(Array(numpyWritten.prefix(numpyWritten.count - 5)), to: "cut.npy")
        assertWeightsError(["cut.npy", "needs 24 data bytes", "has 19", "truncated"]) { try NumPy.read(contentsOf: url) }

        let header = try directory.write(Array(numpyWritten.prefix(60)), to: "header.npy")
        assertWeightsError(["header.npy", "header length 118 runs past the end"]) { try NumPy.read(contentsOf: header) }

        let tiny = try directory.write([0x93, 0x4E, 0x55], to: "tiny.npy")
        assertWeightsError(["tiny.npy", "magic"]) { try NumPy.read(contentsOf: tiny) }

        let noLength = try directory.write([0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59, 2, 0, 1], to: "nolength.npy")
        assertWeightsError(["nolength.npy", "inside the header length"]) { try NumPy.read(contentsOf: noLength) }
    }

    func testCorruptHeaders() {
        func decode(_ dictionary: String, data: [UInt8] = []) throws -> Tensor {
            try NumPy.decode(Data(npy(dictionary, data: data)), label: "bad.npy")
        }
        assertWeightsError(["bad.npy", "dtype '>f4' is not supported"]) {
            try decode("{'descr': '>f4', 'fortran_order': False, 'shape': (1,), }", data: [0, 0, 0, 0])
        }
        assertWeightsError(["dtype '<i8' is not supported"]) {
            try decode("{'descr': '<i8', 'fortran_order': False, 'shape': (1,), }", data: [UInt8](repeating: 0, count: 8))
        }
        assertWeightsError(["malformed header", "expected a quoted string"]) {
            try decode("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }")
        }
        assertWeightsError(["malformed header", "expected a non-negative integer"]) {
            try decode("{'descr': '<f4', 'fortran_order': False, 'shape': (-1,), }")
        }
        assertWeightsError(["malformed header", "unexpected key 'extra'"]) {
            try decode("{'descr': '<f4', 'fortran_order': False, 'shape': (), 'extra': 1}")
        }
        assertWeightsError(["must have the keys"]) { try decode("{'descr': '<f4', 'shape': (1,)}") }
        assertWeightsError(["malformed header", "expected True or False"]) {
            try decode("{'descr': '<f4', 'fortran_order': 0, 'shape': (1,), }")
        }
        assertWeightsError(["malformed header", "unterminated string"]) { try decode("{'descr': '<f4") }
        assertWeightsError(["shape", "too large"]) {
            try decode("{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296), }")
        }
        assertWeightsError(["shape [1152921504606846976]", "too large"]) {
            try decode("{'descr': '<f8', 'fortran_order': False, 'shape': (1152921504606846976,), }")
        }
        assertWeightsError(["needs 4398046511104 data bytes", "truncated"]) {
            try decode("{'descr': '<f4', 'fortran_order': False, 'shape': (1024, 1073741824), }")
        }
        assertWeightsError(["format version 4.0"]) {
            try NumPy.decode(Data([0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59, 4, 0, 0, 0, 0, 0]))
        }
        assertWeightsError(["magic"]) { try NumPy.decode(Data(Array("PK\u{3}\u{4} not numpy".utf8))) }
    }

    func testMissingFile() {
        assertWeightsError(["cannot open", "absent.npy"]) { try NumPy.read(contentsOf: self.directory.file("absent.npy")) }
    }
}
