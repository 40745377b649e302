import Foundation

/// A JSON object read the way AUTOMATIC1111's FastAPI/pydantic models read it: unknown keys ignored, `null` the same
/// as absent, numbers accepted as ints or floats (and numeric strings), booleans also as 0/1 and "true"/"false".
/// A value of the wrong kind is a 422, as pydantic's validation error is.
struct A1111Fields {
    let values: [String: Any]

    init(_ values: [String: Any]) {
        self.values = values
    }

    /// Parses a request body that must be a JSON object (an empty body is a 422, as FastAPI answers a missing body).
    static func parse(_ data: Data) throws -> A1111Fields {
        guard !data.isEmpty else {
            throw APIError(.unprocessableContent, "invalid_request", "the request needs a JSON object body")
        }
        let object: Any
        do {
            object = try JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed])
        } catch {
            throw APIError(.unprocessableContent, "invalid_request", "the request body is not valid JSON")
        }
        guard let fields = object as? [String: Any] else {
            throw APIError(.unprocessableContent, "invalid_request", "the request body must be a JSON object")
        }
        return A1111Fields(fields)
    }

    /// The value at `key`, nil when absent or null.
    func value(_ key: String) -> Any? {
        guard let value = values[key], !(value is NSNull) else { return nil }
        return value
    }

    func has(_ key: String) -> Bool { value(key) != nil }

    private func mistyped(_ key: String, _ expected: String) -> APIError {
        APIError(.unprocessableContent, "invalid_request", "\(key) must be \(expected), got \(Self.describe(values[key] as Any))")
    }

    func string(_ key: String) throws -> String? {
        guard let value = value(key) else { return nil }
        if let text = value as? String { return text }
        if let number = value as? NSNumber, !Self.isBool(number) { return number.stringValue }
        throw mistyped(key, "a string")
    }

    func int(_ key: String) throws -> Int? {
        guard let value = value(key) else { return nil }
        if let number = value as? NSNumber {
            if Self.isBool(number) { return number.boolValue ? 1 : 0 }
            guard let exact = Self.exactInt(number) else {
                let double = number.doubleValue
                if double.isFinite, double == double.rounded() {
                    throw APIError(.unprocessableContent, "invalid_request", "\(key) is out of range: \(number) does not fit an integer")
                }
                throw mistyped(key, "an integer")
            }
            return exact
        }
        if let text = value as? String, let parsed = Int(text.trimmingCharacters(in: .whitespaces)) { return parsed }
        throw mistyped(key, "an integer")
    }

    func double(_ key: String) throws -> Double? {
        guard let value = value(key) else { return nil }
        if let number = value as? NSNumber { return Self.isBool(number) ? (number.boolValue ? 1 : 0) : number.doubleValue }
        if let text = value as? String, let parsed = Double(text.trimmingCharacters(in: .whitespaces)) { return parsed }
        throw mistyped(key, "a number")
    }

    func bool(_ key: String) throws -> Bool? {
        guard let value = value(key) else { return nil }
        if let number = value as? NSNumber {
            if Self.isBool(number) { return number.boolValue }
            if number.doubleValue == 0 || number.doubleValue == 1 { return number.doubleValue == 1 }
        }
        if let text = value as? String {
            switch text.lowercased() {
            case "true", "1", "yes", "on": return true
            case "false", "0", "no", "off": return false
            default: break
            }
        }
        throw mistyped(key, "a boolean")
    }

    func object(_ key: String) throws -> [String: Any]? {
        guard let value = value(key) else { return nil }
        guard let object = value as? [String: Any] else { throw mistyped(key, "an object") }
        return object
    }

    func array(_ key: String) throws -> [Any]? {
        guard let value = value(key) else { return nil }
        guard let array = value as? [Any] else { throw mistyped(key, "a list") }
        return array
    }

    /// The number as an `Int` when it is a whole number that fits one (never a trapping conversion).
    static func exactInt(_ number: NSNumber) -> Int? {
        switch String(cString: number.objCType) {
        case "q", "l", "i", "s", "c":
            return number.intValue
        case "Q", "L", "I", "S", "C":
            let value = number.uint64Value
            return value <= UInt64(Int.max) ? Int(value) : nil
        default:
            break
        }
        let double = number.doubleValue
        guard double.isFinite, double == double.rounded(), abs(double) < 9.2e18 else { return nil }
        return number.intValue
    }

    /// JSON booleans arrive as NSNumber with the `char` type.
    static func isBool(_ number: NSNumber) -> Bool {
        String(cString: number.objCType) == "c"
    }

    static func describe(_ value: Any) -> String {
        switch value {
        case is String: "a string"
        case let number as NSNumber: isBool(number) ? "a boolean" : "the number \(number)"
        case is [Any]: "a list"
        case is [String: Any]: "an object"
        case is NSNull: "null"
        default: "\(type(of: value))"
        }
    }
}
