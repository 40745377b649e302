import Foundation

/// A config value diffusers accepts either as one value or as one value per block.
public enum PerBlock<Value: Decodable & Sendable & Equatable>: Decodable, Sendable, Equatable {
    case shared(Value)
    case perBlock([Value])

    public init(from decoder: Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let list = try? container.decode([Value].self) {
            self = .perBlock(list)
        } else {
            self = .shared(try container.decode(Value.self))
        }
    }

    /// The value for each of `count` blocks; a per-block list must have exactly `count` entries.
    public func values(count: Int, field: String) throws -> [Value] {
        switch self {
        case .shared(let value): return Array(repeating: value, count: count)
        case .perBlock(let list):
            guard list.count == count else {
                throw ModelError.invalidConfig("\(field) has \(list.count) entries for \(count) blocks")
            }
            return list
        }
    }
}

extension KeyedDecodingContainer {
    /// `decodeIfPresent` that also treats JSON null as absent and falls back to `defaultValue`.
    func value<T: Decodable>(_ key: Key, default defaultValue: T) throws -> T {
        try decodeIfPresent(T.self, forKey: key) ?? defaultValue
    }
}

/// Decodes a component's `config.json`, turning decoding errors into messages naming the file and field.
public func decodeConfig<T: Decodable>(_ type: T.Type, from data: Data, source: String) throws -> T {
    do {
        return try JSONDecoder().decode(type, from: data)
    } catch let DecodingError.keyNotFound(key, _) {
        throw ModelError.invalidConfig("\(source): missing field '\(key.stringValue)'")
    } catch let DecodingError.typeMismatch(_, context) {
        let path = context.codingPath.map(\.stringValue).joined(separator: ".")
        throw ModelError.invalidConfig("\(source): field '\(path)' has the wrong type (\(context.debugDescription))")
    } catch let DecodingError.valueNotFound(_, context) {
        let path = context.codingPath.map(\.stringValue).joined(separator: ".")
        throw ModelError.invalidConfig("\(source): field '\(path)' is null")
    } catch let DecodingError.dataCorrupted(context) {
        throw ModelError.invalidConfig("\(source): not valid JSON (\(context.debugDescription))")
    } catch let error as ModelError {
        throw error
    } catch {
        throw ModelError.invalidConfig("\(source): \(error)")
    }
}
