#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
import Foundation
import CKernels
import Synchronization

/// Contiguous Float32 memory behind a tensor: 64-byte aligned heap memory, or memory another object owns
/// (a memory-mapped file) and keeps alive.
public final class TensorStorage: @unchecked Sendable {
    public let count: Int
    @usableFromInline let base: UnsafeMutablePointer<Float>
    private let owner: AnyObject?

    /// True for memory this storage allocated; false for memory another object owns (a mapped file may be read-only).
    public var ownsMemory: Bool { owner == nil }

    /// Allocates `count` uninitialised floats.
    public init(count: Int) {
        precondition(count >= 0, "negative element count")
        self.count = count
        let raw = BufferCache.allocate(bytes: max(count, 1) * MemoryLayout<Float>.stride)
        self.base = raw.bindMemory(to: Float.self, capacity: max(count, 1))
        self.owner = nil
    }

    /// Wraps memory that `owner` keeps valid for the storage's lifetime (no copy).
    public init(borrowing pointer: UnsafeMutablePointer<Float>, count: Int, owner: AnyObject) {
        self.count = count
        self.base = pointer
        self.owner = owner
    }

    /// The first element; valid for as long as this storage lives (keep a reference to it while using the pointer).
    public var baseAddress: UnsafeMutablePointer<Float> { base }

    deinit {
        if owner == nil { BufferCache.release(UnsafeMutableRawPointer(base), bytes: max(count, 1) * MemoryLayout<Float>.stride) }
    }
}

/// Keeps freed large tensor buffers for reuse.
///
/// A denoising step allocates and frees the same activation sizes thousands of times; fresh multi-MiB
/// allocations come from `mmap` and pay a page fault per 4 KiB on first touch, which made large GEMMs
/// run at half speed. Buffers of 64 KiB and more are rounded up to a size class (at most 25% slack) and
/// parked here when freed, up to a limit: an eighth of the resident set after the last model load
/// (`TensorBufferCache.fitLimitToResidentSet`, at least 64 MiB; 256 MiB before any), or `SWIFTDIFFUSION_BUFFER_CACHE_MB`.
///
/// Parked buffers count in the resident set. Three rules keep them from raising the peak where they are not reused:
/// - a miss of `evictingMissBytes` or more (the VAE decoder's full-resolution activations, not a UNet step's at
///   512x512) first gives back parked buffers, oldest first, of at least its own size: large sizes come from
///   one-pass stages, whose parked sizes do not come back, and each such allocation would otherwise add its whole
///   size to the peak;
/// - `TensorBufferCache.trim()` before a VAE decode whose full-resolution activations are large (`trim(beforeStageOf:)`),
///   and after a bf16 model is built, gives back what was parked and what the C heap holds free;
/// - the limit, which trades speed for memory. On AMD Zen 5 (docs/benchmarks.md) an SD 1.5 image at 512x512 in bf16
///   took as long with 128, 256 or 512 MiB and peaked 200 MiB lower with 256 than with 512; the fp32 batch-2 UNet step,
///   whose activations are twice a guidance branch's, was 5-10 % faster with 512 than with 256. An eighth of the
///   resident set gives about 270 MiB for the bf16 SD 1.5 pipeline and 460 MiB for the fp32 UNet: both fast, and the
///   parked memory stays a bounded share of the footprint.
enum BufferCache {
    private struct State {
        var free: [Int: [UInt]] = [:]  // size class -> addresses
        var parked: [(size: Int, address: UInt)] = []  // oldest first
        var cachedBytes = 0

        mutating func unpark(size: Int, address: UInt) {
            if var list = free[size], let index = list.lastIndex(of: address) {
                list.remove(at: index)
                free[size] = list.isEmpty ? nil : list
            }
            if let index = parked.lastIndex(where: { $0.address == address }) { parked.remove(at: index) }
            cachedBytes -= size
        }
    }
    /// A miss of at least this size first gives back parked buffers, oldest first, of as many bytes (see the type's
    /// comment).
    static let evictingMissBytes = 96 << 20

    private static let state = Mutex(State())
    private static let minimumCachedBytes = 64 << 10
    /// `SWIFTDIFFUSION_BUFFER_CACHE_MB`, when set, fixes the limit.
    private static let configuredLimitBytes: Int? = ProcessInfo.processInfo.environment["SWIFTDIFFUSION_BUFFER_CACHE_MB"]
        .flatMap { Int($0) }.map { max(0, $0) << 20 }
    private static let fittedLimitBytes = Atomic<Int>(256 << 20)
    static var limitBytes: Int { configuredLimitBytes ?? fittedLimitBytes.load(ordering: .relaxed) }

    /// Sets the limit to an eighth of `residentBytes` (at least 64 MiB), unless the environment fixes it.
    static func fitLimit(residentBytes: Int) {
        fittedLimitBytes.store(max(64 << 20, residentBytes / 8), ordering: .relaxed)
    }

