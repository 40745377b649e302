import Foundation

/// The queued jobs and the order they run in.
///
/// Jobs that share a (model, adapters) group with the job that just ran go first, which saves model
/// switches and LoRA patching; but once the oldest job has waited `maximumWait`, it runs next whatever its
/// group, so grouping never starves anyone.
struct JobQueue {
    struct Entry {
        let id: String
        let group: String
        let enqueuedAt: Date
    }

    private(set) var entries: [Entry] = []
    let capacity: Int
    let maximumWait: TimeInterval

    init(capacity: Int, maximumWait: TimeInterval) {
        self.capacity = capacity
        self.maximumWait = maximumWait
    }

    var count: Int { entries.count }
    var isFull: Bool { entries.count >= capacity }

    mutating func append(id: String, group: String, at date: Date = Date()) {
        entries.append(Entry(id: id, group: group, enqueuedAt: date))
    }

    mutating func remove(id: String) -> Bool {
        guard let index = entries.firstIndex(where: { $0.id == id }) else { return false }
        entries.remove(at: index)
        return true
    }

    /// 1-based position in the order jobs would run now, if nothing else arrived.
    func position(of id: String, lastGroup: String?, now: Date = Date()) -> Int? {
        var copy = self
        var group = lastGroup
        var position = 1
        while let next = copy.popNext(lastGroup: group, now: now) {
            if next.id == id { return position }
            group = next.group
            position += 1
        }
        return nil
    }

    /// The job to run next (without removing it).
    func peekNext(lastGroup: String?, now: Date = Date()) -> Entry? {
        guard let oldest = entries.first else { return nil }
        if now.timeIntervalSince(oldest.enqueuedAt) >= maximumWait { return oldest }
        if let lastGroup, let sameGroup = entries.first(where: { $0.group == lastGroup }) { return sameGroup }
        return oldest
    }

    mutating func popNext(lastGroup: String?, now: Date = Date()) -> Entry? {
        guard let next = peekNext(lastGroup: lastGroup, now: now) else { return nil }
        _ = remove(id: next.id)
        return next
    }
}
