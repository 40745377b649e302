import Foundation
import XCTest

@testable import Serving

/// The run order policy: same-group jobs first, but never past the oldest job's maximum wait.
final class JobQueueTests: XCTestCase {
    private let start = Date(timeIntervalSince1970: 1_000_000)

    /// A1 B1 A2 B2 A3 enqueued one second apart, groups "a" and "b".
    private func interleaved(maximumWait: TimeInterval = 30) -> JobQueue {
        var queue = JobQueue(capacity: 10, maximumWait: maximumWait)
        for (index, id) in ["A1", "B1", "A2", "B2", "A3"].enumerated() {
            queue.append(id: id, group: id.hasPrefix("A") ? "a" : "b", at: start.addingTimeInterval(Double(index)))
        }
        return queue
    }

    private func drain(_ queue: inout JobQueue, lastGroup: String?, now: Date) -> [String] {
        var order: [String] = []
        var group = lastGroup
        while let next = queue.popNext(lastGroup: group, now: now) {
            order.append(next.id)
            group = next.group
        }
        return order
    }

    func testWithoutAPreviousGroupTheOldestRunsThenItsGroupFollows() {
        var queue = interleaved()
        XCTAssertEqual(drain(&queue, lastGroup: nil, now: start.addingTimeInterval(5)), ["A1", "A2", "A3", "B1", "B2"])
        XCTAssertEqual(queue.count, 0)
    }

    func testTheGroupThatJustRanGoesFirst() {
        var queue = interleaved()
        XCTAssertEqual(drain(&queue, lastGroup: "b", now: start.addingTimeInterval(5)), ["B1", "B2", "A1", "A2", "A3"])
    }

    func testAnUnknownLastGroupFallsBackToArrivalOrder() {
        var queue = interleaved()
        XCTAssertEqual(queue.peekNext(lastGroup: "c", now: start)?.id, "A1")
        XCTAssertEqual(drain(&queue, lastGroup: "c", now: start.addingTimeInterval(5)), ["A1", "A2", "A3", "B1", "B2"])
    }

    func testTheOldestJobRunsNextOnceItHasWaitedTheMaximum() {
        var queue = interleaved(maximumWait: 10)
        _ = queue.remove(id: "A1")
        // B1 (enqueued at +1) is the oldest; group "a" is preferred until B1 has waited 10 s.
        XCTAssertEqual(queue.peekNext(lastGroup: "a", now: start.addingTimeInterval(10.9))?.id, "A2")
        XCTAssertEqual(queue.peekNext(lastGroup: "a", now: start.addingTimeInterval(11))?.id, "B1")
        XCTAssertEqual(queue.popNext(lastGroup: "a", now: start.addingTimeInterval(11))?.id, "B1")
        // Then A2 (enqueued at +2) is the oldest and has waited 9 s: group "b" goes first again.
        XCTAssertEqual(queue.peekNext(lastGroup: "b", now: start.addingTimeInterval(11))?.id, "B2")
    }

    func testAStreamOfSameGroupJobsDoesNotStarveAnOtherGroup() {
        // B waits while A jobs keep arriving and running; it runs once it has waited `maximumWait`.
        var queue = JobQueue(capacity: 100, maximumWait: 5)
        queue.append(id: "B", group: "b", at: start)
        var now = start
        var ran: [String] = []
        for index in 0..<20 {
            queue.append(id: "A\(index)", group: "a", at: now)
            let next = queue.popNext(lastGroup: "a", now: now)!
            ran.append(next.id)
            if next.id == "B" { break }
            now = now.addingTimeInterval(1)
        }
        XCTAssertEqual(ran.last, "B")
        XCTAssertEqual(ran.count, 6, "B runs as soon as it has waited 5 s: \(ran)")
    }

    func testZeroMaximumWaitIsArrivalOrder() {
        var queue = interleaved(maximumWait: 0)
        XCTAssertEqual(drain(&queue, lastGroup: "b", now: start.addingTimeInterval(5)), ["A1", "B1", "A2", "B2", "A3"])
    }

    func testPositionsFollowTheOrderJobsWouldRunIn() {
        let queue = interleaved()
        let now = start.addingTimeInterval(5)
        let positions = ["A1", "B1", "A2", "B2", "A3"].map { queue.position(of: $0, lastGroup: "b", now: now) }
        XCTAssertEqual(positions, [3, 1, 4, 2, 5])
        XCTAssertNil(queue.position(of: "missing", lastGroup: nil, now: now))
        // Positions do not consume the queue.
        XCTAssertEqual(queue.count, 5)
    }

    func testCapacityAndRemoval() {
        var queue = JobQueue(capacity: 2, maximumWait: 30)
        XCTAssertFalse(queue.isFull)
        queue.append(id: "1", group: "g")
        queue.append(id: "2", group: "g")
        XCTAssertTrue(queue.isFull)
        XCTAssertTrue(queue.remove(id: "1"))
        XCTAssertFalse(queue.remove(id: "1"))
        XCTAssertFalse(queue.isFull)
        XCTAssertEqual(queue.position(of: "2", lastGroup: nil), 1)
        XCTAssertEqual(queue.popNext(lastGroup: nil)?.id, "2")
        XCTAssertNil(queue.popNext(lastGroup: nil))
        XCTAssertNil(queue.peekNext(lastGroup: nil))
    }

    func testGroupKeysSeparateModelsLoRAsAndControlNets() {
        let plain = JobSpec(model: "sd1", prompt: "x")
        var lora = plain
        lora.loras = [LoRASpec(name: "style", weight: 0.8)]
        var loraOtherWeight = plain
        loraOtherWeight.loras = [LoRASpec(name: "style", weight: 0.5)]
        var loraReordered = plain
        loraReordered.loras = [LoRASpec(name: "b"), LoRASpec(name: "a")]
        var loraOrdered = plain
        loraOrdered.loras = [LoRASpec(name: "a"), LoRASpec(name: "b")]
        var control = plain
        control.controls = [ControlSpec(model: "canny", image: Data())]
        var otherModel = plain
        otherModel.model = "sd2"
        var otherPrompt = plain
        otherPrompt.prompt = "y"
        otherPrompt.steps = 50
        XCTAssertEqual(plain.groupKey, otherPrompt.groupKey, "prompt and steps do not change what is loaded")
        XCTAssertEqual(loraReordered.groupKey, loraOrdered.groupKey)
        let distinct = [plain, lora, loraOtherWeight, loraOrdered, control, otherModel].map(\.groupKey)
        XCTAssertEqual(Set(distinct).count, distinct.count, "\(distinct)")
    }
}
