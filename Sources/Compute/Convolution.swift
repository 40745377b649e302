/// 2-D convolution on channels-last activations: Winograd F(4x4, 3x3) for 3x3 stride-1 layers (`WinogradConvolution`,
/// fp32 or bf16 kernels), oneDNN's brgemm convolution for other fp32 layers where it runs (`OneDNNConvolution`); else
/// im2col panels fed to GEMM. `ConvolutionPaths` says which runs where.
import Foundation
import Synchronization

/// Which path each convolution takes (bf16 kernels: Winograd or im2col).
public enum ConvolutionPaths {
    public enum Mode: String, Sendable, CaseIterable {
        /// Winograd for 3x3 stride-1 layers from `WinogradConvolution.minimumPositions` output positions and
        /// `minimumChannels` channels; oneDNN's brgemm convolution for the other layers from
        /// `OneDNNConvolution.minimumPositions`; im2col + GEMM below.
        case automatic
        /// im2col + GEMM only (`SWIFTDIFFUSION_CONV=im2col`).
        case im2col
        /// oneDNN's brgemm convolution at every size where it runs, no Winograd (`SWIFTDIFFUSION_CONV=onednn`).
        case oneDNN = "onednn"
        /// Winograd for every 3x3 stride-1 layer; the others as `automatic` (`SWIFTDIFFUSION_CONV=winograd`).
        case winograd
    }

    /// The mode in use: `SWIFTDIFFUSION_CONV`'s (automatic when unset or unknown) unless `setMode` changed it.
    public static var mode: Mode { Mode.allCases[state.load(ordering: .relaxed)] }

    /// Sets `mode` (tests and benchmarks that compare paths; no convolution may be running meanwhile).
    public static func setMode(_ mode: Mode) { state.store(Mode.allCases.firstIndex(of: mode)!, ordering: .relaxed) }

    private static let state = Atomic<Int>(
        Mode.allCases.firstIndex(of: ProcessInfo.processInfo.environment["SWIFTDIFFUSION_CONV"].flatMap(Mode.init(rawValue:)) ?? .automatic)!)

    /// What `bench ops` and `generate --verbose` print.
    public static var summary: String {
        let winograd = "Winograd F(4x4, 3x3)"
        switch mode {
        case .automatic:
            return "\(winograd) for 3x3 stride 1 from \(WinogradConvolution.minimumPositions) positions and \(WinogradConvolution.minimumChannels) channels; "
                + "\(OneDNNConvolution.summary); im2col + GEMM below"
        case .im2col: return "im2col + GEMM (SWIFTDIFFUSION_CONV=im2col)"
        case .oneDNN: return "\(OneDNNConvolution.available ? "oneDNN brgemm at every size" : OneDNNConvolution.summary), else im2col + GEMM (SWIFTDIFFUSION_CONV=onednn)"
        case .winograd: return "\(winograd) for every 3x3 stride-1 layer (SWIFTDIFFUSION_CONV=winograd); \(OneDNNConvolution.summary); im2col + GEMM below"
        }
    }

    /// Whether a layer goes to Winograd.
    static func winograd(positions: Int, inChannels: Int, outChannels: Int, kernelHeight: Int, kernelWidth: Int, stride: Int) -> Bool {
        guard WinogradConvolution.applies(kernelHeight: kernelHeight, kernelWidth: kernelWidth, stride: stride),
            positions > 0 && inChannels > 0 && outChannels > 0
        else { return false }
        switch mode {
        case .im2col, .oneDNN: return false
        case .winograd: return true
        case .automatic:
            return positions >= WinogradConvolution.minimumPositions
                && min(inChannels, outChannels) >= WinogradConvolution.minimumChannels
        }
    }
}

/// Zero padding on each side of the spatial axes.
public struct Padding2D: Sendable, Equatable {
    public var top: Int, bottom: Int, left: Int, right: Int

    public init(top: Int, bottom: Int, left: Int, right: Int) {
        (self.top, self.bottom, self.left, self.right) = (top, bottom, left, right)
    }

    /// The same padding on all four sides (PyTorch's `padding=p`).
    public static func uniform(_ p: Int) -> Padding2D { Padding2D(top: p, bottom: p, left: p, right: p) }
    public static let none = Padding2D.uniform(0)
}

/// Converts a PyTorch convolution kernel `[out, in, kh, kw]` to the engine's `[out, kh, kw, in]`
/// (each output channel's weights contiguous, in im2col column order).
public func channelsLastKernel(_ kernel: Tensor) -> Tensor {
    precondition(kernel.rank == 4, "a conv kernel is [out, in, kh, kw], got \(kernel.shape)")
    let (outputs, inputs, taps) = (kernel.shape[0], kernel.shape[1], kernel.shape[2] * kernel.shape[3])
    if taps == 1 { return kernel.reshaped([outputs, kernel.shape[2], kernel.shape[3], inputs]).copy() }
    let result = Tensor(uninitializedShape: [outputs, kernel.shape[2], kernel.shape[3], inputs])
    let perOutput = inputs * taps
    if perOutput == 0 { return result }
    // Each output channel's `[in, taps]` block transposed to `[taps, in]`, one target row at a time.
    let source = kernel.storage.base, target = result.storage.base
    ComputePool.current.parallelRanges(outputs, minimumChunk: max(1, 65536 / perOutput)) { range in
        for output in range {
            let from = source + output * perOutput, to = target + output * perOutput
            for tap in 0..<taps {
                let row = to + tap * inputs
                for input in 0..<inputs { row[input] = from[input * taps + tap] }
            }
        }
    }
    return result
}

