import CDNNLMatmul
import Foundation

/// Which number format the GEMMs of linear and convolution layers run in.
///
/// `fp32` is the reference. `bf16` stores those layers' weights as bfloat16 (half the memory), converts each
/// GEMM's activations to bf16 on the way in and accumulates in fp32 (oneDNN's matmul, which runs
/// AVX512-BF16 or AMX kernels it picks from CPUID); everything else (norms, softmax, attention scores,
/// schedulers, the VAE's non-GEMM ops) stays fp32. This is what `torch.autocast("cpu", dtype=torch.bfloat16)`
/// does to linear and convolution layers, except for the 3x3 stride-1 convolutions that run as Winograd
/// (`WinogradConvolution`): they widen the bf16 kernel exactly and keep the activations and products in fp32.
public enum ComputePrecision: String, Sendable, CaseIterable {
    case fp32
    case bf16
}

/// What a user asks for: `auto` is bf16 where the processor has bf16 arithmetic (AVX512-BF16 or AMX), else fp32.
public enum PrecisionRequest: String, Sendable, CaseIterable {
    case fp32, bf16, auto

    /// Parses `fp32`, `bf16` or `auto` (case-insensitive).
    public init?(name: String) {
        self.init(rawValue: name.lowercased())
    }

    /// The precision that runs on this processor, or an error saying why bf16 cannot.
    public func resolve(features: ProcessorFeatures.Available = .current) throws -> ComputePrecision {
        switch self {
        case .fp32: return .fp32
        case .auto: return features.hasBF16 ? .bf16 : .fp32
        case .bf16:
            guard features.hasBF16 else { throw PrecisionError.bf16Unavailable(features.description) }
            return .bf16
        }
    }
}

public enum PrecisionError: Error, CustomStringConvertible, Sendable {
    case bf16Unavailable(String)

    public var description: String {
        switch self {
        case .bf16Unavailable(let what):
            "--precision bf16 needs a processor with AVX512-BF16 or AMX; \(what) (use --precision fp32, or auto to take bf16 only where it exists)"
        }
    }
}

extension ProcessorFeatures {
    /// The bf16 capability the engine may use: the processor's, lowered by `SWIFTDIFFUSION_ISA` (forcing
    /// `avx512`, `avx2` or `baseline` makes the processor count as one without bf16, for tests and comparisons).
    public struct Available: Sendable {
        public var hasBF16: Bool
        public var description: String

        public init(hasBF16: Bool, description: String) {
            self.hasBF16 = hasBF16
            self.description = description
        }

        public static var current: Available {
            let features = ProcessorFeatures.current
            if let forced = ProcessInfo.processInfo.environment["SWIFTDIFFUSION_ISA"].flatMap(ProcessorFeatures.InstructionSet.init(name:)),
                forced < .avx512bf16
            {
                return Available(hasBF16: false, description: "SWIFTDIFFUSION_ISA=\(forced.rawValue) limits this run to \(forced.rawValue)")
            }
            return Available(
                hasBF16: features.hasBF16,
                description: features.hasBF16 ? "this processor has it" : "this processor (\(features.brand)) has \(features.instructionSet.rawValue) without bf16")
        }
    }
}

/// A matrix of bfloat16 values, row-major `[rows, columns]` (a linear weight `[out, in]`, or a channels-last conv
/// kernel `[out, kh * kw * in]`).
public final class BF16Matrix: @unchecked Sendable {
    public let rows: Int
    public let columns: Int
    let base: UnsafeMutablePointer<UInt16>

    /// Rounds `values` (any shape with `rows * columns` elements) to bf16, round to nearest even.
    public init(_ values: Tensor, rows: Int, columns: Int) {
        precondition(values.count == rows * columns, "BF16Matrix of \(rows)x\(columns) from \(values.count) values")
        self.rows = rows
        self.columns = columns
        base = UnsafeMutablePointer<UInt16>.allocate(capacity: max(rows * columns, 1))
        let source = values.storage.base, destination = base
        ComputePool.current.parallelRanges(rows * columns, minimumChunk: 1 << 16) { range in
            sd_f32_to_bf16(source + range.lowerBound, destination + range.lowerBound, range.count)
        }
    }

    deinit { base.deallocate() }

    /// Bytes held.
    public var byteCount: Int { rows * columns * 2 }

