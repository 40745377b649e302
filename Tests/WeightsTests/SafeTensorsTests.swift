import Compute
import Foundation
import Weights
import XCTest

final class SafeTensorsTests: XCTestCase {
    private var directory: TemporaryDirectory!

    override func setUpWithError() throws { directory = try TemporaryDirectory() }
    override func tearDown() { directory = nil }

    /// Writes a file from a header and data region and opens it.
    private func open(header: String, data: [UInt8] = [], headerLength: UInt64? = nil) throws -> SafeTensorsFile {
        let url = try directory.write(
            safetensorsBytes(header: header, data: data, headerLength: headerLength), to: "t.safetensors")
        return try SafeTensorsFile(contentsOf: url)
    }

    // MARK: - Round trips

    func testFloat32RoundTripWithMetadata() throws {
        let weight = Tensor(shape: [2, 3], values: [1, -2, 3.5, 0, .infinity, -0.0])
        let bias = Tensor(shape: [3], values: [0.25, 1e-30, -7])
        let url = directory.file("model.safetensors")
        try SafeTensorsWriter.write(
            ["layer.weight": weight, "layer.bias": bias], metadata: ["format": "pt", "note": "a \"quoted\" \\ value"],
            to: url)

        let file = try SafeTensorsFile(contentsOf: url)
        XCTAssertEqual(file.names, ["layer.bias", "layer.weight"])
        XCTAssertEqual(file.metadata, ["format": "pt", "note": "a \"quoted\" \\ value"])
        XCTAssertTrue(file.contains("layer.weight"))
        XCTAssertFalse(file.contains("layer"))
        let info = try file.info("layer.weight")
        XCTAssertEqual(info.dtype, .float32)
        XCTAssertEqual(info.shape, [2, 3])
        XCTAssertEqual(info.dataOffsets, 12..<36)  // sorted names: bias (12 bytes) comes first
        XCTAssertEqual(info.elementCount, 6)
        XCTAssertTrue(try file.tensor("layer.weight").isBitwiseEqual(to: weight))
        XCTAssertTrue(try file.tensor("layer.bias").isBitwiseEqual(to: bias))
        XCTAssertEqual(try file.shape(of: "layer.bias"), [3])
    }

