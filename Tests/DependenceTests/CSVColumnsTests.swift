import XCTest
@testable import Dependence

final class CSVColumnsTests: XCTestCase {
    func read(_ text: String, _ names: [String], limits: CSVColumns.Limits = .init()) throws -> [[Double]] {
        try CSVColumns.read(Array(text.utf8), columns: names, limits: limits)
    }

    func testQuotedFieldsCRLFAndBlankLines() throws {
        let text = "\u{FEFF}id,\"lat, ms\",\"say \"\"hi\"\"\",steps\r\n1,\"2.5\",\"7\",20\r\n\r\n2, 3e2 ,\" 8\",30\r\n3,-1,9,40"
        let columns = try read(text, ["lat, ms", "steps"])
        XCTAssertEqual(columns[0], [2.5, 300, -1])
        XCTAssertEqual(columns[1], [20, 30, 40])
        XCTAssertEqual(try read(text, ["say \"hi\""]), [[7, 8, 9]], "escaped quotes in a header name")
    }

    func testErrorsNameTheRecordAndColumn() {
        XCTAssertThrowsError(try read("a,b\n1,2\n3,x\n", ["a", "b"])) {
            XCTAssertEqual($0 as? CSVColumns.Failure, .notANumber(record: 3, column: "b", text: "x"))
        }
        XCTAssertThrowsError(try read("a,b\n1,nan\n", ["a", "b"])) {
            XCTAssertEqual($0 as? CSVColumns.Failure, .notANumber(record: 2, column: "b", text: "nan"))
        }
        XCTAssertThrowsError(try read("a,b\n1\n", ["a", "b"])) {
            XCTAssertEqual($0 as? CSVColumns.Failure, .missingField(record: 2, column: "b"))
        }
        XCTAssertThrowsError(try read("a,b\n1,2\n", ["a", "c"])) {
            XCTAssertEqual($0 as? CSVColumns.Failure, .unknownColumn("c", available: ["a", "b"]))
        }
        XCTAssertThrowsError(try read("a,a\n1,2\n", ["a"])) {
            XCTAssertEqual($0 as? CSVColumns.Failure, .duplicateColumn("a"))
        }
        XCTAssertThrowsError(try read("a,b\n\"1,2\n", ["a"])) {
            XCTAssertEqual($0 as? CSVColumns.Failure, .unterminatedQuote(record: 2))
        }
        XCTAssertThrowsError(try read("a,b\n1\"x,2\n", ["a"])) {
            XCTAssertEqual($0 as? CSVColumns.Failure, .badQuote(record: 2))
        }
        XCTAssertThrowsError(try read("", ["a"])) { XCTAssertEqual($0 as? CSVColumns.Failure, .noHeader) }
    }

    func testLimitsBoundWhatAFileCanAllocate() {
        var small = CSVColumns.Limits()
        small.maxBytes = 10
        XCTAssertThrowsError(try read("a,b\n1,2\n3,4\n", ["a"], limits: small)) {
            XCTAssertEqual($0 as? CSVColumns.Failure, .tooLarge(bytes: 12, limit: 10))
        }
        var records = CSVColumns.Limits()
        records.maxRecords = 2
        XCTAssertThrowsError(try read("a\n1\n2\n3\n", ["a"], limits: records)) {
            XCTAssertEqual($0 as? CSVColumns.Failure, .tooManyRecords(limit: 2))
        }
        var fields = CSVColumns.Limits()
        fields.maxFieldBytes = 8
        XCTAssertThrowsError(try read("a\n" + String(repeating: "1", count: 100) + "\n", ["a"], limits: fields)) {
            XCTAssertEqual($0 as? CSVColumns.Failure, .fieldTooLong(record: 2, limit: 8))
        }
        XCTAssertThrowsError(try read("a\n\"" + String(repeating: "1", count: 100) + "\"\n", ["a"], limits: fields))
        var columns = CSVColumns.Limits()
        columns.maxColumns = 3
        XCTAssertThrowsError(try read("a,b,c,d\n", ["a"], limits: columns)) {
            XCTAssertEqual($0 as? CSVColumns.Failure, .tooManyColumns(limit: 3))
        }
    }
}