    /// Rounds up to 2^k * {1, 1.25, 1.5, 1.75}.
    static func sizeClass(_ bytes: Int) -> Int {
        if bytes < minimumCachedBytes { return bytes }
        let power = Int.bitWidth - (bytes - 1).leadingZeroBitCount - 1  // 2^power <= bytes - 1 < 2^(power+1)
        let quarter = 1 << (power - 2)
        return ((bytes + quarter - 1) / quarter) * quarter
    }

    static var parkedBytes: Int { state.withLock { $0.cachedBytes } }

    /// Bytes parked in the size class of a `bytes`-byte buffer.
    static func parkedBytes(sizeClassOf bytes: Int) -> Int {
        let size = sizeClass(bytes)
        return state.withLock { size * ($0.free[size]?.count ?? 0) }
    }

    static func allocate(bytes: Int) -> UnsafeMutableRawPointer {
        let size = sizeClass(bytes)
        if size >= minimumCachedBytes {
            let (reused, released) = state.withLock { state -> (UInt?, [(size: Int, address: UInt)]) in
                if let address = state.free[size]?.last {
                    state.unpark(size: size, address: address)
                    return (address, [])
                }
                guard size >= evictingMissBytes else { return (nil, []) }
                var released: [(size: Int, address: UInt)] = []
                var bytes = 0
                while bytes < size, let oldest = state.parked.first {
                    state.unpark(size: oldest.size, address: oldest.address)
                    released.append(oldest)
                    bytes += oldest.size
                }
                return (nil, released)
            }
            for buffer in released { deallocate(UnsafeMutableRawPointer(bitPattern: buffer.address)!, size: buffer.size) }
            if let reused, let pointer = UnsafeMutableRawPointer(bitPattern: reused) { return pointer }
        }
        if size >= hugePageThreshold, let mapped = mapHugePages(size) { return mapped }
        var raw: UnsafeMutableRawPointer?
        guard posix_memalign(&raw, 64, size) == 0, let raw else {
            fatalError("out of memory allocating \(size) bytes for a tensor")
        }
        return raw
    }

    /// Buffers of this size and more are mapped on their own, 2 MiB aligned, and marked for transparent huge pages
    /// (`MADV_HUGEPAGE`; the kernel's `transparent_hugepage/enabled` is commonly `madvise`): first touch then faults
    /// once per 2 MiB instead of once per 4 KiB, which makes the allocations the cache does not serve cheaper, and
    /// freeing one gives its memory back at once. (Mapping smaller buffers the same way, without huge pages, made
    /// an SD 1.5 image 6 % slower than leaving them to glibc's heap.)
    static let hugePageThreshold = 4 << 20
    private static let hugePage = 2 << 20

    private static func mapHugePages(_ size: Int) -> UnsafeMutableRawPointer? {
        #if os(Linux)
            let length = size + hugePage
            let mapped = mmap(nil, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
            guard let mapped, mapped != MAP_FAILED else { return nil }
            let address = UInt(bitPattern: mapped)
            let aligned = (address + UInt(hugePage - 1)) & ~UInt(hugePage - 1)
            let lead = Int(aligned - address)
            if lead > 0 { munmap(mapped, lead) }
            let tail = length - lead - size
            if tail > 0 { munmap(UnsafeMutableRawPointer(bitPattern: aligned + UInt(size)), tail) }
            let pointer = UnsafeMutableRawPointer(bitPattern: aligned)!
            _ = madvise(pointer, size, MADV_HUGEPAGE)
            return pointer
        #else
            return nil
        #endif
    }

    /// Returns a buffer `allocate` made (of size class `size`) to the system.
    private static func deallocate(_ pointer: UnsafeMutableRawPointer, size: Int) {
        #if os(Linux)
            if size >= hugePageThreshold {
                munmap(pointer, size)
                return
            }
        #endif
        free(pointer)
    }

    static func release(_ pointer: UnsafeMutableRawPointer, bytes: Int) {
        let size = sizeClass(bytes)
        if size >= minimumCachedBytes {
            let kept = state.withLock { state -> Bool in
                guard state.cachedBytes + size <= limitBytes else { return false }
                state.free[size, default: []].append(UInt(bitPattern: pointer))
                state.parked.append((size, UInt(bitPattern: pointer)))
                state.cachedBytes += size
                return true
            }
            if kept { return }
        }
        deallocate(pointer, size: size)
    }

    /// Frees every parked buffer (after a large model is unloaded, for example), then asks the C heap to give back its
    /// own free memory (`malloc_trim`): buffers below the huge-page size come from it, and glibc keeps what they
    /// leave free in its arenas.
    static func trim() {
        let parked = state.withLock { state -> [(size: Int, address: UInt)] in
            defer { state = State() }
            return state.parked
        }
        for (size, address) in parked { deallocate(UnsafeMutableRawPointer(bitPattern: address)!, size: size) }
        _ = sd_heap_trim()
    }
}

/// The engine's cache of freed tensor buffers, for callers that free a lot at once.
public enum TensorBufferCache {
    /// Returns every parked buffer to the system: after a bf16 model is built, the fp32 weights it rounded from
    /// would otherwise stay parked (up to the cache's limit) and count in the resident set.
    public static func trim() { BufferCache.trim() }
    /// `trim()` before a stage whose largest activation takes `largestActivationBytes`, when that is large enough that
    /// the cache would evict for it anyway (`BufferCache.evictingMissBytes`, 96 MiB: a VAE decode at 512x512). A small
    /// stage (a 128x128 image) keeps the parked buffers and the C heap's free memory, which the next request reuses
    /// instead of faulting fresh pages in again.
    public static func trim(beforeStageOf largestActivationBytes: Int) {
        if largestActivationBytes >= BufferCache.evictingMissBytes { BufferCache.trim() }
    }
    /// Bytes of freed buffers parked for reuse now.
    public static var parkedBytes: Int { BufferCache.parkedBytes }
    /// Bytes parked in the size class of a `bytes`-byte buffer (what a buffer of that size would reuse).
    public static func parkedBytes(sizeClassOf bytes: Int) -> Int { BufferCache.parkedBytes(sizeClassOf: bytes) }
    /// The most bytes the cache parks (`fitLimitToResidentSet`, or `SWIFTDIFFUSION_BUFFER_CACHE_MB`).
    public static var limitBytes: Int { BufferCache.limitBytes }