/// `channelsLastKernel` in the kernel's own storage: each output channel's `[in, kh, kw]` block reordered to
/// `[kh, kw, in]` through a copy of that one block, and the storage returned as `[out, kh, kw, in]`. For a kernel only
/// its caller holds, just written (a LoRA's convolution factor as it loads, still in cache): no second buffer, no second
/// pass over memory.
public func channelsLastKernelInPlace(_ kernel: Tensor) -> Tensor {
    precondition(kernel.rank == 4, "a conv kernel is [out, in, kh, kw], got \(kernel.shape)")
    let (outputs, inputs, taps) = (kernel.shape[0], kernel.shape[1], kernel.shape[2] * kernel.shape[3])
    reorderChannelsLast(kernel.storage.base, outputs: outputs, inputs: inputs, taps: taps)
    return kernel.reshaped([outputs, kernel.shape[2], kernel.shape[3], inputs])
}

/// The inverse of `channelsLastKernel`: `[out, kh, kw, in]` back to PyTorch's `[out, in, kh, kw]`.
public func pytorchKernel(_ kernel: Tensor) -> Tensor {
    precondition(kernel.rank == 4, "expected [out, kh, kw, in], got \(kernel.shape)")
    return permute(kernel, [0, 3, 1, 2])
}

/// Convolution of `x` `[N, H, W, Cin]` with `weight` `[Cout, KH, KW, Cin]` (see `channelsLastKernel`)
/// plus an optional bias `[Cout]`. Returns `[N, OH, OW, Cout]`.
public func conv2d(
    _ x: Tensor, weight: Tensor, bias: Tensor?, stride: Int = 1, padding: Padding2D = .none, upsample: Int = 1
) -> Tensor {
    conv2d(x, weight: .fp32(weight), bias: bias, stride: stride, padding: padding, upsample: upsample)
}

