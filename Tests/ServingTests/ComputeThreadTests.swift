import Foundation
import XCTest

@testable import Serving

/// The engine's compute thread: work runs on that one OS thread, in order, and errors reach the caller.
final class ComputeThreadTests: XCTestCase {
    func testRunsInOrderOnItsOwnThread() async throws {
        let thread = ComputeThread(name: "test-compute")
        let names = try await withThrowingTaskGroup(of: (Int, String).self) { group in
            for i in 0..<8 {
                group.addTask { (i, try await thread.run { Thread.current.name ?? "" }) }
            }
            var result: [(Int, String)] = []
            for try await item in group { result.append(item) }
            return result
        }
        XCTAssertEqual(Set(names.map(\.1)), ["test-compute"])
        struct Failure: Error {}
        do {
            _ = try await thread.run { () throws -> Int in throw Failure() }
            XCTFail("the error must reach the caller")
        } catch is Failure {}
    }
}
