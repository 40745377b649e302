import CKernels
import Foundation

/// The engine's own SIMD kernels (elementwise functions, softmax, GEGLU, group/layer norm, fp16/bf16 widening and
/// fused attention), written once in C (`Sources/CKernels`) and compiled for AVX-512, AVX2 + FMA and baseline SSE2
/// into the same binary. One set is chosen at start-up from the processor's features (`ProcessorFeatures`), so the
/// binary is built for baseline x86-64 and runs on any x86-64 processor, at full width where the processor has it.
/// `SWIFTDIFFUSION_ISA=avx512|avx2|baseline` forces a set (clamped to what the processor can run), as it does for GEMM.
public enum Kernels {
    /// The instruction set of the kernels in use, and why.
    public struct Selection: Sendable, Equatable {
        /// `.baseline`, `.avx2` or `.avx512` (AVX512-BF16 processors run the AVX-512 kernels).
        public var instructionSet: ProcessorFeatures.InstructionSet
        /// "cpuid", "SWIFTDIFFUSION_ISA" or "select".
        public var origin: String

        /// `avx512 (16 floats per vector, chosen from CPUID)`.
        public var summary: String {
            let chosen = origin == "cpuid" ? "chosen from CPUID" : "forced by \(origin)"
            return "\(instructionSet.rawValue) (\(instructionSet.vectorWidth) floats per vector, \(chosen))"
        }
    }

    /// The kernel set for an instruction set: AVX512-BF16 adds nothing these kernels use.
    static func kernelSet(_ set: ProcessorFeatures.InstructionSet) -> ProcessorFeatures.InstructionSet {
        min(set, .avx512)
    }

    private static func table(for set: ProcessorFeatures.InstructionSet) -> UnsafePointer<sd_kernel_table>? {
        switch kernelSet(set) {
        case .baseline: sd_kernel_table_for(Int32(SD_ISA_BASELINE))
        case .avx2: sd_kernel_table_for(Int32(SD_ISA_AVX2))
        case .avx512, .avx512bf16: sd_kernel_table_for(Int32(SD_ISA_AVX512))
        }
    }

    /// The best set this build has kernels for that is at most `set` and that the processor can run.
    private static func runnable(_ set: ProcessorFeatures.InstructionSet) -> ProcessorFeatures.InstructionSet {
        var target = kernelSet(min(set, ProcessorFeatures.current.instructionSet))
        while target > .baseline, table(for: target) == nil { target = ProcessorFeatures.InstructionSet.allCases[target.index - 1] }
        return target
    }

    private final class SelectionBox: @unchecked Sendable {
        let lock = NSLock()
        var selection = Selection(instructionSet: .baseline, origin: "cpuid")
    }
    private static let box = SelectionBox()

    private static let configureOnce: Void = {
        var target = ProcessorFeatures.current.instructionSet
        var origin = "cpuid"
        if let requested = ProcessInfo.processInfo.environment["SWIFTDIFFUSION_ISA"],
            let forced = ProcessorFeatures.InstructionSet(name: requested)
        {
            target = forced
            origin = "SWIFTDIFFUSION_ISA"
        }
        install(Selection(instructionSet: runnable(target), origin: origin))
    }()

    private static func install(_ selection: Selection) {
        box.lock.lock()
        defer { box.lock.unlock() }
        sd_kernels_set(table(for: selection.instructionSet))
        box.selection = selection
    }

    /// The kernels in use.
    public static var selection: Selection {
        _ = configureOnce
        box.lock.lock()
        defer { box.lock.unlock() }
        return box.selection
    }

    /// Switches to the kernels of `set` (clamped to what the processor can run) and returns the selection. For tests
    /// and benchmarks that compare paths; no kernel may be running meanwhile.
    @discardableResult
    public static func select(_ set: ProcessorFeatures.InstructionSet) -> Selection {
        _ = configureOnce
        install(Selection(instructionSet: runnable(set), origin: "select"))
        return selection
    }

    /// Goes back to an earlier selection (after `select`).
    public static func restore(_ selection: Selection) {
        _ = configureOnce
        install(selection)
    }

    /// The table in use.
    @inline(__always)
    static var current: sd_kernel_table {
        _ = configureOnce
        return sd_kernels_current().pointee
    }

    /// The kernels of one instruction set, whatever is selected (for tests comparing the variants); nil when the
    /// processor cannot run them or this build has none.
    public static func variant(_ set: ProcessorFeatures.InstructionSet) -> Variant? {
        guard kernelSet(set) <= ProcessorFeatures.current.instructionSet, let table = table(for: set) else { return nil }
        return Variant(table: table.pointee)
    }

    /// One instruction set's kernels on plain buffers.
    public struct Variant: @unchecked Sendable {
        let table: sd_kernel_table

        public var name: String { String(cString: table.name) }

        public enum Unary: Int32, CaseIterable, Sendable {
            case exp, sigmoid, silu, geluErf, geluTanh, tanh
        }

