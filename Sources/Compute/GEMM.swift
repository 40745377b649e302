import CCPUFeatures
import CDNNLMatmul
import COpenBLAS
import Foundation
import Synchronization

/// Single-precision matrix multiply on OpenBLAS, split over the compute pool.
///
/// OpenBLAS's own threads are switched off: the engine's pool owns the cores, and each piece of a split
/// GEMM is a single-threaded `cblas_sgemm` on a band of rows (or columns) of C.
///
/// Kernels: Debian's OpenBLAS is built for every x86-64 processor (DYNAMIC_ARCH) but picks its kernel set from a
/// table of processor models, so a processor newer than the library runs its oldest kernels (0.3.21 runs SSE3
/// "Prescott" kernels on current Xeons, 6-8x slower). The engine instead picks the kernel set from the
/// processor's features (`ProcessorFeatures`) and switches OpenBLAS to it at start-up.
/// `SWIFTDIFFUSION_ISA=avx512_bf16|avx512|avx2|baseline` forces a path (for tests and comparisons);
/// `SWIFTDIFFUSION_ISA=openblas` leaves OpenBLAS's own choice (and its `OPENBLAS_CORETYPE`) alone.
public enum GEMM {
    /// Which kernels run, and why.
    public struct KernelSelection: Sendable, Equatable {
        /// The OpenBLAS kernel set in use ("Cooperlake", "SkylakeX", "Haswell", "Prescott", ...).
        public var core: String
        /// What OpenBLAS chose by itself from its processor table (or `OPENBLAS_CORETYPE`).
        public var openBLASChoice: String
        /// The instruction set those kernels use.
        public var instructionSet: ProcessorFeatures.InstructionSet
        /// "cpuid", "SWIFTDIFFUSION_ISA" or "openblas".
        public var origin: String

        public var summary: String {
            let chosen = origin == "openblas" ? "OpenBLAS's own choice" : origin == "cpuid" ? "chosen from CPUID" : "forced by \(origin)"
            let differs = openBLASChoice == core ? "" : "; OpenBLAS's own table chose \(openBLASChoice)"
            return "OpenBLAS \(GEMM.openBLASVersion) core \(core) (\(instructionSet.rawValue), \(chosen)\(differs))"
        }
    }

    /// The OpenBLAS kernel set for an instruction set.
    static func openBLASCore(_ set: ProcessorFeatures.InstructionSet) -> String {
        switch set {
        case .baseline: "Prescott"
        case .avx2: "Haswell"
        case .avx512: "SkylakeX"
        case .avx512bf16: "Cooperlake"
        }
    }

    private static func currentCoreName() -> String {
        guard let name = openblas_get_corename() else { return "unknown" }
        return String(cString: name)
    }

    /// The instruction set of an OpenBLAS core name (the ones its x86-64 kernels are grouped by).
    public static func instructionSet(ofCoreName core: String) -> ProcessorFeatures.InstructionSet { instructionSet(ofCore: core) }

    static func instructionSet(ofCore core: String) -> ProcessorFeatures.InstructionSet {
        switch core.lowercased() {
        case "cooperlake", "sapphirerapids": .avx512bf16
        case "skylakex": .avx512
        case "haswell", "zen", "excavator", "steamroller": .avx2
        default: .baseline
        }
    }

    private final class SelectionBox: @unchecked Sendable {
        let lock = NSLock()
        var selection: KernelSelection?
    }
    private static let box = SelectionBox()

