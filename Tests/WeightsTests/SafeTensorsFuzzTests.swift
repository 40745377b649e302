import Compute
import Foundation
import ParityTesting
import Weights
import XCTest

/// Seeded random-mutation fuzzing of the weight-file readers (issue 10, "Done when"): every mutated file either
/// opens or throws a `WeightsError`; nothing crashes, and what opens reads back consistently.
final class SafeTensorsFuzzTests: XCTestCase {
    private var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("safetensors-fuzz-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: directory) }

    /// Valid files: the small LoRA fixtures and files written here in float32 and float16, with metadata, a scalar
    /// and an empty tensor.
    private func seeds() throws -> [[UInt8]] {
        var seeds: [[UInt8]] = []
        for name in ["b_kohya.safetensors", "reference.safetensors"] {
            seeds.append([UInt8](try Data(contentsOf: Golden.fixturesDirectory.appendingPathComponent("lora/\(name)"))))
        }
        let tensors: [String: Tensor] = [
            "a.weight": Tensor(shape: [3, 2], values: [1, -2, 3.5, 0, 1e-3, -0.0]),
            "a.bias": Tensor(shape: [3], values: [0.25, 7, -7]),
            "alpha": Tensor(scalar: 4),
            "empty": Tensor(shape: [0, 5], values: []),
        ]
        for (index, precision) in [SafeTensorsWriter.Precision.float32, .float16].enumerated() {
            let url = directory.appendingPathComponent("seed\(index).safetensors")
            try SafeTensorsWriter.write(tensors, metadata: ["format": "pt", "ss_network_dim": "4"], precision: precision, to: url)
            seeds.append([UInt8](try Data(contentsOf: url)))
        }
        return seeds
    }

    /// Mutations that know the format: the 8-byte header length set to huge or off-by-some values, and the JSON
    /// header edited (numbers made huge or negative, dtypes swapped, entries duplicated, nesting deepened), with
    /// the length fixed up so the JSON parser sees the edit.
    private func structuredMutation(_ seed: [UInt8], using random: inout FuzzRandom) -> [UInt8] {
        var bytes = seed
        guard bytes.count >= 8 else { return bytes }
        let declared = bytes[0..<8].enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << UInt64(8 * $1.offset) }
        if random.chance(0.3) {
            let value: UInt64 = random.chance(0.5)
                ? random.pick(FuzzMutator.interestingIntegers)
                : declared &+ UInt64(bitPattern: Int64(random.below(17) - 8))
            FuzzMutator.writeInteger(value, width: 8, bigEndian: false, into: &bytes, at: 0)
            return bytes
        }
        guard declared <= UInt64(bytes.count - 8) else { return bytes }
        let headerEnd = 8 + Int(declared)
        var header = String(decoding: bytes[8..<headerEnd], as: UTF8.self)
        let data = bytes[headerEnd...]
        let numbers = [
            "18446744073709551615", "18446744073709551616", "9223372036854775807", "9223372036854775808", "-1", "-0",
            "4294967296", "1e308", "1e999", "0.5", "0", "1", "2147483648", "99999999999999999999999999",
        ]
        switch random.below(7) {
        case 0, 1:  // a number in the header replaced
            let digits = header.indices.filter { header[$0].isNumber }
            guard let at = digits.isEmpty ? nil : random.pick(digits) else { break }
            var end = at
            while end < header.endIndex, header[end].isNumber { end = header.index(after: end) }
            var start = at
            while start > header.startIndex, header[header.index(before: start)].isNumber { start = header.index(before: start) }
            header.replaceSubrange(start..<end, with: random.pick(numbers))
        case 2:  // dtype swapped
            let names = ["F32", "F16", "BF16", "F64", "I64", "U8", "BOOL", "F8_E4M3", "F8_E5M2", "X", ""]
            for name in names where header.contains("\"\(name)\"") && !name.isEmpty {
                header = header.replacingOccurrences(of: "\"\(name)\"", with: "\"\(random.pick(names))\"")
                break
            }
        case 3:  // a shape made longer or emptier
            header = header.replacingOccurrences(of: "\"shape\":[", with: random.pick(["\"shape\":[0,", "\"shape\":[4294967296,4294967296,", "\"shape\":[-2,", "\"shape\":[[],", "\"shape\":["]))
        case 4:  // deep nesting or a duplicate key
            header = random.chance(0.5)
                ? header.replacingOccurrences(of: "\"dtype\"", with: "\"x\":" + String(repeating: "[", count: 200 + random.below(2000)) + "0" + "],\"dtype\"")
                : header.replacingOccurrences(of: "{\"", with: "{\"alpha\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]},\"")
        case 5:  // data_offsets swapped or pointing past the end
            header = header.replacingOccurrences(of: "\"data_offsets\":[", with: random.pick(["\"data_offsets\":[1,", "\"data_offsets\":[18446744073709551615,", "\"data_offsets\":[0,0,"]))
        default:  // byte mutations confined to the header
            var headerBytes = Array(header.utf8)
            headerBytes = FuzzMutator.mutate(headerBytes, using: &random)
            header = String(decoding: headerBytes, as: UTF8.self)
        }
        let newHeader = Array(header.utf8)
        var result: [UInt8] = []
        var length = UInt64(newHeader.count).littleEndian
        withUnsafeBytes(of: &length) { result += $0 }
        return result + newHeader + data
    }