        public func unary(_ function: Unary, _ x: [Float], alpha: Float = 1) -> [Float] {
            var y = [Float](repeating: 0, count: x.count)
            table.unary!(function.rawValue, x, &y, x.count, alpha)
            return y
        }

        public func softmax(_ x: [Float], rows: Int, width: Int) -> [Float] {
            var y = [Float](repeating: 0, count: x.count)
            table.softmaxRows!(x, &y, rows, width)
            return y
        }

        public func geglu(_ x: [Float], rows: Int, half: Int) -> [Float] {
            var y = [Float](repeating: 0, count: rows * half)
            table.gegluRows!(x, &y, rows, half)
            return y
        }

        public func channelSums(_ x: [Float], rows: Int, width: Int) -> [Double] {
            var sums = [Double](repeating: 0, count: width)
            table.channelSums!(x, rows, width, &sums)
            return sums
        }

        public func channelSquaredDeviations(_ x: [Float], rows: Int, width: Int, mean: [Float]) -> [Double] {
            var sums = [Double](repeating: 0, count: width)
            table.channelSquaredDeviations!(x, rows, width, mean, &sums)
            return sums
        }

        public func scaleShift(_ x: [Float], rows: Int, width: Int, scale: [Float], shift: [Float], silu: Bool) -> [Float] {
            var y = [Float](repeating: 0, count: x.count)
            table.scaleShiftRows!(x, &y, rows, width, scale, shift, silu ? 1 : 0)
            return y
        }

        public func layerNorm(_ x: [Float], rows: Int, width: Int, gamma: [Float], beta: [Float], epsilon: Float) -> [Float] {
            var y = [Float](repeating: 0, count: x.count)
            table.layerNormRows!(x, &y, rows, width, gamma, beta, epsilon)
            return y
        }

        public func halfToFloat(_ bits: [UInt16]) -> [Float] {
            var y = [Float](repeating: 0, count: bits.count)
            table.halfToFloat!(bits, &y, bits.count)
            return y
        }

        public func bfloat16ToFloat(_ bits: [UInt16]) -> [Float] {
            var y = [Float](repeating: 0, count: bits.count)
            table.bfloat16ToFloat!(bits, &y, bits.count)
            return y
        }

        /// Attention of `[queries, heads * headDim]` against `[keys, heads * headDim]`, one batch, serially.
        public func attention(
            query: [Float], key: [Float], value: [Float], queries: Int, keys: Int, heads: Int, headDim: Int, causal: Bool
        ) -> [Float] {
            let features = heads * headDim
            var out = [Float](repeating: 0, count: queries * features)
            let blockRows = table.attentionBlockRows
            var scratch = [Float](repeating: 0, count: table.attentionScratchFloats!(headDim, headDim))
            let scale = 1 / Float(headDim).squareRoot()
            query.withUnsafeBufferPointer { q in
                key.withUnsafeBufferPointer { k in
                    value.withUnsafeBufferPointer { v in
                        out.withUnsafeMutableBufferPointer { o in
                            for h in 0..<heads {
                                for first in stride(from: 0, to: queries, by: blockRows) {
                                    table.attention!(
                                        q.baseAddress! + first * features + h * headDim, k.baseAddress! + h * headDim,
                                        v.baseAddress! + h * headDim, o.baseAddress! + first * features + h * headDim,
                                        min(blockRows, queries - first), keys, headDim, headDim, features, features, features,
                                        features, scale, first, causal ? 1 : 0, &scratch)
                                }
                            }
                        }
                    }
                }
            }
            return out
        }
    }
}

extension ProcessorFeatures.InstructionSet {
    fileprivate var index: Int { Self.allCases.firstIndex(of: self)! }
}

// MARK: - Tensor-level entry points used by the ops

extension Kernels {
    /// Applies an elementwise function to every element, split over the pool.
    static func unary(_ function: Variant.Unary, _ x: Tensor, alpha: Float = 1) -> Tensor {
        let out = Tensor(uninitializedShape: x.shape)
        let src = x.storage.base, dst = out.storage.base
        let kernel = current.unary!
        ComputePool.current.parallelRanges(x.count, minimumChunk: 1 << 14) { range in
            kernel(function.rawValue, src + range.lowerBound, dst + range.lowerBound, range.count, alpha)
        }
        return out
    }

    /// Widens `count` IEEE binary16 values at `source` (any alignment) into `destination`, on the calling thread
    /// (weights load on threads other than the compute pool's).
    public static func widenHalf(_ source: UnsafeRawPointer, into destination: UnsafeMutablePointer<Float>, count: Int) {
        current.halfToFloat!(source, destination, count)
    }

    /// Widens `count` bfloat16 values at `source` (any alignment) into `destination`, on the calling thread.
    public static func widenBFloat16(_ source: UnsafeRawPointer, into destination: UnsafeMutablePointer<Float>, count: Int) {
        current.bfloat16ToFloat!(source, destination, count)
    }
}
