import Compute
import Foundation

/// A golden's `attrs` metadata (the JSON object of constructor arguments), with typed accessors that
/// throw a clear error when a key is missing or has the wrong type.
public struct Attributes {
    public let values: [String: Any]
    public let source: String

    public init(_ golden: Golden, key: String = "attrs") throws {
        guard let object = try golden.json(key) as? [String: Any] else {
            throw GoldenError.badAttribute(name: golden.name, key: key, value: golden.metadata[key] ?? "", expected: "a JSON object")
        }
        values = object
        source = golden.name
    }

    /// True when the key is present and not JSON null.
    public func has(_ key: String) -> Bool { values[key] != nil && !(values[key] is NSNull) }

    private func value(_ key: String) throws -> Any {
        guard let value = values[key], !(value is NSNull) else {
            throw GoldenError.missingAttribute(name: source, key: "attrs.\(key)", available: values.keys.sorted())
        }
        return value
    }

    public func int(_ key: String) throws -> Int {
        let raw = try value(key)
        if let number = raw as? NSNumber { return number.intValue }
        if let list = raw as? [NSNumber], let first = list.first { return first.intValue }
        throw GoldenError.badAttribute(name: source, key: key, value: "\(raw)", expected: "an integer")
    }

    public func float(_ key: String) throws -> Float {
        guard let number = try value(key) as? NSNumber else {
            throw GoldenError.badAttribute(name: source, key: key, value: "\(values[key] ?? "")", expected: "a number")
        }
        return number.floatValue
    }

    public func bool(_ key: String) throws -> Bool {
        guard let number = try value(key) as? NSNumber else {
            throw GoldenError.badAttribute(name: source, key: key, value: "\(values[key] ?? "")", expected: "a boolean")
        }
        return number.boolValue
    }

    public func ints(_ key: String) throws -> [Int] {
        let raw = try value(key)
        if let list = raw as? [NSNumber] { return list.map(\.intValue) }
        if let number = raw as? NSNumber { return [number.intValue] }
        throw GoldenError.badAttribute(name: source, key: key, value: "\(raw)", expected: "a list of integers")
    }

    public func string(_ key: String) throws -> String {
        guard let text = try value(key) as? String else {
            throw GoldenError.badAttribute(name: source, key: key, value: "\(values[key] ?? "")", expected: "a string")
        }
        return text
    }
}

extension Golden {
    /// An NCHW image input converted to the engine's NHWC layout.
    public func image(_ key: String) throws -> Tensor { nchwToNHWC(try input(key)) }

    /// An NCHW image output converted to NHWC, to compare with the engine's result.
    public func expectedImage(_ key: String) throws -> Tensor { nchwToNHWC(try output(key)) }
}