    private static let configureOnce: Void = {
        openblas_set_num_threads(1)
        let openBLASChoice = currentCoreName()
        let requested = ProcessInfo.processInfo.environment["SWIFTDIFFUSION_ISA"]
        var selection = KernelSelection(
            core: openBLASChoice, openBLASChoice: openBLASChoice, instructionSet: instructionSet(ofCore: openBLASChoice), origin: "openblas")
        if requested?.lowercased() != "openblas" {
            let best = ProcessorFeatures.current.instructionSet
            var target = best
            var origin = "cpuid"
            if let requested, let forced = ProcessorFeatures.InstructionSet(name: requested) {
                target = min(forced, best)
                origin = "SWIFTDIFFUSION_ISA"
            }
            if apply(target) {
                selection = KernelSelection(
                    core: currentCoreName(), openBLASChoice: openBLASChoice, instructionSet: target, origin: origin)
            }
        }
        box.lock.lock()
        box.selection = selection
        box.lock.unlock()
        fp32BackendState.store(defaultFP32Backend(for: selection.instructionSet) == .oneDNN ? 1 : 0, ordering: .relaxed)
    }()

    /// Switches OpenBLAS to the kernels of `set`; false if the library cannot switch.
    private static func apply(_ set: ProcessorFeatures.InstructionSet) -> Bool {
        sd_openblas_select_core(openBLASCore(set))
    }

    /// The kernels in use.
    public static var selection: KernelSelection {
        _ = configureOnce
        box.lock.lock()
        defer { box.lock.unlock() }
        return box.selection!
    }

    /// Switches to the kernels of `set` (clamped to what the processor can run, fp32 back end included) and returns
    /// the selection. For
    /// tests and benchmarks that compare paths; no GEMM may be running meanwhile.
    @discardableResult
    public static func select(_ set: ProcessorFeatures.InstructionSet) -> KernelSelection {
        _ = configureOnce
        let target = min(set, ProcessorFeatures.current.instructionSet)
        box.lock.lock()
        defer { box.lock.unlock() }
        if apply(target) {
            box.selection = KernelSelection(
                core: currentCoreName(), openBLASChoice: box.selection!.openBLASChoice, instructionSet: target, origin: "select")
            setFP32Backend(defaultFP32Backend(for: target))
        }
        return box.selection!
    }

    /// Goes back to an earlier selection (after `select`).
    public static func restore(_ selection: KernelSelection) {
        _ = configureOnce
        box.lock.lock()
        defer { box.lock.unlock() }
        if apply(selection.instructionSet) {
            box.selection = selection
            setFP32Backend(defaultFP32Backend(for: selection.instructionSet))
        }
    }

    /// Name of the OpenBLAS kernel set in use (e.g. "SkylakeX", "Haswell").
    public static var coreName: String {
        _ = configureOnce
        return currentCoreName()
    }

    /// "0.3.21" from OpenBLAS's configuration string.
    public static var openBLASVersion: String {
        guard let config = openblas_get_config() else { return "?" }
        let words = String(cString: config).split(separator: " ")
        return words.count > 1 ? String(words[1]) : "?"
    }

    /// C[m x n] = alpha * op(A)[m x k] * op(B)[k x n] + beta * C, row-major with leading dimensions.
    /// `op(X)` is X or its transpose. Splits over `pool` when the product is large enough to gain.
    public static func multiply(
        transposeA: Bool = false, transposeB: Bool = false,
        m: Int, n: Int, k: Int,
        alpha: Float = 1,
        a: UnsafePointer<Float>, lda: Int,
        b: UnsafePointer<Float>, ldb: Int,
        beta: Float = 0,
        c: UnsafeMutablePointer<Float>, ldc: Int,
        pool: ComputePool = .current
    ) {
        _ = configureOnce
        if m == 0 || n == 0 { return }
        splitInBands(m: m, n: n, k: k, pool: pool) { rows, columns in
            let aPiece = transposeA ? a + rows.lowerBound : a + rows.lowerBound * lda
            let bPiece = transposeB ? b + columns.lowerBound * ldb : b + columns.lowerBound
            serial(
                transposeA, transposeB, rows.count, columns.count, k, alpha, aPiece, lda, bPiece, ldb, beta,
                c + rows.lowerBound * ldc + columns.lowerBound, ldc)
        }
    }

