import Compute
import Foundation
import Weights
import XCTest

/// A golden fixture: `Tests/Fixtures/<name>.safetensors`, written by the Python reference generator, holding
/// `input.*`, `param.*` and `output.*` tensors in PyTorch layouts and string attributes in `__metadata__`.
public struct Golden: Sendable {
    /// The command that regenerates fixture `name` (`ops/<case>` or `blocks/<case>`), quoted in errors.
    public static func regenerateCommand(for name: String) -> String {
        let parts = name.split(separator: "/", maxSplits: 1).map(String.init)
        let script: String
        switch parts.first {
        case "ops": script = "make_op_goldens.py"
        case "blocks": script = "make_block_goldens.py"
        default: return "the matching script in tools/parity/ (see tools/parity/README.md)"
        }
        return "/work/venv/bin/python tools/parity/\(script) --only \(parts.last ?? name)"
    }

    /// `Tests/Fixtures`, found from this source file's path so tests work from any working directory;
    /// `SWIFTDIFFUSION_FIXTURES` overrides it.
    public static var fixturesDirectory: URL {
        if let override = ProcessInfo.processInfo.environment["SWIFTDIFFUSION_FIXTURES"], !override.isEmpty {
            return URL(fileURLWithPath: override, isDirectory: true)
        }
        return URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent()  // ParityTesting
            .deletingLastPathComponent()  // Tests
            .appendingPathComponent("Fixtures", isDirectory: true)
    }

    public let name: String
    public let file: SafeTensorsFile

    /// Loads the fixture. A missing or unreadable fixture throws `GoldenError`, which fails the calling
    /// test with instructions to regenerate it.
    public init(_ name: String) throws {
        self.name = name
        let url = Self.fixturesDirectory.appendingPathComponent("\(name).safetensors")
        guard FileManager.default.fileExists(atPath: url.path) else {
            throw GoldenError.missing(name: name, path: url.path)
        }
        do {
            file = try SafeTensorsFile(contentsOf: url)
        } catch {
            throw GoldenError.unreadable(name: name, reason: "\(error)")
        }
    }

    /// The `__metadata__` attributes.
    public var metadata: [String: String] { file.metadata }

    /// A tensor by its full name, e.g. `"input.x"` or `"output.sample"`.
    public func tensor(_ key: String) throws -> Tensor {
        do {
            return try file.tensor(key)
        } catch {
            throw GoldenError.unreadable(name: name, reason: "\(error)")
        }
    }

    public func input(_ key: String) throws -> Tensor { try tensor("input." + key) }
    public func output(_ key: String) throws -> Tensor { try tensor("output." + key) }
    public func param(_ key: String) throws -> Tensor { try tensor("param." + key) }

    /// The `param.*` tensors with the prefix stripped, ready for a model loader.
    public var params: PrefixedWeights { file.scoped(to: "param.") }

    public func string(_ key: String) throws -> String {
        guard let value = metadata[key] else {
            throw GoldenError.missingAttribute(name: name, key: key, available: metadata.keys.sorted())
        }
        return value
    }

    public func int(_ key: String) throws -> Int {
        let text = try string(key)
        guard let value = Int(text.trimmingCharacters(in: .whitespaces)) else {
            throw GoldenError.badAttribute(name: name, key: key, value: text, expected: "an integer")
        }
        return value
    }

    public func float(_ key: String) throws -> Float {
        let text = try string(key)
        guard let value = Float(text.trimmingCharacters(in: .whitespaces)) else {
            throw GoldenError.badAttribute(name: name, key: key, value: text, expected: "a number")
        }
        return value
    }

    /// An attribute holding JSON text, parsed (`[String: Any]`, `[Any]`, `String`, `NSNumber`, ...).
    public func json(_ key: String) throws -> Any {
        let text = try string(key)
        do {
            return try JSONSerialization.jsonObject(with: Data(text.utf8), options: [.fragmentsAllowed])
        } catch {
            throw GoldenError.badAttribute(name: name, key: key, value: text, expected: "JSON")
        }
    }

    /// An attribute holding JSON text, decoded as `type` (e.g. a model config struct).
    public func decode<T: Decodable>(_ type: T.Type, _ key: String) throws -> T {
        let text = try string(key)
        do {
            return try JSONDecoder().decode(type, from: Data(text.utf8))
        } catch {
            throw GoldenError.badAttribute(name: name, key: key, value: text, expected: "JSON for \(type): \(error)")
        }
    }
}