    /// `storedTensors` keeps F16 narrow and F32 as is, with the values `tensor(_:)` widens, handing each to `prepare` in
    /// order. A file read into memory (`readingUpTo`, as LoRAs are) gives views of its read buffer, which they then hold
    /// (`bytes`: the whole file); a mapped file's are copied out (the mapping is read-only), `bytes` their own.
    func testStoredTensorsKeepTheFilesFormatAndViewItsReadBuffer() throws {
        let tensors: [String: Tensor] = [
            "a": Tensor(shape: [3, 5], values: (0..<15).map { Float($0) * 0.5 - 3 }),
            "b": Tensor(shape: [7], values: (0..<7).map { Float($0) * 0.25 }),
            "c": Tensor(shape: [2, 2, 3, 3], values: (0..<36).map { Float($0 % 11) - 5 }),
            "scalar": Tensor(shape: [], values: [4]),
        ]
        for (precision, format) in [(SafeTensorsWriter.Precision.float32, StoredTensor.Format.float32), (.float16, .float16)] {
            let url = directory.file("lora-\(format).safetensors")
            try SafeTensorsWriter.write(tensors, precision: precision, to: url)
            let fileSize = try XCTUnwrap(FileManager.default.attributesOfItem(atPath: url.path)[.size] as? Int)
            let mapped = try SafeTensorsFile(contentsOf: url)
            let read = try SafeTensorsFile(contentsOf: url, readingUpTo: 1 << 20)
            XCTAssertEqual(read.names, mapped.names)
            let names = ["c", "a", "scalar", "b"]
            var handed: [Int] = []
            let viewed = try read.storedTensors(names) { index, tensor in
                handed.append(index)
                return tensor
            }
            XCTAssertEqual(handed, [0, 1, 2, 3])
            XCTAssertEqual(viewed.bytes, fileSize, "views of the read buffer hold the whole file")
            let copied = try mapped.storedTensors(names) { $1 }
            XCTAssertEqual(copied.bytes, try names.reduce(0) { $0 + (try mapped.info($1).elementCount) * format.byteSize })
            for (name, (view, copy)) in zip(names, zip(viewed.tensors, copied.tensors)) {
                XCTAssertEqual([view.format, copy.format], [format, format], name)
                XCTAssertEqual(view.shape, try mapped.shape(of: name))
                XCTAssertTrue(view.float32().isBitwiseEqual(to: try mapped.tensor(name)), name)
                XCTAssertTrue(copy.float32().isBitwiseEqual(to: try mapped.tensor(name)), name)
                XCTAssertTrue(try read.tensor(name).isBitwiseEqual(to: mapped.tensor(name)), name)
            }
            // `prepare` may change a tensor in place: a view changes the read buffer (what a second read of that file
            // sees), a copy leaves the mapping alone.
            for file in [read, mapped] {
                _ = try file.storedTensors(["c"]) { $1.channelsLastKernelInPlace() }
                let again = try file.storedTensors(["c"]) { $1 }.tensors[0].float32()
                let expected = file === read ? permute(tensors["c"]!, [0, 2, 3, 1]).reshaped([2, 2, 3, 3]) : tensors["c"]!
                XCTAssertTrue(again.isBitwiseEqual(to: expected), file === read ? "the view was reordered" : "the copy was")
            }
            XCTAssertEqual(try read.storedTensors([]) { $1 }.tensors.count, 0)
        }
        // A file over the limit is mapped as before; a file that is not a regular file is refused either way.
        let url = directory.file("lora-float32.safetensors")
        XCTAssertTrue(try SafeTensorsFile(contentsOf: url, readingUpTo: 16).tensor("a").isBitwiseEqual(to: tensors["a"]!))
        assertWeightsError(["directory"]) { try SafeTensorsFile(contentsOf: directory.url, readingUpTo: 1 << 20) }
        let integers = try open(
            header: #"{"f":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"i":{"dtype":"I32","shape":[1],"data_offsets":[4,8]}}"#,
            data: littleEndianBytes([Float(1), Float(2)]))
        assertWeightsError(["I32"]) { try integers.storedTensors(["f", "i"]) { $1 } }
    }

    /// An element misaligned for its type in the read buffer (an F32 after three F16s) is copied out, and an F64 widened
    /// to F32: each in an allocation of its own, which `bytes` counts beside the buffer.
    func testStoredTensorsCopyMisalignedAndWidenedOnes() throws {
        var header = #"{"h":{"dtype":"F16","shape":[3],"data_offsets":[0,6]},"f":{"dtype":"F32","shape":[2],"data_offsets":[6,14]},"#
            + #""d":{"dtype":"F64","shape":[1],"data_offsets":[14,22]}}"#
        while (8 + header.utf8.count) % 64 != 0 { header += " " }  // the data region starts 64-byte aligned in the buffer
        let data = littleEndianBytes([UInt16(0x3C00), 0xC000, 0x3555]) + littleEndianBytes([Float(1.5), -7]) + littleEndianBytes([Double(0.1)])
        let url = try directory.write(safetensorsBytes(header: header, data: data), to: "mixed.safetensors")
        let read = try SafeTensorsFile(contentsOf: url, readingUpTo: 1 << 20)
        let stored = try read.storedTensors(["h", "f", "d"]) { $1 }
        XCTAssertEqual(stored.tensors.map(\.format), [.float16, .float32, .float32])
        XCTAssertEqual(stored.tensors[0].float32().scalars, [1, -2, 0.333251953125])
        XCTAssertEqual(stored.tensors[1].float32().scalars, [1.5, -7])
        XCTAssertEqual(stored.tensors[2].float32().scalars, [Float(0.1)])
        XCTAssertEqual(stored.bytes, 8 + header.utf8.count + data.count + 2 * 4 + 4, "the buffer, the copied F32 and the widened F64")
    }