    /// The values widened back to fp32 (`shape` must hold rows * columns elements).
    public func widened(shape: [Int]) -> Tensor {
        precondition(shape.reduce(1, *) == rows * columns, "widened shape \(shape) for \(rows)x\(columns)")
        let out = Tensor(uninitializedShape: shape)
        sd_bf16_to_f32(base, out.storage.base, rows * columns)
        return out
    }
}

/// The weight operand of a linear or convolution GEMM: fp32 values or bf16 ones.
public enum LayerWeight: @unchecked Sendable {
    /// `[out, in]` (linear) or `[out, kh, kw, in]` (conv, channels-last).
    case fp32(Tensor)
    /// The same values as rows `[out, in]` / `[out, kh * kw * in]`, with the fp32 shape kept.
    case bf16(BF16Matrix, shape: [Int])

    public var shape: [Int] {
        switch self {
        case .fp32(let tensor): tensor.shape
        case .bf16(_, let shape): shape
        }
    }

    public var precision: ComputePrecision {
        switch self {
        case .fp32: .fp32
        case .bf16: .bf16
        }
    }

    /// Converts an fp32 weight to `precision` (bf16 rounds once; fp32 is unchanged).
    public static func make(_ tensor: Tensor, precision: ComputePrecision) -> LayerWeight {
        switch precision {
        case .fp32: return .fp32(tensor)
        case .bf16: return .bf16(BF16Matrix(tensor, rows: tensor.shape[0], columns: tensor.count / max(tensor.shape[0], 1)), shape: tensor.shape)
        }
    }

    /// The fp32 values (a copy widened from bf16 for bf16 weights).
    public var fp32Values: Tensor {
        switch self {
        case .fp32(let tensor): tensor
        case .bf16(let matrix, let shape): matrix.widened(shape: shape)
        }
    }

    /// Bytes the weight holds.
    public var byteCount: Int {
        switch self {
        case .fp32(let tensor): tensor.count * 4
        case .bf16(let matrix, _): matrix.byteCount
        }
    }

    /// `c[m, n] = a[m, k] W^T + beta c` on the calling thread, W being this weight as `[n, k]` rows.
    @inline(__always)
    func serialMultiply(m: Int, a: UnsafePointer<Float>, lda: Int, beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
        switch self {
        case .fp32(let tensor):
            let n = tensor.shape[0], k = tensor.count / max(n, 1)
            GEMM.serial(false, true, m, n, k, 1, a, lda, tensor.storage.base, k, beta, c, ldc)
        case .bf16(let matrix, _):
            GEMM.serialBF16(m: m, n: matrix.rows, k: matrix.columns, a: a, lda: lda, b: matrix.base, beta: beta, c: c, ldc: ldc)
        }
    }

    /// The same product split over the pool in bands of rows (fp32 takes `GEMM.multiply`'s own split).
    func multiply(m: Int, a: UnsafePointer<Float>, lda: Int, beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
        switch self {
        case .fp32(let tensor):
            let n = tensor.shape[0], k = tensor.count / max(n, 1)
            GEMM.multiply(transposeB: true, m: m, n: n, k: k, a: a, lda: lda, b: tensor.storage.base, ldb: k, beta: beta, c: c, ldc: ldc)
        case .bf16(let matrix, _):
            GEMM.multiplyBF16(m: m, n: matrix.rows, k: matrix.columns, a: a, lda: lda, b: matrix.base, beta: beta, c: c, ldc: ldc)
        }
    }
}

extension GEMM {
    /// oneDNN's version and the instruction set its kernels dispatch to ("2.6.3", "avx512_core_bf16").
    public static var oneDNNSummary: String {
        _ = oneDNNConfigured
        return "oneDNN \(String(cString: sd_dnnl_version())) (\(String(cString: sd_dnnl_effective_isa())))"
    }

    /// Caps oneDNN's instruction set at the one `SWIFTDIFFUSION_ISA` forces (before any primitive exists), so a
    /// forced path holds for both back ends.
    static let oneDNNConfigured: Void = {
        guard let requested = ProcessInfo.processInfo.environment["SWIFTDIFFUSION_ISA"],
            let forced = ProcessorFeatures.InstructionSet(name: requested)
        else { return }
        // dnnl_cpu_isa_t values: sse41 0x1, avx2 0x7, avx512_core 0x27, avx512_core_bf16 0xe7.
        let cap: Int32 =
            switch forced {
            case .baseline: 0x1
            case .avx2: 0x7
            case .avx512: 0x27
            case .avx512bf16: 0xe7
            }
        _ = sd_dnnl_set_max_isa(cap)
    }()