    /// Splits an m x n x k product over `pool`: bands of rows of C (and of op(A)), or of columns of C (and of op(B))
    /// when C is wide and short; one piece (the whole product) when it is too small to gain or the pool has one thread.
    /// `piece(rows, columns)` computes that block of C on the calling thread.
    static func splitInBands(
        m: Int, n: Int, k: Int, pool: ComputePool, _ piece: @escaping (Range<Int>, Range<Int>) -> Void
    ) {
        let flops = 2.0 * Double(m) * Double(n) * Double(k)
        let threads = pool.threadCount
        if threads == 1 || flops < 4e6 {
            piece(0..<m, 0..<n)
            return
        }
        let byRows = m >= n || n < 32
        let extent = byRows ? m : n
        let pieces = min(threads, max(1, extent / 16))
        pool.parallelFor(pieces) { index in
            let start = (extent * index / pieces) & ~7
            let end = index == pieces - 1 ? extent : (extent * (index + 1) / pieces) & ~7
            if start >= end { return }
            if byRows { piece(start..<end, 0..<n) } else { piece(0..<m, start..<end) }
        }
    }

    /// Where fp32 products of a weight (`A B^T`, beta 0 or 1: linear layers, convolution panels) run.
    public enum FP32Backend: String, Sendable {
        case openBLAS = "openblas"
        case oneDNN = "onednn"
    }

    /// oneDNN's fp32 matmul where its kernels run AVX-512 (`bench ops --backends` on Zen 4: 1.01-1.13x OpenBLAS's
    /// Cooperlake sgemm on every SD 1.5 shape); OpenBLAS elsewhere (its AVX2 kernels are what the AVX2 machines were
    /// measured with) and on a path forced below AVX-512 (`SWIFTDIFFUSION_ISA`, `select`).
    /// `SWIFTDIFFUSION_GEMM=openblas|onednn` forces one.
    public static var fp32Backend: FP32Backend {
        _ = configureOnce
        return fp32BackendState.load(ordering: .relaxed) == 1 ? .oneDNN : .openBLAS
    }

    /// Sets `fp32Backend` (tests and benchmarks that compare back ends; no GEMM may be running meanwhile).
    public static func setFP32Backend(_ backend: FP32Backend) {
        _ = configureOnce
        fp32BackendState.store(backend == .oneDNN ? 1 : 0, ordering: .relaxed)
    }

    /// The back end for kernels of `set`: oneDNN's where it runs AVX-512 and the set is AVX-512 too.
    static func defaultFP32Backend(for set: ProcessorFeatures.InstructionSet) -> FP32Backend {
        _ = oneDNNConfigured
        if let forced = ProcessInfo.processInfo.environment["SWIFTDIFFUSION_GEMM"].flatMap(FP32Backend.init(rawValue:)) { return forced }
        return set >= .avx512 && String(cString: sd_dnnl_effective_isa()).hasPrefix("avx512") ? .oneDNN : .openBLAS
    }

    private static let fp32BackendState = Atomic<Int>(0)

    /// One single-threaded product on the calling thread: oneDNN's matmul for `A B^T` with alpha 1 and beta 0 or 1
    /// when `fp32Backend` is oneDNN (falling back to OpenBLAS should oneDNN refuse the shape), else `cblas_sgemm`.
    @inline(__always)
    static func serial(
        _ transposeA: Bool, _ transposeB: Bool, _ m: Int, _ n: Int, _ k: Int, _ alpha: Float,
        _ a: UnsafePointer<Float>, _ lda: Int, _ b: UnsafePointer<Float>, _ ldb: Int,
        _ beta: Float, _ c: UnsafeMutablePointer<Float>, _ ldc: Int
    ) {
        _ = configureOnce
        if !transposeA && transposeB && alpha == 1 && (beta == 0 || beta == 1) && fp32BackendState.load(ordering: .relaxed) == 1
            && sd_dnnl_matmul(0, Int64(m), Int64(n), Int64(k), a, Int64(lda), b, Int64(ldb), beta, c, Int64(ldc)) == 0
        {
            return
        }
        cblas_sgemm(
            CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans,
            blasint(m), blasint(n), blasint(k), alpha, a, blasint(lda), b, blasint(ldb), beta, c, blasint(ldc))
    }
}