    /// Sizes the cache to the model just loaded: at most an eighth of the process's resident set (the weights, read
    /// from `/proc/self/status`), at least 64 MiB; 256 MiB before the first call, or where the resident set cannot be
    /// read. A larger model has larger activations to reuse, and the parked memory stays a bounded share of the
    /// footprint. `SWIFTDIFFUSION_BUFFER_CACHE_MB` overrides it.
    public static func fitLimitToResidentSet() {
        if let kilobytes = ProcessStatus.kilobytes("VmRSS") { fitLimit(residentBytes: kilobytes << 10) }
    }

    /// Sizes the cache as `fitLimitToResidentSet` does for a resident set of `residentBytes`.
    public static func fitLimit(residentBytes: Int) { BufferCache.fitLimit(residentBytes: residentBytes) }
}

/// A dense, row-major Float32 tensor. Image activations are channels-last (NHWC).
///
/// `Tensor` is a value with reference storage: copies share memory. Ops always return new tensors;
/// the few in-place operations (LoRA patching, accumulation) say so in their names.
public struct Tensor: @unchecked Sendable {
    public let shape: [Int]
    public private(set) var storage: TensorStorage

    /// Number of elements.
    @inlinable public var count: Int { storage.count }
    @inlinable public var rank: Int { shape.count }

    /// An uninitialised tensor (callers overwrite every element).
    public init(uninitializedShape shape: [Int]) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in shape \(shape)")
        self.shape = shape
        self.storage = TensorStorage(count: shape.reduce(1, *))
    }

    /// Wraps existing storage; the element counts must agree.
    public init(shape: [Int], storage: TensorStorage) {
        precondition(shape.reduce(1, *) == storage.count, "shape \(shape) does not match \(storage.count) elements")
        self.shape = shape
        self.storage = storage
    }

    /// A tensor holding `values` (row-major).
    public init(shape: [Int], values: [Float]) {
        self.init(uninitializedShape: shape)
        precondition(values.count == count, "shape \(shape) needs \(count) values, got \(values.count)")
        values.withUnsafeBufferPointer { src in
            storage.base.update(from: src.baseAddress!, count: count)
        }
    }

    /// A tensor filled with one value.
    public init(shape: [Int], repeating value: Float) {
        self.init(uninitializedShape: shape)
        storage.base.update(repeating: value, count: count)
    }

    public static func zeros(_ shape: [Int]) -> Tensor { Tensor(shape: shape, repeating: 0) }

    /// A scalar-valued rank-0 tensor.
    public init(scalar: Float) { self.init(shape: [], values: [scalar]) }

    /// Builds a tensor by letting `fill` write every element (used by loaders and decoders).
    public init(shape: [Int], fill: (UnsafeMutableBufferPointer<Float>) throws -> Void) rethrows {
        self.init(uninitializedShape: shape)
        try fill(UnsafeMutableBufferPointer(start: storage.base, count: count))
    }

    /// The elements as an array (copy).
    public var scalars: [Float] {
        Array(UnsafeBufferPointer(start: storage.base, count: count))
    }