    /// Opens one candidate file and reads every tensor every way; returns whether it opened.
    private func exercise(_ bytes: [UInt8], iteration: Int) throws -> Bool {
        let url = directory.appendingPathComponent("case.safetensors")
        try Data(bytes).write(to: url)
        let file: SafeTensorsFile
        do {
            file = try SafeTensorsFile(contentsOf: url)
        } catch let error as WeightsError {
            XCTAssertFalse("\(error)".isEmpty)
            return false
        }
        for name in file.names {
            let info = try file.info(name)
            let byteCount = try file.withRawBytes(name) { $0.count }
            XCTAssertEqual(byteCount, info.elementCount * info.dtype.byteSize, "iteration \(iteration): \(name)")
            do {
                let tensor = try file.tensor(name)
                XCTAssertEqual(tensor.shape, info.shape, "iteration \(iteration): \(name)")
            } catch let error as WeightsError {
                guard case .notFloatingPoint = error else { throw error }
            }
        }
        return true
    }

    func testMutatedSafeTensorsFilesOpenOrThrow() throws {
        let seeds = try seeds()
        for seed in seeds { XCTAssertTrue(try exercise(seed, iteration: -1), "seed does not open") }
        var random = FuzzRandom(seed: 0x5AFE_7E45)
        var (opened, refused) = (0, 0)
        let iterations = 2000
        for iteration in 0..<iterations {
            let seed = random.pick(seeds)
            let input = random.chance(0.5)
                ? structuredMutation(seed, using: &random)
                : FuzzMutator.mutate(seed, others: seeds, using: &random)
            if try exercise(input, iteration: iteration) { opened += 1 } else { refused += 1 }
        }
        print("safetensors fuzz: \(iterations) inputs, \(opened) opened, \(refused) refused")
        // Both outcomes happen: the mutations reach past the first checks, and they do break files.
        XCTAssertGreaterThan(opened, iterations / 50)
        XCTAssertGreaterThan(refused, iterations / 2)
    }

    func testMutatedNumPyFilesDecodeOrThrow() throws {
        var seeds: [[UInt8]] = []
        for shape in [[2, 3], [1, 4, 2, 2], [5], []] {
            let count = shape.reduce(1, *)
            seeds.append([UInt8](NumPy.encode(Tensor(shape: shape, values: (0..<count).map { Float($0) - 1.5 }))))
        }
        var random = FuzzRandom(seed: 0x0A11_0CA7)
        var (decoded, refused) = (0, 0)
        for iteration in 0..<3000 {
            var input = FuzzMutator.mutate(random.pick(seeds), others: seeds, using: &random)
            if random.chance(0.3), let open = input.firstIndex(of: UInt8(ascii: "(")) {
                // A shape entry made huge or negative.
                let replacement = random.pick(["18446744073709551615", "9223372036854775807", "-3", "4294967296, 4294967296", "0"])
                input.insert(contentsOf: Array((replacement + ", ").utf8), at: open + 1)
            }
            do {
                let tensor = try NumPy.decode(Data(input), label: "fuzz \(iteration)")
                XCTAssertEqual(tensor.count, tensor.shape.reduce(1, *))
                decoded += 1
            } catch is WeightsError {
                refused += 1
            }
        }
        print("npy fuzz: \(decoded) decoded, \(refused) refused")
        XCTAssertGreaterThan(refused, 1000)
    }

    /// An empty tensor whose other dimensions multiply past Int.max is refused (a loader multiplying two of them
    /// would trap); an ordinary empty tensor is not.
    func testEmptyTensorsWithOverflowingDimensionsAreRefused() throws {
        func open(_ shape: String) throws -> SafeTensorsFile {
            let header = Array("{\"t\":{\"dtype\":\"F32\",\"shape\":\(shape),\"data_offsets\":[0,0]}}".utf8)
            var bytes: [UInt8] = []
            var length = UInt64(header.count).littleEndian
            withUnsafeBytes(of: &length) { bytes += $0 }
            let url = directory.appendingPathComponent("empty.safetensors")
            try Data(bytes + header).write(to: url)
            return try SafeTensorsFile(contentsOf: url)
        }
        for shape in ["[0,4611686018427387904,4]", "[4294967296,0,4294967296]", "[9223372036854775807,0,2]"] {
            XCTAssertThrowsError(try open(shape), shape) { error in
                XCTAssertTrue("\(error)".contains("too many elements"), "\(error)")
            }
        }
        XCTAssertEqual(try open("[0,5]").shape(of: "t"), [0, 5])
        XCTAssertEqual(try open("[3,0]").tensor("t").count, 0)
    }
}
