import ArgumentParser
import Compute
import Foundation

/// `swiftdiffusion bench ops`: GFLOP/s of the engine's GEMM, convolution and attention on SD 1.5 UNet
/// shapes, next to the machine's OpenBLAS peak measured in the same run.
struct OpsBenchmarkCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ops",
        abstract: "GFLOP/s of GEMM, convolution and attention on SD 1.5 shapes vs the machine's BLAS peak."
    )

    @Option(help: "Timed repetitions per case (the median is reported).")
    var repetitions = 5

    @Option(help: "Size of the square GEMM that measures the BLAS peak.")
    var peakSize = 2048

    @Flag(help: "Only a few small cases (a quick smoke run).")
    var quick = false

    @Option(help: "Only cases whose name contains this text (e.g. attention, conv, gemm).")
    var only: String?

    @Flag(help: "Time every case on every kernel path (GEMM and SIMD kernels) this processor can run, in this one run, as ratios to OpenBLAS's own choice.")
    var paths = false

    @Flag(help: "Compare the GEMM back ends on SD 1.5 linear/conv shapes (OpenBLAS sgemm, oneDNN fp32 matmul, oneDNN bf16 matmul), then the fp32 3x3 convolution paths (im2col on either GEMM, oneDNN's convolution).")
    var backends = false

    func validate() throws {
        try Timing.checkRepetitions(repetitions)
    }

    func run() throws {
        if paths { return comparePaths() }
        if backends { return compareBackends() }
        let threads = ComputePool.shared.threadCount
        print("SwiftDiffusion bench ops: \(threads) compute threads, OpenBLAS core \(GEMM.coreName)")
        let report = KernelReport.make(measure: false)
        for line in report.lines { print("  " + line) }
        let fmaPeak = ProcessorFeatures.current.measuredPeakGFLOPS(report.gemm.instructionSet, seconds: quick ? 0.05 : 0.3)
        let peak = measurePeak(size: quick ? 512 : peakSize)
        print("BLAS peak, OpenBLAS sgemm \(peak.size)^3 (the better of two ways, median of \(repetitions)):")
        print("  one call on OpenBLAS's own \(threads) threads:        \(peak.threaded.formatted(1)) GFLOP/s")
        print("  one single-threaded call per core, concurrently: \(peak.perThread.formatted(1)) GFLOP/s")
        print("  peak = \(peak.gflops.formatted(1)) GFLOP/s")
        // The processor's own peak: FMA chains in registers on every core at once would be threads x this.
        let machinePeak = fmaPeak * Double(threads)
        let share = peak.gflops / machinePeak
        print(
            "processor FMA peak (\(report.gemm.instructionSet.rawValue), \(fmaPeak.formatted(1)) GFLOP/s per core x \(threads)): "
                + "\(machinePeak.formatted(1)) GFLOP/s; the BLAS peak is \((100 * share).formatted(0))% of it")
        if share < KernelReport.slowFraction {
            print(
                "warning: the BLAS runs below \(Int(KernelReport.slowFraction * 100))% of the processor's FMA peak: another process may be "
                    + "using the cores, or OpenBLAS \(GEMM.openBLASVersion) lacks kernels for this processor (compare SWIFTDIFFUSION_ISA=avx2 / avx512)")
        }
        print("")

        let table = TablePrinter(columns: [("case", 44), ("shape", 26), ("ms", 9), ("GFLOP/s", 8), ("of peak", 8)])
        table.header()
        var attentionShares: [Double] = []
        for benchmark in cases() where only.map({ benchmark.name.contains($0) }) ?? true {
            let seconds = Timing.median(repetitions: repetitions, benchmark.run)
            let gflops = benchmark.flops / seconds / 1e9
            table.row([
                benchmark.name, benchmark.shape, (seconds * 1000).formatted(2), gflops.formatted(1),
                "\((100 * gflops / peak.gflops).formatted(0))%",
            ])
            if benchmark.name.contains("attention") && !benchmark.name.hasPrefix("gemm") { attentionShares.append(gflops / peak.gflops) }
        }
        if let low = attentionShares.min(), let high = attentionShares.max() {
            print(
                "attention (fused, \(Kernels.selection.instructionSet.rawValue) kernels): \((100 * low).formatted(0))-\((100 * high).formatted(0))% "
                    + "of the measured sgemm peak")
        }
    }

    /// `--paths`: the same cases on each kernel path (baseline .. the processor's best), with OpenBLAS's own choice
    /// of kernels (its processor table) as the baseline column; paths alternate per repetition round, so a busy
    /// moment hits all of them alike.
    private func comparePaths() {
        let threads = ComputePool.shared.threadCount
        let original = GEMM.selection, originalKernels = Kernels.selection
        defer {
            GEMM.restore(original)
            Kernels.restore(originalKernels)
        }
        let best = ProcessorFeatures.current.instructionSet
        let baselineSet = original.openBLASChoice == original.core ? original.instructionSet : GEMM.instructionSet(ofCoreName: original.openBLASChoice)
        let sets = ProcessorFeatures.InstructionSet.allCases.filter { $0 <= best }
        print("SwiftDiffusion bench ops --paths: \(threads) compute threads; \(ProcessorFeatures.current.summary)")
        print("baseline: OpenBLAS \(GEMM.openBLASVersion)'s own choice, core \(original.openBLASChoice) (\(baselineSet.rawValue))")
        let table = TablePrinter(columns: [("case", 44)] + sets.map { ("\($0 == .baseline ? "sse" : $0.rawValue) GF/s", 16) } + [("best / OpenBLAS", 16)])
        table.header()
        for benchmark in cases() where only.map({ benchmark.name.contains($0) }) ?? true {
            var samples: [ProcessorFeatures.InstructionSet: [Double]] = [:]
            for _ in 0..<repetitions {
                for set in sets {
                    GEMM.select(set)
                    Kernels.select(set)
                    benchmark.run()  // warm-up on this path
                    let start = DispatchTime.now().uptimeNanoseconds
                    benchmark.run()
                    samples[set, default: []].append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
                }
            }
            func gflops(_ set: ProcessorFeatures.InstructionSet) -> Double { benchmark.flops / Timing.median(samples[set]!) / 1e9 }
            table.row(
                [benchmark.name] + sets.map { gflops($0).formatted(1) } + ["\((gflops(best) / gflops(baselineSet)).formatted(2))x"])
        }
    }

    /// `--backends`: one single-threaded product per core at once (each core its own output), so every back end
    /// is measured the way the engine runs it (its pool splits products into single-threaded calls); the three
    /// back ends alternate per repetition round.
    private func compareBackends() {
        let pool = ComputePool.shared
        let threads = pool.threadCount
        print("SwiftDiffusion bench ops --backends: \(threads) compute threads, one single-threaded call per thread at once")
        print("  \(GEMM.selection.summary)")
        print("  \(GEMM.oneDNNSummary)")
        let shapes: [(String, Int, Int, Int)] =
            quick
            ? [("attention projection, 16x16 latent", 256, 320, 320), ("3x3 conv panel, 320 ch", 256, 320, 2880)]
            : [
                ("attention q/k/v/out, 64x64 latent", 4096, 320, 320), ("GEGLU in, 64x64 latent", 4096, 2560, 320),
                ("feed-forward out, 64x64 latent", 4096, 320, 1280), ("3x3 conv panel, 320 ch", 1024, 320, 2880),
                ("attention q/k/v/out, 32x32 latent", 1024, 640, 640), ("3x3 conv panel, 640 ch", 1024, 640, 5760),
                ("3x3 conv panel, 1280 ch", 256, 1280, 11520), ("text encoder MLP, 2 x 77 tokens", 154, 3072, 768),
            ]
        let table = TablePrinter(columns: [("case", 36), ("m x n x k", 18), ("OpenBLAS GF/s", 14), ("oneDNN f32 GF/s", 16), ("oneDNN bf16 GF/s", 17), ("f32: oneDNN/OpenBLAS", 21), ("bf16 / best f32", 16)])
        table.header()
        for (name, m, n, k) in shapes where only.map({ name.contains($0) }) ?? true {
            let a = randomTensor([m, k]), weight = randomTensor([n, k], seed: 2)
            let outputs = (0..<threads).map { _ in Tensor.zeros([m, n]) }
            let bf16 = LayerWeight.make(weight, precision: .bf16)
            let runs: [() -> Void] = [
                { pool.parallelFor(threads) { GEMM.serialLinearProduct(a, weight: weight, into: outputs[$0], oneDNN: false) } },
                { pool.parallelFor(threads) { GEMM.serialLinearProduct(a, weight: weight, into: outputs[$0], oneDNN: true) } },
                { pool.parallelFor(threads) { i in GEMM.serialLinearProduct(a, weight: bf16, into: outputs[i]) } },
            ]
            var samples: [[Double]] = Array(repeating: [], count: runs.count)
            for run in runs { run() }  // warm-up: primitives created, pages touched
            for _ in 0..<repetitions {
                for (index, run) in runs.enumerated() { samples[index].append(Timing.seconds(run)) }
            }
            let flops = Double(threads) * 2 * Double(m) * Double(n) * Double(k)
            let gflops = samples.map { flops / Timing.median($0) / 1e9 }
            table.row([
                name, "\(m)x\(n)x\(k)", gflops[0].formatted(1), gflops[1].formatted(1), gflops[2].formatted(1),
                "\((gflops[1] / gflops[0]).formatted(2))x", "\((gflops[2] / max(gflops[0], gflops[1])).formatted(2))x",
            ])
        }
        compareConvolutionPaths()
    }

    /// The fp32 3x3 convolutions of an SD 1.5 UNet step (batch 2) through `conv2d` on each path, on the whole pool
    /// as the engine runs them: im2col panels on OpenBLAS, im2col panels on oneDNN's matmul, oneDNN's brgemm
    /// convolution (kernel blocking included), Winograd F(4x4, 3x3) on the default fp32 back end (kernel transform
    /// included). The paths alternate per repetition round.
    private func compareConvolutionPaths() {
        let originalBackend = GEMM.fp32Backend, originalMode = ConvolutionPaths.mode
        defer {
            GEMM.setFP32Backend(originalBackend)
            ConvolutionPaths.setMode(originalMode)
        }
        print("")
        print("convolution: \(ConvolutionPaths.summary)")
        let shapes: [(String, Int, Int, Int)] =
            quick
            ? [("conv3x3 64 -> 64 @32x32", 32, 64, 64)]
            : [
                ("conv3x3 320 -> 320 @64x64", 64, 320, 320), ("conv3x3 960 -> 320 @64x64", 64, 960, 320),
                ("conv3x3 640 -> 640 @32x32", 32, 640, 640), ("conv3x3 1280 -> 1280 @32x32", 32, 1280, 1280),
                ("conv3x3 1280 -> 1280 @16x16", 16, 1280, 1280), ("conv3x3 640 -> 640 @16x16", 16, 640, 640),
                ("conv3x3 1280 -> 1280 @8x8", 8, 1280, 1280), ("conv3x3 128 -> 128 @256x256", 256, 128, 128),
            ]
        let table = TablePrinter(columns: [
            ("3x3 conv, batch 2", 30), ("positions", 10), ("im2col+OpenBLAS ms", 19), ("im2col+oneDNN ms", 17), ("oneDNN conv ms", 15),
            ("Winograd ms", 12), ("oneDNN conv / best im2col", 26), ("Winograd / best other", 21),
        ])
        table.header()
        for (name, size, cin, cout) in shapes where only.map({ name.contains($0) }) ?? true {
            let x = randomTensor([2, size, size, cin]), w = randomTensor([cout, 3, 3, cin]), bias = randomTensor([cout])
            let paths: [(GEMM.FP32Backend, ConvolutionPaths.Mode)] = [
                (.openBLAS, .im2col), (.oneDNN, .im2col), (.oneDNN, .oneDNN), (originalBackend, .winograd),
            ]
            let runs = paths.map { path in
                {
                    GEMM.setFP32Backend(path.0)
                    ConvolutionPaths.setMode(path.1)
                    _ = conv2d(x, weight: w, bias: bias, stride: 1, padding: .uniform(1))
                }
            }
            var samples: [[Double]] = Array(repeating: [], count: runs.count)
            for run in runs { run() }  // warm-up
            for _ in 0..<repetitions {
                for (index, run) in runs.enumerated() { samples[index].append(Timing.seconds(run)) }
            }
            let ms = samples.map { 1000 * Timing.median($0) }
            table.row([
                name, "\(2 * size * size)", ms[0].formatted(2), ms[1].formatted(2), ms[2].formatted(2), ms[3].formatted(2),
                "\((min(ms[0], ms[1]) / ms[2]).formatted(2))x faster", "\((ms[0..<3].min()! / ms[3]).formatted(2))x faster",
            ])
        }
    }

    struct Case {
        let name: String
        let shape: String
        let flops: Double
        let run: () -> Void
    }

    private func measurePeak(size: Int) -> (size: Int, threaded: Double, perThread: Double, gflops: Double) {
        let threads = ComputePool.shared.threadCount
        let a = randomTensor([size, size]), b = randomTensor([size, size])
        let outputs = (0..<threads).map { _ in Tensor.zeros([size, size]) }
        let flops = 2 * Double(size * size * size)
        let threadedSeconds = Timing.median(repetitions: repetitions) {
            GEMM.openBLASReference(a, b, into: outputs[0], threads: threads)
        }
        let perThreadSeconds = Timing.median(repetitions: repetitions) {
            GEMM.openBLASReferencePerThread(a, b, into: outputs)
        }
        let threaded = flops / threadedSeconds / 1e9
        let perThread = Double(threads) * flops / perThreadSeconds / 1e9
        return (size, threaded, perThread, max(threaded, perThread))
    }

    private func cases() -> [Case] {
        var list: [Case] = []
        // GEMMs of the SD 1.5 UNet at 512x512 (batch 1): conv im2col shapes, projections, feed-forward.
        let gemms: [(String, Int, Int, Int)] =
            quick
            ? [("gemm 1024x320x2880", 1024, 320, 2880)]
            : [
                ("gemm: conv3x3 320 @64x64 as im2col", 4096, 320, 2880),
                ("gemm: conv3x3 640 @32x32 as im2col", 1024, 640, 5760),
                ("gemm: conv3x3 1280 @16x16 as im2col", 256, 1280, 11520),
                ("gemm: attention projection 320", 4096, 320, 320),
                ("gemm: GEGLU 320 -> 2560", 4096, 2560, 320),
                ("gemm: feed-forward 1280 -> 320", 4096, 320, 1280),
                ("gemm: cross-attention K/V 768 -> 320", 77, 320, 768),
            ]
        for (name, m, n, k) in gemms {
            let a = randomTensor([m, k]), b = randomTensor([k, n])
            list.append(Case(name: name, shape: "\(m)x\(n)x\(k)", flops: 2 * Double(m * n * k)) { _ = matmul(a, b) })
        }
        // Convolutions through the engine's conv2d (the path `ConvolutionPaths` picks), NHWC, batch 1.
        let convs: [(String, Int, Int, Int, Int, Int)] =
            quick
            ? [("conv3x3 64 @32x32", 32, 64, 64, 3, 1)]
            : [
                ("conv3x3 320 -> 320 @64x64", 64, 320, 320, 3, 1),
                ("conv3x3 640 -> 640 @32x32", 32, 640, 640, 3, 1),
                ("conv3x3 1280 -> 1280 @16x16", 16, 1280, 1280, 3, 1),
                ("conv3x3 stride 2 320 @64x64", 64, 320, 320, 3, 2),
                ("conv1x1 640 -> 320 @64x64", 64, 640, 320, 1, 1),
            ]
        for (name, size, cin, cout, k, stride) in convs {
            let x = randomTensor([1, size, size, cin])
            let w = randomTensor([cout, k, k, cin]), bias = randomTensor([cout])
            let outSize = (size + 2 * (k / 2) - k) / stride + 1
            let flops = 2 * Double(outSize * outSize * cout * k * k * cin)
            list.append(Case(name: name, shape: "\(size)x\(size)x\(cin) k\(k) s\(stride)", flops: flops) {
                _ = conv2d(x, weight: w, bias: bias, stride: stride, padding: .uniform(k / 2))
            })
        }
        // Attention: SD 1.5's first level (4096 tokens, 8 heads x 40) self and cross, batch 1.
        let attentions: [(String, Int, Int, Int, Int)] =
            quick
            ? [("self-attention 1024 tok 8x40", 1024, 1024, 8, 40)]
            : [
                ("self-attention 4096 tok, 8 heads x 40", 4096, 4096, 8, 40),
                ("self-attention 1024 tok, 8 heads x 80", 1024, 1024, 8, 80),
                ("cross-attention 4096 x 77 tok, 8 x 40", 4096, 77, 8, 40),
            ]
        for (name, queries, keys, heads, dim) in attentions {
            let q = randomTensor([1, queries, heads * dim])
            let k = randomTensor([1, keys, heads * dim]), v = randomTensor([1, keys, heads * dim])
            let flops = 4 * Double(queries * keys * heads * dim)
            list.append(Case(name: name, shape: "\(queries)x\(keys) h\(heads) d\(dim)", flops: flops) {
                _ = attention(query: q, key: k, value: v, heads: heads)
            })
        }
        return list
    }
}

/// A tensor of uniform values in [-1, 1) from a fixed-seed generator.
func randomTensor(_ shape: [Int], seed: UInt64 = 0x5eed) -> Tensor {
    var state = seed &+ UInt64(shape.reduce(1, *))
    return Tensor(shape: shape) { buffer in
        for i in buffer.indices {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            buffer[i] = Float(Int64(bitPattern: state) >> 40) / Float(1 << 23)
        }
    }
}
