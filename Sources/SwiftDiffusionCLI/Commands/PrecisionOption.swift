import ArgumentParser
import Compute

/// `--precision fp32|bf16|auto`, shared by generate, batch, serve, bench unet and bench pipeline.
struct PrecisionOption: ParsableArguments {
    @Option(
        help: """
            Precision of the linear and conv layers: fp32, bf16 (weights stored as bf16, fp32 accumulation; needs \
            AVX512-BF16 or AMX) or auto (bf16 where the processor has it, else fp32).
            """)
    var precision = "fp32"

    /// Checked when the command line is parsed, before any file is opened or model built.
    func validate() throws {
        _ = try resolve()
    }

    /// The precision that runs here; bf16 on a processor without bf16 arithmetic is an error saying so.
    func resolve() throws -> ComputePrecision {
        try Self.resolve(precision)
    }

    static func resolve(_ name: String) throws -> ComputePrecision {
        guard let request = PrecisionRequest(name: name) else { throw ValidationError("--precision must be fp32, bf16 or auto, not '\(name)'") }
        do {
            return try request.resolve()
        } catch let error as PrecisionError {
            throw ValidationError(error.description)
        }
    }

    /// One line naming what runs: `precision: bf16 (oneDNN 2.6.3, avx512_core_bf16 kernels)`.
    static func describe(_ precision: ComputePrecision) -> String {
        switch precision {
        case .fp32:
            "precision: fp32 (\(GEMM.selection.summary); weight products on "
                + "\(GEMM.fp32Backend == .oneDNN ? GEMM.oneDNNSummary + " matmul" : "OpenBLAS"); convolution: \(ConvolutionPaths.summary))"
        case .bf16: "precision: bf16 weights and GEMM inputs, fp32 accumulation (\(GEMM.oneDNNSummary)); Winograd convolutions widen their bf16 kernels and run in fp32"
        }
    }
}
