import Foundation

/// Checks a JSON value against a schema of the OpenAPI document: the subset of JSON Schema the document uses
/// (`$ref` to components, `type`, `properties`, `required`, `additionalProperties`, `items`, `enum`, `const`,
/// `minimum`, `maximum`). Stricter than JSON Schema in one way, on purpose: an object schema that lists
/// properties rejects fields it does not list, so an undocumented response field fails a test.
struct JSONShape {
    /// `components.schemas` of the document.
    let schemas: [String: Any]

    init(document: [String: Any]) {
        schemas = (document["components"] as? [String: Any])?["schemas"] as? [String: Any] ?? [:]
    }

    /// What is wrong with `value`, one line per problem (empty when it conforms).
    func problems(_ value: Any, against schema: [String: Any], at path: String = "$") -> [String] {
        if let reference = schema["$ref"] as? String {
            let name = reference.replacingOccurrences(of: "#/components/schemas/", with: "")
            guard let target = schemas[name] as? [String: Any] else { return ["\(path): unresolved \(reference)"] }
            return problems(value, against: target, at: path)
        }
        var found: [String] = []
        if let allowed = schema["enum"] as? [Any], !allowed.contains(where: { "\($0)" == "\(value)" }) {
            found.append("\(path): \(value) is not one of \(allowed)")
        }
        if let constant = schema["const"], "\(constant)" != "\(value)" { found.append("\(path): \(value) is not \(constant)") }
        switch schema["type"] as? String {
        case "object":
            guard let object = value as? [String: Any] else { return found + ["\(path): expected an object, got \(value)"] }
            let properties = schema["properties"] as? [String: Any]
            for key in schema["required"] as? [String] ?? [] where object[key] == nil {
                found.append("\(path): required field '\(key)' is missing")
            }
            for (key, item) in object.sorted(by: { $0.key < $1.key }) {
                if let property = properties?[key] as? [String: Any] {
                    found += problems(item, against: property, at: "\(path).\(key)")
                } else if let additional = schema["additionalProperties"] as? [String: Any] {
                    found += problems(item, against: additional, at: "\(path).\(key)")
                } else if properties != nil || schema["additionalProperties"] as? Bool == false {
                    found.append("\(path): field '\(key)' is not in the schema")
                }
            }
        case "array":
            guard let array = value as? [Any] else { return found + ["\(path): expected an array, got \(value)"] }
            if let items = schema["items"] as? [String: Any] {
                for (index, item) in array.enumerated() { found += problems(item, against: items, at: "\(path)[\(index)]") }
            }
        case "string":
            if !(value is String) { found.append("\(path): expected a string, got \(value)") }
        case "integer", "number":
            guard let number = value as? NSNumber, !(value is String) else {
                return found + ["\(path): expected a number, got \(value)"]
            }
            if schema["type"] as? String == "integer", number.doubleValue.rounded() != number.doubleValue {
                found.append("\(path): expected an integer, got \(number)")
            }
            if let minimum = (schema["minimum"] as? NSNumber)?.doubleValue, number.doubleValue < minimum {
                found.append("\(path): \(number) < minimum \(minimum)")
            }
            if let maximum = (schema["maximum"] as? NSNumber)?.doubleValue, number.doubleValue > maximum {
                found.append("\(path): \(number) > maximum \(maximum)")
            }
        case "boolean":
            if !(value is Bool || value is NSNumber) { found.append("\(path): expected a boolean, got \(value)") }
        default:
            break
        }
        return found
    }
}