    /// The same elements viewed with another shape (no copy).
    public func reshaped(_ newShape: [Int]) -> Tensor {
        var dims = newShape
        if let inferred = dims.firstIndex(of: -1) {
            let known = dims.enumerated().filter { $0.offset != inferred }.map(\.element).reduce(1, *)
            precondition(known > 0 && count % known == 0, "cannot reshape \(shape) to \(newShape)")
            dims[inferred] = count / known
        }
        precondition(dims.reduce(1, *) == count, "cannot reshape \(shape) to \(newShape)")
        return Tensor(shape: dims, storage: storage)
    }

    /// Rows `range` of the tensor seen as `[rows, last axis]`, without a copy: writes through the view reach this
    /// tensor. The view never counts as uniquely owned, so no layer overwrites it in place.
    public func rows(_ range: Range<Int>) -> Tensor {
        let width = shape.last ?? 1
        precondition(range.lowerBound >= 0 && range.upperBound * width <= count, "rows \(range) out of range for \(shape)")
        return Tensor(
            shape: [range.count, width],
            storage: TensorStorage(borrowing: storage.base + range.lowerBound * width, count: range.count * width, owner: storage))
    }

    /// Element at a multi-index (slow; for tests and small lookups).
    public subscript(indices: Int...) -> Float {
        precondition(indices.count == rank, "index rank \(indices.count) != tensor rank \(rank)")
        var offset = 0
        for (axis, index) in indices.enumerated() {
            precondition(index >= 0 && index < shape[axis], "index \(index) out of range for axis \(axis) of \(shape)")
            offset = offset * shape[axis] + index
        }
        return storage.base[offset]
    }

    /// A deep copy with its own storage.
    public func copy() -> Tensor {
        let out = Tensor(uninitializedShape: shape)
        out.storage.base.update(from: storage.base, count: count)
        return out
    }

    /// Read access to the elements for code below the model layer (kernels, file writers, image codecs).
    public func withUnsafeBufferPointer<R>(_ body: (UnsafeBufferPointer<Float>) throws -> R) rethrows -> R {
        try body(UnsafeBufferPointer(start: storage.base, count: count))
    }

    /// Write access to the elements, shared by every copy of this tensor. For kernels, loaders and
    /// in-place weight patching.
    public func withUnsafeMutableBufferPointer<R>(_ body: (UnsafeMutableBufferPointer<Float>) throws -> R) rethrows -> R {
        try body(UnsafeMutableBufferPointer(start: storage.base, count: count))
    }

    /// True when this tensor is the only one holding its memory and the memory is its own (not a mapped file): a
    /// layer given a tensor by `consume` may then overwrite it instead of allocating its result. Any copy still held
    /// elsewhere (a skip connection, the caller's variable) makes it false.
    public mutating func isUniquelyOwned() -> Bool {
        isKnownUniquelyReferenced(&storage) && storage.ownsMemory
    }

    /// True when both tensors have the same shape and bit-identical elements.
    public func isBitwiseEqual(to other: Tensor) -> Bool {
        shape == other.shape && memcmp(storage.base, other.storage.base, count * MemoryLayout<Float>.stride) == 0
    }
}

extension Tensor: CustomStringConvertible {
    public var description: String {
        let preview = scalars.prefix(6).map { "\($0)" }.joined(separator: ", ")
        return "Tensor(\(shape), [\(preview)\(count > 6 ? ", ..." : "")])"
    }
}

/// Statistics used by parity tests and benchmarks.
extension Tensor {
    /// Largest absolute element-wise difference between two same-shaped tensors.
    public func maxAbsDifference(_ other: Tensor) -> Float {
        precondition(shape == other.shape, "shape mismatch \(shape) vs \(other.shape)")
        var worst: Float = 0
        for i in 0..<count {
            let d = abs(storage.base[i] - other.storage.base[i])
            if d > worst || d.isNaN { worst = d.isNaN ? .infinity : d }
        }
        return worst
    }

    /// Largest absolute element.
    public var maxAbs: Float {
        var worst: Float = 0
        for i in 0..<count { worst = max(worst, abs(storage.base[i])) }
        return worst
    }

    public var mean: Float {
        var sum: Double = 0
        for i in 0..<count { sum += Double(storage.base[i]) }
        return Float(sum / Double(max(count, 1)))
    }
}

/// Memory fields of this process's `/proc/self/status` (Linux; nil elsewhere).
public enum ProcessStatus {
    /// The field's value in KiB (`VmRSS`: resident now, `VmHWM`: peak resident).
    public static func kilobytes(_ field: String) -> Int? {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return nil }
        for line in status.split(separator: "\n") where line.hasPrefix(field + ":") {
            let parts = line.split(separator: " ", omittingEmptySubsequences: true)
            if parts.count >= 2, let value = Int(parts[1]) { return value }
        }
        return nil
    }
}