// MARK: - Ops

/// Matrix product of the last two axes: `a[..., m, k] x b[k, n]` (or `b[n, k]` transposed) -> `[..., m, n]`.
public func matmul(_ a: Tensor, _ b: Tensor, transposeB: Bool = false) -> Tensor {
    precondition(a.rank >= 2 && b.rank == 2, "matmul needs a[..., m, k] and a 2-D b, got \(a.shape) and \(b.shape)")
    let k = a.shape[a.rank - 1]
    let m = a.count / max(k, 1)
    let n = transposeB ? b.shape[0] : b.shape[1]
    precondition((transposeB ? b.shape[1] : b.shape[0]) == k, "matmul inner dimensions differ: \(a.shape) x \(b.shape)")
    let out = Tensor(uninitializedShape: Array(a.shape.dropLast()) + [n])
    GEMM.multiply(
        transposeB: transposeB, m: m, n: n, k: k,
        a: a.storage.base, lda: k, b: b.storage.base, ldb: transposeB ? k : n,
        c: out.storage.base, ldc: n)
    return out
}

/// Batched product `a[batch, m, k] x b[batch, k, n]` (b optionally `[batch, n, k]` transposed).
public func batchedMatmul(_ a: Tensor, _ b: Tensor, transposeB: Bool = false) -> Tensor {
    precondition(a.rank == 3 && b.rank == 3 && a.shape[0] == b.shape[0], "batchedMatmul needs [B,m,k] and [B,k,n]")
    let (batch, m, k) = (a.shape[0], a.shape[1], a.shape[2])
    let n = transposeB ? b.shape[1] : b.shape[2]
    precondition((transposeB ? b.shape[2] : b.shape[1]) == k, "batchedMatmul inner dimensions differ")
    let out = Tensor(uninitializedShape: [batch, m, n])
    let pool = ComputePool.current
    pool.parallelFor(batch) { i in
        GEMM.multiply(
            transposeB: transposeB, m: m, n: n, k: k,
            a: a.storage.base + i * m * k, lda: k, b: b.storage.base + i * k * n, ldb: transposeB ? k : n,
            c: out.storage.base + i * m * n, ldc: n, pool: pool)
    }
    return out
}

/// `x[..., in] W^T + b`, with W in PyTorch's `[out, in]` layout.
public func linear(_ x: Tensor, weight: Tensor, bias: Tensor? = nil) -> Tensor {
    precondition(weight.rank == 2, "linear weight must be [out, in], got \(weight.shape)")
    let (outFeatures, inFeatures) = (weight.shape[0], weight.shape[1])
    precondition(x.shape.last == inFeatures, "linear expects \(inFeatures) input features, got \(x.shape)")
    let rows = x.count / max(inFeatures, 1)
    let out = Tensor(uninitializedShape: Array(x.shape.dropLast()) + [outFeatures])
    var beta: Float = 0
    if let bias {
        precondition(bias.count == outFeatures, "bias has \(bias.count) elements, expected \(outFeatures)")
        fillRows(out.storage.base, rows: rows, with: bias.storage.base, width: outFeatures)
        beta = 1
    }
    GEMM.multiply(
        transposeB: true, m: rows, n: outFeatures, k: inFeatures,
        a: x.storage.base, lda: inFeatures, b: weight.storage.base, ldb: inFeatures,
        beta: beta, c: out.storage.base, ldc: outFeatures)
    return out
}

/// Writes `row` into every one of `rows` consecutive rows of `destination`.
@inline(__always)
func fillRows(_ destination: UnsafeMutablePointer<Float>, rows: Int, with row: UnsafePointer<Float>, width: Int) {
    ComputePool.current.parallelRanges(rows, minimumChunk: max(1, 16384 / max(width, 1))) { range in
        for r in range { (destination + r * width).update(from: row, count: width) }
    }
}

