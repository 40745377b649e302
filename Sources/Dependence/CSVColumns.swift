/// A small RFC 4180 reader that pulls numeric columns out of a CSV file's bytes: comma-separated fields,
/// records ended by LF or CRLF, fields optionally in double quotes with "" for a quote inside; the first record
/// is the header. Only the requested columns are converted and kept, so memory is 8 bytes per kept value plus
/// the input; every other bound is explicit (`CSVColumns.Limits`) and exceeding one is an error, never an
/// unbounded allocation. (A package — yaslab/CSV.swift, SwiftCSV — would add a dependency and build time for
/// what is ~150 lines here, and neither bounds field length or record count.)
public enum CSVColumns {
    public struct Limits: Sendable {
        public var maxBytes: Int
        public var maxRecords: Int
        public var maxColumns: Int
        public var maxFieldBytes: Int
        public init(maxBytes: Int = 1 << 30, maxRecords: Int = 20_000_000, maxColumns: Int = 10_000, maxFieldBytes: Int = 1 << 16) {
            self.maxBytes = maxBytes
            self.maxRecords = maxRecords
            self.maxColumns = maxColumns
            self.maxFieldBytes = maxFieldBytes
        }
    }

    public enum Failure: Error, Equatable, Sendable, CustomStringConvertible {
        case tooLarge(bytes: Int, limit: Int)
        case noHeader
        case unknownColumn(String, available: [String])
        case duplicateColumn(String)
        case tooManyColumns(limit: Int)
        case tooManyRecords(limit: Int)
        case fieldTooLong(record: Int, limit: Int)
        case unterminatedQuote(record: Int)
        case badQuote(record: Int)
        case missingField(record: Int, column: String)
        case notANumber(record: Int, column: String, text: String)
        case invalidUTF8

        public var description: String {
            switch self {
            case let .tooLarge(bytes, limit): return "CSV file has \(bytes) bytes, more than the limit of \(limit)"
            case .noHeader: return "CSV file is empty: no header line"
            case let .unknownColumn(name, available):
                let shown = available.prefix(20).map { "'\($0)'" }.joined(separator: ", ")
                return "no column '\(name)' in the CSV header (columns: \(shown)\(available.count > 20 ? ", ..." : ""))"
            case let .duplicateColumn(name): return "column '\(name)' appears more than once in the CSV header"
            case let .tooManyColumns(limit): return "CSV record has more than \(limit) fields"
            case let .tooManyRecords(limit): return "CSV file has more than \(limit) records"
            case let .fieldTooLong(record, limit): return "CSV record \(record): a field is longer than \(limit) bytes"
            case let .unterminatedQuote(record): return "CSV record \(record): a quoted field is never closed"
            case let .badQuote(record): return "CSV record \(record): a quote inside an unquoted field, or text after a closing quote"
            case let .missingField(record, column): return "CSV record \(record) has no field for column '\(column)'"
            case let .notANumber(record, column, text):
                return "CSV record \(record), column '\(column)': '\(text.prefix(40))' is not a finite number"
            case .invalidUTF8: return "CSV header is not valid UTF-8"
            }
        }
    }

    /// The header's column names.
    public static func header(_ bytes: [UInt8], limits: Limits = Limits()) throws(Failure) -> [String] {
        guard bytes.count <= limits.maxBytes else { throw .tooLarge(bytes: bytes.count, limit: limits.maxBytes) }
        var parser = Parser(bytes: bytes, limits: limits)
        guard let header = try parser.nextRecord() else { throw .noHeader }
        var names: [String] = []
        for range in header {
            guard let name = String(validating: parser.field(range), as: UTF8.self) else { throw .invalidUTF8 }
            names.append(name.trimmingSpaces())
        }
        return names
    }

