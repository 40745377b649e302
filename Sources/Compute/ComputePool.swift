#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
import CCPUFeatures
import Foundation
import Synchronization

/// The engine's own fixed set of compute threads.
///
/// Heavy math never runs on Swift's cooperative pool (it would starve the server's tasks). A kernel splits
/// its work into `count` independent pieces and calls `parallelFor`; the calling thread takes part, so a
/// pool of N threads has N-1 workers. Calls from a worker (nested parallelism) run serially, and callers on
/// different threads take turns. A thread can be bound to another pool with `ComputePool.run(on:)`, which
/// is how two guidance branches run side by side on one core each.
public final class ComputePool: @unchecked Sendable {
    /// Threads including the caller.
    public let threadCount: Int

    private var mutex = pthread_mutex_t()
    private var wake = pthread_cond_t()
    private var done = pthread_cond_t()
    private let submitLock = NSLock()

    // Changed under `mutex`; read without it by spinning threads (`spinRounds`).
    private let generation = Atomic<Int>(0)
    private let activeWorkers = Atomic<Int>(0)
    // Guarded by `mutex`.
    private var shuttingDown = false
    private var job: ((Int) -> Void)?
    private var jobCount = 0
    private let nextIndex = Atomic<Int>(0)

    /// How long a thread spins for the pool's next event before it sleeps: `sd_cpu_relax` rounds (5000, about 75 µs on the
    /// Xeon of docs/benchmarks.md; `pause` takes longer on some processors), `SWIFTDIFFUSION_POOL_SPIN`; 0 sleeps at once.
    ///
    /// A denoising step runs hundreds of parallel regions. A worker that sleeps on the condition variable between them
    /// must be woken by the next one, and on a virtual machine waking a thread on another vCPU is an interrupt through
    /// the hypervisor (`perf` of `bench workflow` on a 2-vCPU KVM guest: 24 % of the samples in the kernel's wake-up and
    /// task-switch paths). Spinning for a short while first catches the next region, and the caller's wait for the
    /// workers, without a system call; a pool with nothing to do sleeps after the spin, so an idle server takes no CPU.
    static let spinRounds: Int = ProcessInfo.processInfo.environment["SWIFTDIFFUSION_POOL_SPIN"].flatMap { Int($0) }.map { max(0, $0) } ?? 5000

    /// The process-wide pool, sized by `SWIFTDIFFUSION_THREADS` or the number of active cores.
    public static let shared: ComputePool = {
        let env = ProcessInfo.processInfo.environment["SWIFTDIFFUSION_THREADS"].flatMap { Int($0) }
        return ComputePool(threadCount: max(1, env ?? ProcessInfo.processInfo.activeProcessorCount))
    }()

    /// A pool of `threadCount` threads (the caller included). With `cores`, worker `i` (1..<threadCount) is pinned
    /// to `cores[i % cores.count]`; the calling thread pins itself if it wants to (see `WorkerThread`).
    public init(threadCount: Int, cores: [Int]? = nil) {
        precondition(threadCount >= 1, "a pool needs at least one thread")
        self.threadCount = threadCount
        pthread_mutex_init(&mutex, nil)
        pthread_cond_init(&wake, nil)
        pthread_cond_init(&done, nil)
        // Workers hold the pool: it lives until `shutDown()` lets them end (a worker reading a freed pool's
        // mutex would be a use-after-free).
        for index in 1..<threadCount {
            let core = cores.flatMap { $0.isEmpty ? nil : $0[index % $0.count] }
            let thread = Thread {
                if let core { CorePinning.pinCurrentThread(to: [core]) }
                self.workerLoop()
            }
            thread.name = "compute-\(index)"
            thread.stackSize = 8 << 20
            thread.start()
        }
    }

    /// Ends the worker threads once they are idle; the pool is freed when its last user lets go. Kernels called
    /// on a shut-down pool run on the calling thread alone.
    public func shutDown() {
        pthread_mutex_lock(&mutex)
        shuttingDown = true
        pthread_cond_broadcast(&wake)
        pthread_mutex_unlock(&mutex)
    }

    /// The pool kernels on this thread use: the one bound with `run(on:)`, else `shared`.
    public static var current: ComputePool {
        if let bound = ThreadBinding.boundPool() { return bound }
        return shared
    }

    /// Runs `body` with `pool` as this thread's compute pool.
    public static func run<R>(on pool: ComputePool, _ body: () throws -> R) rethrows -> R {
        let previous = ThreadBinding.boundPool()
        ThreadBinding.bind(pool)
        defer { ThreadBinding.bind(previous) }
        return try body()
    }

    /// Calls `body(i)` for every i in 0..<count, spread over the pool's threads. Returns when all are done.
    public func parallelFor(_ count: Int, _ body: (Int) -> Void) {
        if count <= 0 { return }
        if count == 1 || threadCount == 1 || ThreadBinding.isInsideParallelRegion() {
            for i in 0..<count { body(i) }
            return
        }
        submitLock.lock()
        defer { submitLock.unlock() }
        withoutActuallyEscaping(body) { escapable in
            pthread_mutex_lock(&mutex)
            if shuttingDown {
                pthread_mutex_unlock(&mutex)
                for i in 0..<count { escapable(i) }
                return
            }
            job = escapable
            jobCount = count
            nextIndex.store(0, ordering: .relaxed)
            activeWorkers.store(threadCount - 1, ordering: .relaxed)
            generation.wrappingAdd(1, ordering: .releasing)
            pthread_cond_broadcast(&wake)
            pthread_mutex_unlock(&mutex)

            ThreadBinding.enterParallelRegion()
            drain(escapable, count: count)
            ThreadBinding.leaveParallelRegion()

            Self.spin { activeWorkers.load(ordering: .acquiring) > 0 }
            pthread_mutex_lock(&mutex)
            while activeWorkers.load(ordering: .acquiring) > 0 { pthread_cond_wait(&done, &mutex) }
            job = nil
            pthread_mutex_unlock(&mutex)
        }
    }