    /// `c[m, n] = a[m, k] B^T + beta c` with B bf16 `[n, k]` rows: `a` is rounded to bf16 (the thread's
    /// scratch), products accumulate in fp32 (oneDNN). Single-threaded, on the calling thread.
    static func serialBF16(
        m: Int, n: Int, k: Int, a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<UInt16>, beta: Float,
        c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        _ = oneDNNConfigured
        if m == 0 || n == 0 { return }
        let half = ThreadBinding.halfScratch(count: m * k)
        if lda == k {
            sd_f32_to_bf16(a, half, m * k)
        } else {
            for row in 0..<m { sd_f32_to_bf16(a + row * lda, half + row * k, k) }
        }
        let status = sd_dnnl_matmul(1, Int64(m), Int64(n), Int64(k), half, Int64(k), b, Int64(k), beta, c, Int64(ldc))
        precondition(status == 0, "oneDNN bf16 matmul \(m)x\(n)x\(k) failed with status \(status)")
    }

    /// `serialBF16` split over `pool` in bands of rows of C (or of columns when C is wide and short).
    public static func multiplyBF16(
        m: Int, n: Int, k: Int, a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<UInt16>, beta: Float,
        c: UnsafeMutablePointer<Float>, ldc: Int, pool: ComputePool = .current
    ) {
        if m == 0 || n == 0 { return }
        splitInBands(m: m, n: n, k: k, pool: pool) { rows, columns in
            serialBF16(
                m: rows.count, n: columns.count, k: k, a: a + rows.lowerBound * lda, lda: lda, b: b + columns.lowerBound * k, beta: beta,
                c: c + rows.lowerBound * ldc + columns.lowerBound, ldc: ldc)
        }
    }

    /// `c[m, n] = a[m, k] W^T` with W `[n, k]` (a linear weight), on one thread: through oneDNN's fp32 matmul
    /// (`oneDNN` true) or OpenBLAS's sgemm. `bench ops` compares the two. Returns oneDNN's status (0 = success).
    @discardableResult
    public static func serialLinearProduct(_ a: Tensor, weight: Tensor, into c: Tensor, oneDNN: Bool) -> Int32 {
        _ = oneDNNConfigured
        let (m, k, n) = (a.shape[0], a.shape[1], weight.shape[0])
        precondition(weight.shape[1] == k && c.count == m * n, "serialLinearProduct shapes")
        if !oneDNN {
            serial(false, true, m, n, k, 1, a.storage.base, k, weight.storage.base, k, 0, c.storage.base, n)
            return 0
        }
        return sd_dnnl_matmul(0, Int64(m), Int64(n), Int64(k), a.storage.base, Int64(k), weight.storage.base, Int64(k), 0, c.storage.base, Int64(n))
    }
}

extension GEMM {
    /// `c[m, n] = a[m, k] W^T` on the calling thread with a bf16 (or fp32) `LayerWeight` (`bench ops --backends`).
    public static func serialLinearProduct(_ a: Tensor, weight: LayerWeight, into c: Tensor) {
        let m = a.shape[0], k = a.shape[1]
        precondition(weight.shape.count == 2 && weight.shape[1] == k && c.count == m * weight.shape[0], "serialLinearProduct shapes")
        weight.serialMultiply(m: m, a: a.storage.base, lda: k, beta: 0, c: c.storage.base, ldc: weight.shape[0])
    }
}

/// `x[..., in] W^T + b` for either weight format.
public func linear(_ x: Tensor, weight: LayerWeight, bias: Tensor? = nil) -> Tensor {
    switch weight {
    case .fp32(let tensor): return linear(x, weight: tensor, bias: bias)
    case .bf16(let matrix, _):
        let (outFeatures, inFeatures) = (matrix.rows, matrix.columns)
        precondition(x.shape.last == inFeatures, "linear expects \(inFeatures) input features, got \(x.shape)")
        let rows = x.count / max(inFeatures, 1)
        let out = Tensor(uninitializedShape: Array(x.shape.dropLast()) + [outFeatures])
        var beta: Float = 0
        if let bias {
            precondition(bias.count == outFeatures, "bias has \(bias.count) elements, expected \(outFeatures)")
            fillRows(out.storage.base, rows: rows, with: bias.storage.base, width: outFeatures)
            beta = 1
        }
        weight.multiply(m: rows, a: x.storage.base, lda: inFeatures, beta: beta, c: out.storage.base, ldc: outFeatures)
        return out
    }
}
