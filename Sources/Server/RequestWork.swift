import Dispatch
import Foundation
import Hummingbird
import Logging
import NIOCore
import Serving

/// CPU-heavy request work (parsing large JSON bodies, decoding base64 and images, resizing, parsing A1111 prompts)
/// runs here, on threads of its own, never on the threads that serve HTTP: the event loops and Swift's cooperative
/// pool (two threads on a two-core machine) stay free, so `/healthz` and every other light route keep answering
/// while a few expensive requests are being prepared.
///
/// At most `width` closures run at once, one fewer than the cores, so a core is always left for serving; further
/// callers wait (suspended, holding no thread) in arrival order.
enum RequestWork {
    /// Threads preparing requests at once.
    static let width = max(1, ProcessInfo.processInfo.activeProcessorCount - 1)
    private static let queue = DispatchQueue(label: "swiftdiffusion.request-work", qos: .userInitiated, attributes: .concurrent)
    private static let slots = AsyncSlots(width)

    /// Runs `body` on a request-work thread and returns what it returns (or throws what it throws).
    static func run<T>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await slots.acquire()
        defer { slots.release() }
        let result = try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Handoff<T>, any Error>) in
            queue.async {
                do {
                    continuation.resume(returning: Handoff(try body()))
                } catch {
                    continuation.resume(throwing: error)
                }
            }
        }
        return result.value
    }
}

/// A value made on a request-work thread and handed, once, to the task that waits for it; nothing else keeps a
/// reference, so no state is shared (the values are dictionaries from `JSONSerialization`, which are not `Sendable`).
struct Handoff<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}

/// A counting semaphore for tasks: `acquire` suspends (FIFO) while all slots are taken.
final class AsyncSlots: @unchecked Sendable {
    private let lock = NSLock()
    private var free: Int
    private var waiters: [(id: UInt64, continuation: CheckedContinuation<Void, any Error>)] = []
    private var nextID: UInt64 = 0

    init(_ count: Int) { free = count }

    func acquire() async throws {
        let id: UInt64 = lock.withLock {
            nextID += 1
            return nextID
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let granted: Bool = lock.withLock {
                    if free > 0 {
                        free -= 1
                        return true
                    }
                    waiters.append((id, continuation))
                    return false
                }
                if granted { continuation.resume() }
            }
        } onCancel: {
            let waiter: CheckedContinuation<Void, any Error>? = lock.withLock {
                guard let index = waiters.firstIndex(where: { $0.id == id }) else { return nil }
                return waiters.remove(at: index).continuation
            }
            waiter?.resume(throwing: CancellationError())
        }
    }

    func release() {
        let next: CheckedContinuation<Void, any Error>? = lock.withLock {
            if waiters.isEmpty {
                free += 1
                return nil
            }
            return waiters.removeFirst().continuation
        }
        next?.resume()
    }
}

// MARK: - Synchronous jobs

/// The synchronous routes (A1111 `txt2img` / `img2img`, OpenAI `images/generations`): queue the job and wait for its
/// end; if the client goes away first (it closes its side of the connection, or the connection drops) or the request
/// task is cancelled, the job is cancelled, so nobody's queue slot or compute is spent on an answer no one reads.
enum SynchronousJob {
    /// Raised when the client went away before the job ended (the job has been cancelled).
    static let clientClosedRequest = HTTPResponse.Status(code: 499, reasonPhrase: "Client Closed Request")

    /// Queues `spec` and waits for its end. `watch` is the connection's watch, installed when the request began
    /// (before its body was read), so a client that leaves at any point after that is noticed.
    static func run(
        _ spec: JobSpec, engine: GenerationEngine, watch: ConnectionWatch?, context: ServerRequestContext
    ) async throws -> JobRecord {
        if watch?.hasFired ?? false {
            throw APIError(clientClosedRequest, "client_closed_request", "the client closed the connection before the job was queued")
        }
        let job = try await engine.submit(spec)
        let ended: Bool = await withTaskCancellationHandler {
            await withTaskGroup(of: Bool.self) { group in
                group.addTask {
                    guard let stream = try? await engine.events(job.id) else { return true }
                    for await event in stream where event.isTerminal { return true }
                    return false  // the stream ended without a terminal event: the task was cancelled
                }
                if let watch {
                    group.addTask {
                        await watch.closed()
                        return false
                    }
                }
                let first = await group.next() ?? false
                group.cancelAll()
                return first
            }
        } onCancel: {
            Task { _ = try? await engine.cancel(job.id) }
        }
        if !ended {
            _ = try? await engine.cancel(job.id)
            context.logger.notice("synchronous job cancelled: the client went away", metadata: ["job": "\(job.id)"])
            throw APIError(clientClosedRequest, "client_closed_request", "the client closed the connection; job \(job.id) was cancelled")
        }
        return try await engine.job(job.id)
    }
}

/// Watches one connection for the client going away: its input closed (the client shut down or closed its socket)
/// or the channel closed. A handler at the front of the channel's pipeline sees these before any HTTP handler.
final class ConnectionWatch: ChannelInboundHandler, RemovableChannelHandler, @unchecked Sendable {
    typealias InboundIn = NIOAny

    private let lock = NSLock()
    private var fired = false
    private var waiters: [CheckedContinuation<Void, Never>] = []
    private weak var channel: (any Channel)?

    /// Installs a watch on `channel` (nil when there is none, e.g. the in-process test router, or it is closed).
    /// Remove it with `remove()` when the request is done.
    static func install(on channel: (any Channel)?) async -> ConnectionWatch? {
        guard let channel, channel.isActive else { return nil }
        let watch = ConnectionWatch()
        watch.channel = channel
        do {
            try await channel.eventLoop.submit {
                try channel.pipeline.syncOperations.addHandler(watch, position: .first)
            }.get()
        } catch {
            return nil
        }
        return watch
    }

    /// Returns once the client has gone away (at once if it already has); never returns otherwise, until the
    /// waiting task is cancelled.
    func closed() async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let now: Bool = lock.withLock {
                    if fired || Task.isCancelled { return true }
                    waiters.append(continuation)
                    return false
                }
                if now { continuation.resume() }
            }
        } onCancel: {
            // Only this waiter: the connection itself has not closed.
            let waiting: [CheckedContinuation<Void, Never>] = lock.withLock {
                defer { waiters = [] }
                return waiters
            }
            for waiter in waiting { waiter.resume() }
        }
    }

    /// Whether the client has gone away.
    var hasFired: Bool { lock.withLock { fired } }

    private func fire() {
        let waiting: [CheckedContinuation<Void, Never>] = lock.withLock {
            fired = true
            defer { waiters = [] }
            return waiters
        }
        for waiter in waiting { waiter.resume() }
    }

    func remove() {
        guard let channel else { return }
        channel.pipeline.removeHandler(self, promise: nil)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let channelEvent = event as? ChannelEvent, case .inputClosed = channelEvent { fire() }
        context.fireUserInboundEventTriggered(event)
    }

    func channelInactive(context: ChannelHandlerContext) {
        fire()
        context.fireChannelInactive()
    }
}
