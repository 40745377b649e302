import Foundation
import Pipelines

/// A running job's way to report progress and learn it was cancelled; shared between the engine and the
/// compute thread.
final class JobControl: @unchecked Sendable {
    private let lock = NSLock()
    private var cancelled = false
    let progress: AsyncStream<JobProgress>.Continuation

    init(progress: AsyncStream<JobProgress>.Continuation) {
        self.progress = progress
    }

    func cancel() {
        lock.lock()
        cancelled = true
        lock.unlock()
    }

    var isCancelled: Bool {
        lock.lock()
        defer { lock.unlock() }
        return cancelled
    }

    /// The job's progress and cancellation as the `ImageEngine` sees them.
    var observer: RenderObserver {
        RenderObserver(progress: { [progress] in progress.yield($0) }, isCancelled: { [self] in isCancelled })
    }
}

extension ImageEngine {
    /// Runs one stored job on the calling (compute) thread: its spec goes through the same `prepare` and `render`
    /// as every other front end's request.
    func execute(_ job: JobRecord, control: JobControl) throws -> RenderedImages {
        try render(try prepare(job.spec), observer: control.observer)
    }
}