    /// Splits 0..<total into at most `threadCount * oversubscription` contiguous ranges of at least
    /// `minimumChunk` elements and processes them in parallel.
    public func parallelRanges(_ total: Int, minimumChunk: Int = 1, oversubscription: Int = 1, _ body: (Range<Int>) -> Void) {
        if total <= 0 { return }
        let maxPieces = max(1, total / max(1, minimumChunk))
        let pieces = min(maxPieces, threadCount * max(1, oversubscription))
        if pieces == 1 {
            body(0..<total)
            return
        }
        parallelFor(pieces) { piece in
            let start = total * piece / pieces
            let end = total * (piece + 1) / pieces
            if start < end { body(start..<end) }
        }
    }

    private func drain(_ body: (Int) -> Void, count: Int) {
        while true {
            let index = nextIndex.wrappingAdd(1, ordering: .relaxed).oldValue
            if index >= count { return }
            body(index)
        }
    }

    /// Spins while `waiting()` holds, for at most `spinRounds` rounds.
    @inline(__always)
    private static func spin(while waiting: () -> Bool) {
        var rounds = 0
        while rounds < spinRounds && waiting() {
            sd_cpu_relax()
            rounds += 1
        }
    }

    private func workerLoop() {
        ThreadBinding.enterParallelRegion()
        var seen = 0
        while true {
            // Spin for the next region first (see `spinRounds`); the mutex then hands over the job.
            Self.spin { generation.load(ordering: .acquiring) == seen }
            pthread_mutex_lock(&mutex)
            while generation.load(ordering: .acquiring) == seen && !shuttingDown { pthread_cond_wait(&wake, &mutex) }
            if shuttingDown { break }
            seen = generation.load(ordering: .relaxed)
            do {
                // The job's closure is let go before the worker reports it done: the caller may return (and its
                // `withoutActuallyEscaping` end) as soon as the count reaches zero, without the mutex.
                let body = job!
                let count = jobCount
                pthread_mutex_unlock(&mutex)
                drain(body, count: count)
            }
            pthread_mutex_lock(&mutex)
            if activeWorkers.wrappingSubtract(1, ordering: .releasing).newValue == 0 { pthread_cond_signal(&done) }
            pthread_mutex_unlock(&mutex)
        }
        pthread_mutex_unlock(&mutex)
    }
}

/// Per-thread state of the compute layer: the bound pool and whether the thread is already inside a
/// parallel region.
enum ThreadBinding {
    /// A grow-only buffer (contents undefined after growing).
    private struct Buffer<Element> {
        var base: UnsafeMutablePointer<Element>?
        var capacity = 0

        mutating func atLeast(_ count: Int) -> UnsafeMutablePointer<Element> {
            if capacity < count || base == nil {
                base?.deallocate()
                capacity = max(count, capacity * 2, 1024)
                base = UnsafeMutablePointer<Element>.allocate(capacity: capacity)
            }
            return base!
        }

        func free() { base?.deallocate() }
    }

    private final class State {
        var pool: ComputePool?
        var parallelDepth = 0
        var scratch = Buffer<Float>()
        var halfScratch = Buffer<UInt16>()
        var weightScratch = Buffer<Float>()

        deinit {
            scratch.free()
            halfScratch.free()
            weightScratch.free()
        }
    }

    private static let key: pthread_key_t = {
        var key = pthread_key_t()
        pthread_key_create(&key) { pointer in
            guard let pointer else { return }
            Unmanaged<AnyObject>.fromOpaque(pointer).release()
        }
        return key
    }()

    private static var state: State {
        if let raw = pthread_getspecific(key) {
            return Unmanaged<State>.fromOpaque(raw).takeUnretainedValue()
        }
        let state = State()
        pthread_setspecific(key, Unmanaged.passRetained(state).toOpaque())
        return state
    }

    static func boundPool() -> ComputePool? { state.pool }

    /// This thread's grow-only scratch buffer of at least `count` floats (contents undefined). Kernels use
    /// it for im2col panels and attention score tiles instead of allocating per call.
    static func scratch(count: Int) -> UnsafeMutablePointer<Float> { state.scratch.atLeast(count) }
    /// The calling thread's 16-bit scratch buffer (bf16 operands of a GEMM), grown as needed.
    static func halfScratch(count: Int) -> UnsafeMutablePointer<UInt16> { state.halfScratch.atLeast(count) }
    /// The calling thread's buffer for a kernel in another layout that the pool's threads share during one call
    /// (oneDNN's blocked convolution weights), apart from `scratch`, which the caller uses as one of those threads.
    static func weightScratch(count: Int) -> UnsafeMutablePointer<Float> { state.weightScratch.atLeast(count) }
    static func bind(_ pool: ComputePool?) { state.pool = pool }
    static func isInsideParallelRegion() -> Bool { state.parallelDepth > 0 }
    static func enterParallelRegion() { state.parallelDepth += 1 }
    static func leaveParallelRegion() { state.parallelDepth -= 1 }
}