    func testFloat16RoundTrip() throws {
        // All exactly representable in binary16, so the round trip is exact.
        let values: [Float] = [1, -2, 0.5, 1024, 65504, -65504, 6.1035156e-05, 5.9604645e-08, -0.0, 0.333251953125]
        let url = directory.file("half.safetensors")
        try SafeTensorsWriter.write(["x": Tensor(shape: [2, 5], values: values)], precision: .float16, to: url)
        let file = try SafeTensorsFile(contentsOf: url)
        XCTAssertEqual(try file.info("x").dtype, .float16)
        XCTAssertEqual(try file.info("x").dataOffsets, 0..<20)
        let loaded = try file.tensor("x")
        XCTAssertEqual(loaded.shape, [2, 5])
        assertBitwiseEqual(loaded.scalars, values)
    }

    func testFloat16SpecialValuesFromHandWrittenBytes() throws {
        let bits: [UInt16] = [0x3C00, 0xC000, 0x0001, 0x03FF, 0x0400, 0x7BFF, 0x7C00, 0xFC00, 0x8000, 0x3555]
        let file = try open(
            header: #"{"h":{"dtype":"F16","shape":[10],"data_offsets":[0,20]}}"#, data: littleEndianBytes(bits))
        let expected: [Float] = [
            1, -2, 5.9604645e-08, 6.0975552e-05, 6.1035156e-05, 65504, .infinity, -.infinity, -0.0, 0.33325195,
        ]
        assertBitwiseEqual(try file.tensor("h").scalars, expected)

        let nan = try open(header: #"{"n":{"dtype":"F16","shape":[],"data_offsets":[0,2]}}"#, data: [0x00, 0x7E])
        XCTAssertTrue(try nan.tensor("n").scalars[0].isNaN)
    }

    func testBFloat16FromHandWrittenBytes() throws {
        // bfloat16 is the top 16 bits of a float32: 0x3F80 = 1.0, 0xC040 = -3.0, 0x3FC0 = 1.5, 0x7F80 = inf,
        // 0x0001 = the smallest subnormal, 0x3E2A ~ 0.166.
        let bits: [UInt16] = [0x3F80, 0xC040, 0x3FC0, 0x7F80, 0x0001, 0x3E2A]
        let file = try open(
            header: #"{"__metadata__":{"format":"pt"},"b":{"dtype":"BF16","shape":[2,3],"data_offsets":[0,12]}}"#,
            data: littleEndianBytes(bits))
        XCTAssertEqual(try file.info("b").dtype, .bfloat16)
        let tensor = try file.tensor("b")
        XCTAssertEqual(tensor.shape, [2, 3])
        assertBitwiseEqual(
            tensor.scalars,
            [1, -3, 1.5, .infinity, Float(bitPattern: 0x0001_0000), Float(bitPattern: 0x3E2A_0000)])
        XCTAssertEqual(file.metadata, ["format": "pt"])
    }

    func testFloat64IsNarrowed() throws {
        let values: [Double] = [1.5, -2.25, 0.1, 1e300]
        let file = try open(
            header: #"{"d":{"dtype":"F64","shape":[4],"data_offsets":[0,32]}}"#, data: littleEndianBytes(values))
        assertBitwiseEqual(try file.tensor("d").scalars, [1.5, -2.25, Float(0.1), .infinity])
    }

    func testFloat8IsWidened() throws {
        // E4M3 (bias 7): 0x38 = 1, 0xB8 = -1, 0x7E = 448 (largest), 0x01 = 2^-9, 0x7F = NaN.
        // E5M2 is the top byte of a binary16: 0x3C = 1, 0xC0 = -2, 0x7C = inf.
        let file = try open(
            header: #"{"a":{"dtype":"F8_E4M3","shape":[5],"data_offsets":[0,5]},"#
                + #""b":{"dtype":"F8_E5M2","shape":[3],"data_offsets":[5,8]}}"#,
            data: [0x38, 0xB8, 0x7E, 0x01, 0x7F, 0x3C, 0xC0, 0x7C])
        let a = try file.tensor("a").scalars
        XCTAssertEqual(Array(a.prefix(4)), [1, -1, 448, 0.001953125])
        XCTAssertTrue(a[4].isNaN)
        XCTAssertEqual(try file.tensor("b").scalars, [1, -2, .infinity])
    }

    func testScalarAndZeroSizedTensors() throws {
        let file = try open(
            header: #"{"empty":{"dtype":"F32","shape":[0,3],"data_offsets":[0,0]},"#
                + #""scalar":{"dtype":"F32","shape":[],"data_offsets":[0,4]}}"#,
            data: littleEndianBytes([Float(2.5)]))
        XCTAssertEqual(try file.tensor("scalar").shape, [])
        XCTAssertEqual(try file.tensor("scalar").scalars, [2.5])
        XCTAssertEqual(try file.tensor("empty").shape, [0, 3])
        XCTAssertEqual(try file.tensor("empty").count, 0)
    }

    func testRawBytesAreExactlyAsStored() throws {
        let file = try open(
            header: #"{"h":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}}"#, data: [0x00, 0x3C, 0x00, 0xC0])
        let bytes = try file.withRawBytes("h") { Array($0) }
        XCTAssertEqual(bytes, [0x00, 0x3C, 0x00, 0xC0])
    }

    func testEmptyHeaderObjectIsAnEmptyFile() throws {
        let file = try open(header: "{}      ")
        XCTAssertEqual(file.names, [])
        XCTAssertEqual(file.metadata, [:])
    }

    // MARK: - Lookup errors

    func testIntegerTensorRequestedAsFloatNamesTensorAndDType() throws {
        let file = try open(
            header: #"{"ids":{"dtype":"I64","shape":[2],"data_offsets":[0,16]}}"#, data: [UInt8](repeating: 1, count: 16))
        XCTAssertEqual(try file.info("ids").dtype, .int64)  // the header itself is fine
        assertWeightsError(["t.safetensors", "'ids'", "I64", "not a floating-point"]) { try file.tensor("ids") }
    }

    func testMissingTensorNamesFileAndTensor() throws {
        let file = try open(header: "{}")
        assertWeightsError(["t.safetensors", "no tensor named 'unet.conv_in.weight'"]) {
            try file.tensor("unet.conv_in.weight")
        }
    }

    func testMissingFile() {
        assertWeightsError(["cannot open", "nowhere.safetensors", "No such file"]) {
            try SafeTensorsFile(contentsOf: self.directory.file("nowhere.safetensors"))
        }
    }

    func testDirectoryIsNotAFile() {
        assertWeightsError(["cannot open", "directory"]) { try SafeTensorsFile(contentsOf: self.directory.url) }
    }

    // MARK: - Truncation

    func testEmptyFile() throws {
        let url = try directory.write([], to: "empty.safetensors")
        assertWeightsError(["empty.safetensors", "truncated", "0 bytes", "8-byte header length"]) {
            try SafeTensorsFile(contentsOf: url)
        }
    }

    func testFileShorterThanEightBytes() throws {
        let url = try directory.write([0x10, 0, 0, 0], to: "short.safetensors")
        assertWeightsError(["short.safetensors", "truncated", "4 bytes"]) { try SafeTensorsFile(contentsOf: url) }
    }

    func testHeaderLengthPastEndOfFile() {
        assertWeightsError(["truncated", "header length 500", "past the end of the file"]) {
            try self.open(header: "{}", headerLength: 500)
        }
    }

    func testHugeHeaderLengthIsRefusedBeforeAnyAllocation() {
        assertWeightsError(["header length 1152921504606846976", "exceeds the limit of 100000000"]) {
            try self.open(header: "{}", headerLength: 1 << 60)
        }
        assertWeightsError(["header length 18446744073709551615", "exceeds"]) {
            try self.open(header: "{}", headerLength: .max)
        }
    }

    func testDataCutShort() throws {
        let url = directory.file("cut.safetensors")
        try SafeTensorsWriter.write(["w": Tensor(shape: [4, 4], repeating: 1)], to: url)
        let full = try Data(contentsOf: url)
        try full.prefix(full.count - 10).write(to: url)
        assertWeightsError(["cut.safetensors", "'w'", "past the end of the data region (54 bytes)", "truncated"]) {
            try SafeTensorsFile(contentsOf: url)
        }
    }

    // MARK: - Header JSON

    func testHeaderThatIsNotJSON() {
        assertWeightsError(["invalid safetensors header", "not valid JSON"]) {
            try self.open(header: #"{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]"#, data: [0, 0, 0, 0])
        }
        assertWeightsError(["not valid JSON", "expected a string key at byte 1"]) { try self.open(header: "{not json}") }
        assertWeightsError(["not valid JSON", "unexpected data after the JSON value"]) {
            try self.open(header: "{} {}")
        }
    }

    func testHeaderThatIsNotAnObject() {
        assertWeightsError(["not a JSON object", "must start with '{'"]) { try self.open(header: "[1, 2, 3]") }
        assertWeightsError(["not a JSON object"]) { try self.open(header: #""text""#) }
        assertWeightsError(["not a JSON object"]) { try self.open(header: " {}") }
        assertWeightsError(["not a JSON object"]) { try self.open(header: "") }
    }

    func testInvalidUTF8InHeader() {
        let bytes: [UInt8] = Array(#"{"a"#.utf8) + [0xFF, 0xFE] + Array(#"":1}"#.utf8)
        let raw: [UInt8] = (0..<8).map { UInt8((UInt64(bytes.count) >> (8 * $0)) & 0xFF) } + bytes
        assertWeightsError(["not valid JSON", "UTF-8"]) {
            try SafeTensorsFile(contentsOf: self.directory.write(raw, to: "utf8.safetensors"))
        }
    }

    func testDuplicateTensorNamesAreRefused() {
        assertWeightsError(["not valid JSON", "duplicate key \"a\""]) {
            try self.open(
                header: #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"#
                    + #""a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#,
                data: [UInt8](repeating: 0, count: 8))
        }
        // Inside an entry, and in an object of more members than the parser scans for duplicates (it keeps a set there).
        assertWeightsError(["not valid JSON", "duplicate key \"shape\""]) {
            try self.open(header: #"{"a":{"dtype":"F32","shape":[1],"shape":[1],"data_offsets":[0,4]}}"#, data: [UInt8](repeating: 0, count: 4))
        }
        let entries = (0..<10).map { #""t\#($0)":{"dtype":"F32","shape":[1],"data_offsets":[\#(4 * $0),\#(4 * $0 + 4)]}"# }
        assertWeightsError(["not valid JSON", "duplicate key \"t1\""]) {
            try self.open(header: "{" + (entries + [entries[1]]).joined(separator: ",") + "}", data: [UInt8](repeating: 0, count: 44))
        }
        XCTAssertEqual(try open(header: "{" + entries.joined(separator: ",") + "}", data: [UInt8](repeating: 0, count: 40)).names.count, 10)
    }

    /// Integers up to Int.max are integers; one past it is a number like 1.5, which no shape or offset may be.
    func testIntegersAtTheLimitsOfInt() throws {
        let largest = try open(header: #"{"a":{"dtype":"F32","shape":[9223372036854775807,0],"data_offsets":[0,0]}}"#)
        XCTAssertEqual(try largest.shape(of: "a"), [Int.max, 0])
        for shape in ["[9223372036854775808,0]", "[-9223372036854775808,0]", "[1.0]", "[1e3]", "[-1]"] {
            assertWeightsError(["is not a list of non-negative integers"]) {
                try self.open(header: #"{"a":{"dtype":"F32","shape":"# + shape + #","data_offsets":[0,0]}}"#)
            }
        }
        XCTAssertEqual(try open(header: #"{"a":{"dtype":"F32","shape":[-0,7],"data_offsets":[0,0]}}"#).shape(of: "a"), [0, 7])
    }

    func testMetadataMustMapStringsToStrings() {
        assertWeightsError(["__metadata__", "'steps'", "a number", "expected a string"]) {
            try self.open(header: #"{"__metadata__":{"steps":20}}"#)
        }
        assertWeightsError(["__metadata__ is an array"]) { try self.open(header: #"{"__metadata__":["a"]}"#) }
        XCTAssertEqual(try open(header: #"{"__metadata__":null}"#).metadata, [:])
    }

    // MARK: - Entries

    func testUnknownDType() {
        assertWeightsError(["tensor 'q'", "unknown dtype 'Q4_0'", "F32"]) {
            try self.open(header: #"{"q":{"dtype":"Q4_0","shape":[2],"data_offsets":[0,1]}}"#, data: [0])
        }
    }

    func testMissingFields() {
        assertWeightsError(["tensor 'a'", "missing 'dtype'"]) {
            try self.open(header: #"{"a":{"shape":[1],"data_offsets":[0,4]}}"#, data: [0, 0, 0, 0])
        }
        assertWeightsError(["tensor 'a'", "missing 'shape'"]) {
            try self.open(header: #"{"a":{"dtype":"F32","data_offsets":[0,4]}}"#, data: [0, 0, 0, 0])
        }
        assertWeightsError(["tensor 'a'", "missing 'data_offsets'"]) {
            try self.open(header: #"{"a":{"dtype":"F32","shape":[1]}}"#, data: [0, 0, 0, 0])
        }
        assertWeightsError(["tensor 'a'", "the entry is a number, expected an object"]) {
            try self.open(header: #"{"a":5}"#)
        }
    }

    func testNegativeShape() {
        assertWeightsError(["tensor 'w'", "shape [2,-1]", "non-negative integers"]) {
            try self.open(header: #"{"w":{"dtype":"F32","shape":[2,-1],"data_offsets":[0,0]}}"#)
        }
        assertWeightsError(["tensor 'w'", "shape [2.5]", "non-negative integers"]) {
            try self.open(header: #"{"w":{"dtype":"F32","shape":[2.5],"data_offsets":[0,0]}}"#)
        }
    }

    func testShapeWhoseByteCountOverflows() {
        assertWeightsError(["tensor 'w'", "too"]) {
            try self.open(
                header: #"{"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,0]}}"#)
        }
        assertWeightsError(["tensor 'w'", "too large"]) {
            try self.open(header: #"{"w":{"dtype":"F64","shape":[2305843009213693952],"data_offsets":[0,0]}}"#)
        }
    }

    func testOffsetsPastTheEnd() {
        assertWeightsError(["tensor 'w'", "data_offsets [0, 400]", "past the end of the data region (16 bytes)"]) {
            try self.open(
                header: #"{"w":{"dtype":"F32","shape":[100],"data_offsets":[0,400]}}"#,
                data: [UInt8](repeating: 0, count: 16))
        }
        assertWeightsError(["tensor 'w'", "not a pair of non-negative integers"]) {
            try self.open(header: #"{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,18446744073709551620]}}"#)
        }
    }

    func testBeginAfterEnd() {
        assertWeightsError(["tensor 'w'", "data_offsets [8, 4]", "begin after end"]) {
            try self.open(
                header: #"{"w":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}}"#,
                data: [UInt8](repeating: 0, count: 8))
        }
    }

    func testWrongByteCountForShapeAndDType() {
        assertWeightsError(["tensor 'w'", "shape [2, 3] of F32 needs 24 bytes", "cover 20"]) {
            try self.open(
                header: #"{"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,20]}}"#,
                data: [UInt8](repeating: 0, count: 20))
        }
        assertWeightsError(["tensor 'w'", "of F16 needs 12 bytes", "cover 24"]) {
            try self.open(
                header: #"{"w":{"dtype":"F16","shape":[2,3],"data_offsets":[0,24]}}"#,
                data: [UInt8](repeating: 0, count: 24))
        }
    }

    func testOverlappingRanges() {
        assertWeightsError(["tensors 'a' and 'b'", "overlapping"]) {
            try self.open(
                header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"#
                    + #""b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#,
                data: [UInt8](repeating: 0, count: 12))
        }
        // The same range named twice is an overlap too.
        assertWeightsError(["tensors 'a' and 'b'", "overlapping"]) {
            try self.open(
                header: #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"#
                    + #""b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#,
                data: [UInt8](repeating: 0, count: 4))
        }
    }

    func testHoleInDataRegion() {
        assertWeightsError(["not fully covered", "bytes 4..<8", "after 'a'", "before 'b'"]) {
            try self.open(
                header: #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"#
                    + #""b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}"#,
                data: [UInt8](repeating: 0, count: 12))
        }
        assertWeightsError(["not fully covered", "at the start"]) {
            try self.open(
                header: #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#,
                data: [UInt8](repeating: 0, count: 8))
        }
    }

    func testBytesAfterLastTensor() {
        assertWeightsError(["not fully covered", "3 bytes after the last tensor"]) {
            try self.open(
                header: #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#,
                data: [UInt8](repeating: 0, count: 7))
        }
    }
}