    /// The named columns as numbers, in file order. Records are numbered from 1 = the header; a blank line
    /// (no bytes at all) is skipped; a field that is empty or not a finite number is an error naming its record.
    public static func read(_ bytes: [UInt8], columns names: [String], limits: Limits = Limits()) throws(Failure) -> [[Double]] {
        guard bytes.count <= limits.maxBytes else { throw .tooLarge(bytes: bytes.count, limit: limits.maxBytes) }
        var parser = Parser(bytes: bytes, limits: limits)
        guard let header = try parser.nextRecord() else { throw .noHeader }
        var headerNames: [String] = []
        for range in header {
            guard let name = String(validating: parser.field(range), as: UTF8.self) else { throw .invalidUTF8 }
            headerNames.append(name.trimmingSpaces())
        }
        var wanted: [Int] = []
        for name in names {
            let hits = headerNames.indices.filter { headerNames[$0] == name }
            if hits.isEmpty { throw .unknownColumn(name, available: headerNames) }
            if hits.count > 1 { throw .duplicateColumn(name) }
            wanted.append(hits[0])
        }
        var out = [[Double]](repeating: [], count: names.count)
        var record = 1
        while let fields = try parser.nextRecord() {
            record += 1
            if fields.count == 1 && fields[0].isEmpty { continue }  // blank line
            if record - 1 > limits.maxRecords { throw .tooManyRecords(limit: limits.maxRecords) }
            for (k, column) in wanted.enumerated() {
                guard column < fields.count else { throw .missingField(record: record, column: names[k]) }
                let text = String(decoding: parser.field(fields[column]), as: UTF8.self).trimmingSpaces()
                guard let value = Double(text), value.isFinite else {
                    throw .notANumber(record: record, column: names[k], text: text)
                }
                out[k].append(value)
            }
        }
        return out
    }

    /// Splits records into fields; a quoted field's bytes are unescaped into `scratch`, others are slices.
    struct Parser {
        let bytes: [UInt8]
        let limits: Limits
        var position = 0
        var record = 0
        var scratch: [UInt8] = []

        init(bytes: [UInt8], limits: Limits) {
            self.bytes = bytes
            self.limits = limits
            // A UTF-8 byte order mark before the header is not part of the first column's name.
            if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { position = 3 }
        }

        enum FieldRange {
            case slice(Range<Int>)
            case unescaped(Range<Int>)  // into scratch
            var isEmpty: Bool {
                switch self { case .slice(let r), .unescaped(let r): return r.isEmpty }
            }
        }

        func field(_ range: FieldRange) -> ArraySlice<UInt8> {
            switch range {
            case .slice(let r): return bytes[r]
            case .unescaped(let r): return scratch[r]
            }
        }

        /// The next record's fields, or nil at the end of the input.
        mutating func nextRecord() throws(Failure) -> [FieldRange]? {
            guard position < bytes.count else { return nil }
            record += 1
            scratch.removeAll(keepingCapacity: true)
            var fields: [FieldRange] = []
            let quote: UInt8 = 0x22, comma: UInt8 = 0x2C, lf: UInt8 = 0x0A, cr: UInt8 = 0x0D
            while true {
                if fields.count >= limits.maxColumns { throw .tooManyColumns(limit: limits.maxColumns) }
                if position < bytes.count && bytes[position] == quote {
                    position += 1
                    let start = scratch.count
                    while true {
                        guard position < bytes.count else { throw .unterminatedQuote(record: record) }
                        let b = bytes[position]
                        if b == quote {
                            if position + 1 < bytes.count && bytes[position + 1] == quote {
                                scratch.append(quote); position += 2
                            } else {
                                position += 1
                                break
                            }
                        } else {
                            scratch.append(b); position += 1
                        }
                        if scratch.count - start > limits.maxFieldBytes { throw .fieldTooLong(record: record, limit: limits.maxFieldBytes) }
                    }
                    fields.append(.unescaped(start..<scratch.count))
                    // After a closing quote: a separator, a line end or the end of input.
                    if position < bytes.count, ![comma, lf, cr].contains(bytes[position]) { throw .badQuote(record: record) }
                } else {
                    let start = position
                    while position < bytes.count, bytes[position] != comma, bytes[position] != lf, bytes[position] != cr {
                        if bytes[position] == quote { throw .badQuote(record: record) }
                        position += 1
                        if position - start > limits.maxFieldBytes { throw .fieldTooLong(record: record, limit: limits.maxFieldBytes) }
                    }
                    fields.append(.slice(start..<position))
                }
                if position >= bytes.count { return fields }
                let b = bytes[position]
                position += 1
                if b == comma { continue }
                if b == cr && position < bytes.count && bytes[position] == lf { position += 1 }
                return fields
            }
        }
    }
}

extension String {
    func trimmingSpaces() -> String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" { s.removeFirst() }
        while let l = s.last, l == " " || l == "\t" { s.removeLast() }
        return String(s)
    }
}