/// Adds `row` to each of `rows` rows of `width` floats (a bias added to an accumulating output).
func addRows(_ destination: UnsafeMutablePointer<Float>, rows: Int, row: UnsafePointer<Float>, width: Int) {
    ComputePool.current.parallelRanges(rows, minimumChunk: max(1, 16384 / max(width, 1))) { range in
        for r in range {
            let line = destination + r * width
            for c in 0..<width { line[c] += row[c] }
        }
    }
}

extension GEMM {
    /// `c = a x b` for 2-D tensors with OpenBLAS's own threading (`threads` threads) instead of the
    /// engine's pool: the machine's BLAS baseline that benchmarks compare the engine against.
    public static func openBLASReference(_ a: Tensor, _ b: Tensor, into c: Tensor, threads: Int) {
        _ = configureOnce
        precondition(a.rank == 2 && b.rank == 2 && c.rank == 2 && a.shape[1] == b.shape[0], "reference GEMM shapes")
        openblas_set_num_threads(Int32(threads))
        defer { openblas_set_num_threads(1) }
        let (m, k, n) = (a.shape[0], a.shape[1], b.shape[1])
        cblas_sgemm(
            CblasRowMajor, CblasNoTrans, CblasNoTrans, blasint(m), blasint(n), blasint(k), 1,
            a.storage.base, blasint(k), b.storage.base, blasint(n), 0, c.storage.base, blasint(n))
    }
}

extension GEMM {
    /// One independent single-threaded `c_i = a x b` per pool thread, all at once: the other way to
    /// measure the machine's aggregate BLAS throughput (no OpenBLAS threading overhead).
    public static func openBLASReferencePerThread(_ a: Tensor, _ b: Tensor, into outputs: [Tensor], pool: ComputePool = .shared) {
        precondition(outputs.count >= pool.threadCount, "one output per pool thread")
        let (m, k, n) = (a.shape[0], a.shape[1], b.shape[1])
        pool.parallelFor(pool.threadCount) { i in
            serial(false, false, m, n, k, 1, a.storage.base, k, b.storage.base, n, 0, outputs[i].storage.base, n)
        }
    }
}

/// `output += scale * x W^T` in place, with W `[out, in]` (a runtime LoRA's up projection).
public func accumulateLinear(into output: Tensor, _ x: Tensor, weight: Tensor, scale: Float) {
    let (outFeatures, inFeatures) = (weight.shape[0], weight.shape[1])
    precondition(x.shape.last == inFeatures && output.shape.last == outFeatures, "accumulateLinear shapes")
    let rows = x.count / max(inFeatures, 1)
    precondition(output.count == rows * outFeatures, "accumulateLinear row counts differ")
    GEMM.multiply(
        transposeB: true, m: rows, n: outFeatures, k: inFeatures, alpha: scale,
        a: x.storage.base, lda: inFeatures, b: weight.storage.base, ldb: inFeatures,
        beta: 1, c: output.storage.base, ldc: outFeatures)
}

/// `target += scale * a b` in place for 2-D `a [m, k]`, `b [k, n]`, `target [m, n]` (LoRA merging:
/// `W += s * up @ down`). `target` may be any tensor with m * n elements (a conv kernel, say).
public func addMatmul(into target: Tensor, _ a: Tensor, _ b: Tensor, scale: Float, pool: ComputePool = .current) {
    precondition(a.rank == 2 && b.rank == 2 && a.shape[1] == b.shape[0], "addMatmul needs [m, k] x [k, n], got \(a.shape) x \(b.shape)")
    let (m, k, n) = (a.shape[0], a.shape[1], b.shape[1])
    precondition(target.count == m * n, "addMatmul target has \(target.count) elements, expected \(m * n)")
    GEMM.multiply(
        m: m, n: n, k: k, alpha: scale, a: a.storage.base, lda: k, b: b.storage.base, ldb: n, beta: 1,
        c: target.storage.base, ldc: n, pool: pool)
}