/// `conv2d` with an fp32 or bf16 kernel (`LayerWeight`): on the im2col path the bf16 kernel multiplies bf16-rounded
/// im2col panels with fp32 accumulation; on the Winograd path it is widened to fp32 in the kernel transform and the
/// activations stay fp32.
///
/// `upsample` > 1 convolves the nearest-neighbour upsampling of `x` by that factor (`upsampleNearest`) without
/// making it: the im2col panels read each upsampled pixel from its source pixel. The result is the same; the
/// upsampled tensor (4x the input for a factor of 2, the largest activation of a VAE decoder) is never allocated.
///
/// `accumulatingInto` (the output's shape) makes the convolution add its result, bias included, to that tensor and
/// return it, instead of allocating a new one: a resnet block's second convolution adds itself to the residual.
public func conv2d(
    _ x: Tensor, weight layerWeight: LayerWeight, bias: Tensor?, stride: Int = 1, padding: Padding2D = .none, upsample: Int = 1,
    accumulatingInto target: Tensor? = nil
) -> Tensor {
    let kernelShape = layerWeight.shape
    precondition(x.rank == 4 && kernelShape.count == 4, "conv2d needs NHWC input and [O, KH, KW, I] kernel, got \(x.shape), \(kernelShape)")
    precondition(upsample >= 1, "upsample factor must be positive")
    let (batch, height, width, inChannels) = (x.shape[0], x.shape[1] * upsample, x.shape[2] * upsample, x.shape[3])
    let (outChannels, kernelHeight, kernelWidth) = (kernelShape[0], kernelShape[1], kernelShape[2])
    precondition(kernelShape[3] == inChannels, "conv2d kernel expects \(kernelShape[3]) input channels, input has \(inChannels)")
    precondition(stride >= 1, "stride must be positive")
    let outHeight = (height + padding.top + padding.bottom - kernelHeight) / stride + 1
    let outWidth = (width + padding.left + padding.right - kernelWidth) / stride + 1
    precondition(outHeight > 0 && outWidth > 0, "conv2d output would be empty for input \(x.shape)")
    let outShape = [batch, outHeight, outWidth, outChannels]
    if let target { precondition(target.shape == outShape, "conv2d accumulates into \(target.shape), its output is \(outShape)") }
    if let bias { precondition(bias.count == outChannels, "conv2d bias has \(bias.count) elements, expected \(outChannels)") }
    let out = target ?? Tensor(uninitializedShape: outShape)
    let rows = batch * outHeight * outWidth
    let depth = kernelHeight * kernelWidth * inChannels
    let src = x.storage.base, dst = out.storage.base
    let pool = ComputePool.current
    let geometry = ConvGeometry(
        height: height, width: width, inChannels: inChannels, outHeight: outHeight, outWidth: outWidth,
        kernelHeight: kernelHeight, kernelWidth: kernelWidth, stride: stride, padding: padding, upsample: upsample)
    if ConvolutionPaths.winograd(
            positions: rows, inChannels: inChannels, outChannels: outChannels, kernelHeight: kernelHeight, kernelWidth: kernelWidth,
            stride: stride)
    {
        WinogradConvolution.run(
            src, batch: batch, geometry: geometry, kernel: layerWeight, bias: bias?.storage.base, accumulate: target != nil, into: dst, pool: pool)
        return out
    }
    if case .fp32(let kernel) = layerWeight, kernelHeight * kernelWidth > 1, OneDNNConvolution.wanted(positions: rows),
        OneDNNConvolution.run(
            src, batch: batch, geometry: geometry, kernel: kernel, bias: bias?.storage.base, accumulate: target != nil, into: dst, pool: pool)
    {
        return out
    }
    var beta: Float = target == nil ? 0 : 1
    if let bias {
        if target == nil {
            fillRows(dst, rows: rows, with: bias.storage.base, width: outChannels)
        } else {
            addRows(dst, rows: rows, row: bias.storage.base, width: outChannels)
        }
        beta = 1
    }

    if kernelHeight == 1 && kernelWidth == 1 && stride == 1 && padding == .none && upsample == 1 {
        layerWeight.multiply(m: rows, a: src, lda: inChannels, beta: beta, c: dst, ldc: outChannels)
        return out
    }

    // Panels of output rows: each is expanded into an im2col block in the thread's scratch buffer and
    // multiplied by the kernel with one single-threaded GEMM. OpenBLAS repacks the panel anyway, so panels
    // are sized for GEMM efficiency (at least 128 rows) rather than to fit L2; a 4 Mi-float cap bounds the
    // scratch memory per thread.
    let targetRows = max(128, min(1024, (1 << 22) / max(depth, 1)))
    let panelRows = max(8, min(targetRows, (rows + pool.threadCount - 1) / pool.threadCount))
    let panels = (rows + panelRows - 1) / panelRows
    pool.parallelFor(panels) { panel in
        let first = panel * panelRows
        let count = min(panelRows, rows - first)
        let columns = ThreadBinding.scratch(count: count * depth)
        geometry.im2col(src, rows: first..<(first + count), into: columns)
        layerWeight.serialMultiply(m: count, a: columns, lda: depth, beta: beta, c: dst + first * outChannels, ldc: outChannels)
    }
    return out
}

struct ConvGeometry {
    /// The input's size as the convolution sees it (after the virtual upsampling).
    let height: Int, width: Int, inChannels: Int, outHeight: Int, outWidth: Int
    let kernelHeight: Int, kernelWidth: Int, stride: Int, padding: Padding2D
    /// Nearest-neighbour upsampling factor of the source (1: none): input pixel (y, x) is source pixel (y / f, x / f).
    var upsample = 1

    /// Writes the receptive fields of output positions `rows` (flattened n, oy, ox) as rows of `columns`.
    @inline(__always)
    func im2col(_ source: UnsafePointer<Float>, rows: Range<Int>, into columns: UnsafeMutablePointer<Float>) {
        let depth = kernelHeight * kernelWidth * inChannels
        let perImage = outHeight * outWidth
        let sourceWidth = width / upsample
        for row in rows {
            let (n, position) = row.quotientAndRemainder(dividingBy: perImage)
            let (oy, ox) = position.quotientAndRemainder(dividingBy: outWidth)
            var target = columns + (row - rows.lowerBound) * depth
            let image = source + n * (height / upsample) * sourceWidth * inChannels
            for kh in 0..<kernelHeight {
                let iy = oy * stride + kh - padding.top
                if iy < 0 || iy >= height {
                    target.update(repeating: 0, count: kernelWidth * inChannels)
                    target += kernelWidth * inChannels
                    continue
                }
                let x0 = ox * stride - padding.left
                if upsample == 1 && x0 >= 0 && x0 + kernelWidth <= width {
                    // The whole kernel row is inside the image: one contiguous copy.
                    target.update(from: image + (iy * width + x0) * inChannels, count: kernelWidth * inChannels)
                    target += kernelWidth * inChannels
                    continue
                }
                let sourceRow = image + (iy / upsample) * sourceWidth * inChannels
                for kw in 0..<kernelWidth {
                    let ix = x0 + kw
                    if ix < 0 || ix >= width {
                        target.update(repeating: 0, count: inChannels)
                    } else {
                        target.update(from: sourceRow + (ix / upsample) * inChannels, count: inChannels)
                    }
                    target += inChannels
                }
            }
        }
    }
}