/// Why a golden fixture could not be used; thrown from a test, it fails that test with this message.
public enum GoldenError: Error, CustomStringConvertible {
    case missing(name: String, path: String)
    case unreadable(name: String, reason: String)
    case missingAttribute(name: String, key: String, available: [String])
    case badAttribute(name: String, key: String, value: String, expected: String)

    public var description: String {
        switch self {
        case .missing(let name, let path):
            return "golden fixture '\(name)' is missing (\(path)); regenerate it with "
                + "`\(Golden.regenerateCommand(for: name))` from the repository root (see tools/parity/README.md)"
        case .unreadable(let name, let reason):
            return "golden fixture '\(name)' is unusable: \(reason); regenerate it with "
                + "`\(Golden.regenerateCommand(for: name))` (see tools/parity/README.md)"
        case .missingAttribute(let name, let key, let available):
            return "golden fixture '\(name)' has no attribute '\(key)' (has: \(available.joined(separator: ", ")))"
        case .badAttribute(let name, let key, let value, let expected):
            return "golden fixture '\(name)' attribute '\(key)' = '\(value)' is not \(expected)"
        }
    }
}

/// Asserts that `actual` matches `expected` within `tolerance` (max absolute error), and always prints
/// `[parity] <label>: max abs error <e> (tolerance <t>)` so test logs record how close each check was.
/// Fails on a shape mismatch, on any NaN, or when the error exceeds the tolerance.
public func assertClose(
    _ actual: Tensor, _ expected: Tensor, tolerance: Float, _ label: String,
    file: StaticString = #filePath, line: UInt = #line
) {
    guard actual.shape == expected.shape else {
        print("[parity] \(label): shape mismatch \(actual.shape) vs expected \(expected.shape)")
        XCTFail("\(label): shape \(actual.shape) does not match expected \(expected.shape)", file: file, line: line)
        return
    }
    var worst: Float = 0
    var worstIndex = 0
    var nanIndex: Int?
    actual.withUnsafeBufferPointer { a in
        expected.withUnsafeBufferPointer { e in
            for i in 0..<a.count {
                let difference = abs(a[i] - e[i])
                if difference.isNaN {
                    // Two NaNs in the same place would still mean a broken computation upstream.
                    if nanIndex == nil { nanIndex = i }
                } else if difference > worst {
                    worst = difference
                    worstIndex = i
                }
            }
        }
    }
    if let nanIndex {
        print("[parity] \(label): max abs error nan (tolerance \(tolerance))")
        let a = actual.withUnsafeBufferPointer { $0[nanIndex] }
        let e = expected.withUnsafeBufferPointer { $0[nanIndex] }
        XCTFail("\(label): NaN at flat index \(nanIndex) (actual \(a), expected \(e))", file: file, line: line)
        return
    }
    print("[parity] \(label): max abs error \(worst) (tolerance \(tolerance))")
    if worst > tolerance {
        let a = actual.withUnsafeBufferPointer { $0[worstIndex] }
        let e = expected.withUnsafeBufferPointer { $0[worstIndex] }
        XCTFail(
            "\(label): max abs error \(worst) exceeds tolerance \(tolerance) at flat index \(worstIndex) of shape "
                + "\(actual.shape) (actual \(a), expected \(e))",
            file: file, line: line)
    }
}

/// Runs `body` once on every SIMD kernel path this processor can run (baseline, AVX2 + FMA, AVX-512), switched with
/// `Kernels.select` as `SWIFTDIFFUSION_ISA` would at start-up, then restores the selection. `body` gets the path's name
/// for assertion labels.
public func forEachKernelPath(_ body: (String) throws -> Void) rethrows {
    let original = Kernels.selection
    defer { Kernels.restore(original) }
    let sets: [ProcessorFeatures.InstructionSet] = [.baseline, .avx2, .avx512]
    for set in sets where set <= ProcessorFeatures.current.instructionSet {
        let selection = Kernels.select(set)
        precondition(selection.instructionSet == set, "selecting \(set.rawValue) gave \(selection.instructionSet.rawValue)")
        try body(set.rawValue)
    }
}
