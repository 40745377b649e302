import Compute
import XCTest

/// The cache of freed tensor buffers (`TensorBufferCache`): freed buffers are parked and reused by the same size
/// class; a large miss gives parked buffers back before it allocates, so parking never adds a large buffer's worth
/// to the peak; `trim` gives everything back. Buffers from the cache hold what is written to them (mapped memory).
final class TensorBufferCacheTests: XCTestCase {
    private func tensor(megabytes: Int, fill: Float) -> Tensor {
        Tensor(shape: [megabytes << 18]) { buffer in buffer.update(repeating: fill) }
    }

    /// Counted per size class: the cache is the process's, and a thread of another test may park a buffer of its own
    /// meanwhile.
    func testBuffersAreReusedAndALargeMissGivesParkedOnesBack() {
        TensorBufferCache.fitLimit(residentBytes: 2 << 30)  // 256 MiB, whatever models earlier tests loaded
        TensorBufferCache.trim()
        let parked = { (megabytes: Int) in TensorBufferCache.parkedBytes(sizeClassOf: megabytes << 20) }
        XCTAssertEqual(parked(8), 0)
        do {
            let small = tensor(megabytes: 8, fill: 1)
            XCTAssertEqual(small.scalars.reduce(0, +), Float(8 << 18))
        }
        XCTAssertEqual(parked(8), 8 << 20, "a freed 8 MiB buffer is parked")
        do {
            let again = tensor(megabytes: 8, fill: 2)
            XCTAssertEqual(parked(8), 0, "the same size reuses it")
            XCTAssertEqual(again.scalars.reduce(0, +), Float(16 << 18))
        }
        XCTAssertEqual(parked(8), 8 << 20)
        do {
            // A miss below the eviction size keeps what is parked.
            let other = tensor(megabytes: 5, fill: 1)
            XCTAssertEqual(parked(8), 8 << 20)
            XCTAssertEqual(other.count, 5 << 18)
        }
        XCTAssertEqual([parked(8), parked(5)], [8 << 20, 5 << 20])
        do {
            // A 100 MiB miss gives back at least as many parked bytes, oldest first: here both.
            let large = tensor(megabytes: 100, fill: 0.5)
            XCTAssertEqual([parked(8), parked(5)], [0, 0])
            XCTAssertEqual(large.scalars[large.count - 1], 0.5)
        }
        XCTAssertEqual(parked(100), 112 << 20, "parked by its size class (100 MiB rounds up to 112)")
        TensorBufferCache.trim()
        XCTAssertEqual(parked(100), 0)
    }

    /// Before a stage (the VAE decode): a small one, a 128x128 image's, keeps what is parked for the next request to
    /// reuse; one whose largest activation reaches the eviction size, a 512x512 image's, gives it all back first.
    func testTrimBeforeAStageOnlyWhenTheStageIsLarge() {
        TensorBufferCache.fitLimit(residentBytes: 2 << 30)
        TensorBufferCache.trim()
        do { _ = tensor(megabytes: 8, fill: 1) }
        XCTAssertEqual(TensorBufferCache.parkedBytes(sizeClassOf: 8 << 20), 8 << 20)
        TensorBufferCache.trim(beforeStageOf: 128 * 128 * 128 * 4)
        XCTAssertEqual(TensorBufferCache.parkedBytes(sizeClassOf: 8 << 20), 8 << 20, "a 8 MiB stage keeps the parked buffer")
        TensorBufferCache.trim(beforeStageOf: 512 * 512 * 128 * 4)
        XCTAssertEqual(TensorBufferCache.parkedBytes(sizeClassOf: 8 << 20), 0, "a 128 MiB stage gives it back")
    }

    /// The limit follows the model: an eighth of the resident set after a load, at least 64 MiB; buffers beyond it are
    /// freed, not parked.
    func testTheLimitIsAnEighthOfTheResidentSet() throws {
        try XCTSkipIf(
            ProcessInfo.processInfo.environment["SWIFTDIFFUSION_BUFFER_CACHE_MB"] != nil,
            "SWIFTDIFFUSION_BUFFER_CACHE_MB fixes the limit")
        defer { TensorBufferCache.fitLimit(residentBytes: 2 << 30) }
        TensorBufferCache.fitLimit(residentBytes: 4 << 30)
        XCTAssertEqual(TensorBufferCache.limitBytes, 512 << 20)
        TensorBufferCache.fitLimit(residentBytes: 100 << 20)
        XCTAssertEqual(TensorBufferCache.limitBytes, 64 << 20)
        TensorBufferCache.trim()
        do { _ = tensor(megabytes: 80, fill: 1) }
        XCTAssertEqual(TensorBufferCache.parkedBytes(sizeClassOf: 80 << 20), 0, "an 80 MiB buffer is over a 64 MiB limit")
        do { _ = tensor(megabytes: 40, fill: 1) }
        XCTAssertEqual(TensorBufferCache.parkedBytes(sizeClassOf: 40 << 20), 40 << 20)
        TensorBufferCache.fitLimitToResidentSet()
        XCTAssertGreaterThanOrEqual(TensorBufferCache.limitBytes, 64 << 20)
        TensorBufferCache.trim()
    }
}
