import Compute
import Foundation
import Weights
import XCTest

final class SafeTensorsWriterTests: XCTestCase {
    private var directory: TemporaryDirectory!

    override func setUpWithError() throws { directory = try TemporaryDirectory() }
    override func tearDown() { directory = nil }

    /// Bytes from `safetensors.numpy.save({"b": [1, -2], "a.weight": [[0.5]]}, metadata={"format": "pt"})`
    /// (safetensors 0.8.0).
    func testMatchesReferenceImplementationByteForByte() throws {
        let url = directory.file("reference.safetensors")
        try SafeTensorsWriter.write(
            ["b": Tensor(shape: [2], values: [1, -2]), "a.weight": Tensor(shape: [1, 1], values: [0.5])],
            metadata: ["format": "pt"], to: url)
        let header =
            #"{"__metadata__":{"format":"pt"},"a.weight":{"dtype":"F32","shape":[1,1],"data_offsets":[0,4]},"#
            + #""b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}    "#
        let expected = safetensorsBytes(header: header, data: [0, 0, 0, 63, 0, 0, 128, 63, 0, 0, 0, 192])
        XCTAssertEqual(expected.count, 172)
        XCTAssertEqual(Array(try Data(contentsOf: url)), expected)
    }

    /// Bytes from `safetensors.numpy.save({"x": np.array([1, -2], np.float16)})`.
    func testFloat16MatchesReferenceImplementationByteForByte() throws {
        let url = directory.file("half.safetensors")
        try SafeTensorsWriter.write(["x": Tensor(shape: [2], values: [1, -2])], precision: .float16, to: url)
        let expected = safetensorsBytes(
            header: #"{"x":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}}  "#, data: [0x00, 0x3C, 0x00, 0xC0])
        XCTAssertEqual(Array(try Data(contentsOf: url)), expected)
    }

    /// Expected bits from `np.array(values, np.float32).astype(np.float16).view(np.uint16)` (numpy 2.4):
    /// ties round to even, overflow goes to infinity, tiny values to subnormals or zero.
    func testFloat16RoundsToNearestEvenLikeNumPy() throws {
        let inputBits: [UInt32] = [
            0x3F80_0000, 0x477F_E000, 0x477F_F000, 0x477F_EFFF, 0x322B_CC77, 0x3DCC_CCCD, 0x4500_1000, 0x4500_3000,
            0x337F_FAE5, 0x32FF_FAE5, 0x3300_6B66, 0x8000_0000, 0x7F80_0000, 0xFF80_0000, 0x7FC0_0000, 0x387F_DA40,
            0x3800_0000, 0x3EAA_AAAB,
        ]
        let expected: [UInt16] = [
            15360, 31743, 31744, 31743, 0, 11878, 26624, 26626, 1, 0, 1, 32768, 31744, 64512, 32256, 1023, 512, 13653,
        ]
        let url = directory.file("rounding.safetensors")
        try SafeTensorsWriter.write(
            ["x": Tensor(shape: [inputBits.count], values: inputBits.map(Float.init(bitPattern:)))],
            precision: .float16, to: url)
        let file = try SafeTensorsFile(contentsOf: url)
        let stored = try file.withRawBytes("x") { raw in
            (0..<inputBits.count).map { UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: 2 * $0, as: UInt16.self)) }
        }
        XCTAssertEqual(stored, expected)
    }

    func testHeaderIsPaddedToMultipleOfEight() throws {
        for name in ["a", "ab", "abc", "abcd", "abcde", "abcdef", "abcdefg", "abcdefgh"] {
            let url = directory.file("\(name).safetensors")
            try SafeTensorsWriter.write([name: Tensor(shape: [1], values: [1])], to: url)
            let bytes = try Data(contentsOf: url)
            let headerLength = bytes.prefix(8).enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
            XCTAssertEqual(headerLength % 8, 0, name)
            XCTAssertEqual(bytes.count, 8 + headerLength + 4, name)
            XCTAssertEqual(try SafeTensorsFile(contentsOf: url).tensor(name).scalars, [1], name)
        }
    }

    func testEscapesUnusualNames() throws {
        let name = "odd \"name\"\\with\ttabs\u{1}and ünïcode"
        let url = directory.file("names.safetensors")
        try SafeTensorsWriter.write([name: Tensor(shape: [1], values: [3])], metadata: [name: name], to: url)
        let file = try SafeTensorsFile(contentsOf: url)
        XCTAssertEqual(file.names, [name])
        XCTAssertEqual(file.metadata[name], name)
    }

    func testReservedNameIsRefused() {
        assertWeightsError(["x.safetensors", "'__metadata__' is reserved"]) {
            try SafeTensorsWriter.write(
                ["__metadata__": Tensor(shape: [1], values: [1])], to: self.directory.file("x.safetensors"))
        }
    }

    func testUnwritableLocation() {
        assertWeightsError(["cannot write", "no-such-folder"]) {
            try SafeTensorsWriter.write(
                ["a": Tensor(shape: [1], values: [1])], to: self.directory.file("no-such-folder/x.safetensors"))
        }
    }
}
