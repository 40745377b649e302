import Compute
import ParityTesting
import XCTest

/// Every op against PyTorch goldens (tools/parity/make_op_goldens.py), fp32, max abs error printed. The ops built on
/// the dispatched SIMD kernels run on every kernel path this processor can run (`forEachKernelPath`).
final class OpParityTests: XCTestCase {
    private func golden(_ name: String) throws -> (Golden, Attributes) {
        let golden = try Golden("ops/\(name)")
        return (golden, try Attributes(golden))
    }

    func testLinear() throws {
        for name in ["linear_bias", "linear_nobias"] {
            let (g, attrs) = try golden(name)
            let bias = try attrs.bool("bias") ? try g.param("bias") : nil
            assertClose(linear(try g.input("x"), weight: try g.param("weight"), bias: bias), try g.output("y"), tolerance: 1e-5, name)
        }
    }

    func testMatmul() throws {
        let (g, _) = try golden("matmul")
        assertClose(matmul(try g.input("a"), try g.input("b")), try g.output("y"), tolerance: 1e-5, "matmul")
        let (batched, _) = try golden("matmul_batched")
        let a = try batched.input("a"), b = try batched.input("b")
        let y = batchedMatmul(a.reshaped([6, 5, 4]), b.reshaped([6, 4, 6]))
        assertClose(y.reshaped([2, 3, 5, 6]), try batched.output("y"), tolerance: 1e-5, "matmul_batched")
    }

    /// On every convolution path: im2col + GEMM, oneDNN's brgemm convolution (where this processor's oneDNN has it;
    /// else the fallback), and Winograd F(4x4, 3x3) for the 3x3 stride-1 layers.
    func testConvolutions() throws {
        let suiteMode = ConvolutionPaths.mode
        defer { ConvolutionPaths.setMode(suiteMode) }
        for mode in [ConvolutionPaths.Mode.im2col, .oneDNN, .winograd] {
            ConvolutionPaths.setMode(mode)
            let runs = WinogradConvolution.completedRuns
            try convolutionGoldens(path: mode == .oneDNN && !OneDNNConvolution.available ? "oneDNN fallback" : mode.rawValue)
            XCTAssertEqual(WinogradConvolution.completedRuns > runs, mode == .winograd, "Winograd ran in \(mode) mode")
        }
    }

    private func convolutionGoldens(path: String) throws {
        let cases = [
            "conv2d_1x1", "conv2d_3x3_s1_p1", "conv2d_3x3_s2_p1", "conv2d_3x3_nonsquare", "conv2d_3x3_s2_p1_nonsquare",
            "conv2d_3x3_batch2", "conv2d_3x3_s2_asympad",
        ]
        for name in cases {
            let (g, attrs) = try golden(name)
            var padding = Padding2D.uniform(try attrs.int("padding"))
            if attrs.has("pre_pad") {
                // F.pad order: (left, right, top, bottom), added to the conv's own padding.
                let pre = try attrs.ints("pre_pad")
                padding = Padding2D(
                    top: padding.top + pre[2], bottom: padding.bottom + pre[3], left: padding.left + pre[0],
                    right: padding.right + pre[1])
            }
            let y = conv2d(
                nchwToNHWC(try g.input("x")), weight: channelsLastKernel(try g.param("weight")), bias: try g.param("bias"),
                stride: try attrs.int("stride"), padding: padding)
            assertClose(y, nchwToNHWC(try g.output("y")), tolerance: 2e-5, "\(name) [\(path)]")
        }
    }

    func testGroupNorm() throws {
        try forEachKernelPath { path in
            for name in ["group_norm_g4_c16_eps1e5", "group_norm_g4_c16_eps1e6", "group_norm_g32_c64_eps1e5", "group_norm_g32_c64_eps1e6", "group_norm_silu"] {
                let (g, attrs) = try golden(name)
                let x = try g.input("x")
                let y = groupNorm(
                    x.rank == 4 ? nchwToNHWC(x) : x, groups: try attrs.int("num_groups"), weight: try g.param("weight"),
                    bias: try g.param("bias"), epsilon: try attrs.float("eps"), fusedSiLU: name.hasSuffix("silu"))
                let expected = try g.output("y")
                assertClose(y, expected.rank == 4 ? nchwToNHWC(expected) : expected, tolerance: 2e-5, "\(name) [\(path)]")
            }
        }
    }

    func testLayerNorm() throws {
        try forEachKernelPath { path in
            let (affine, affineAttrs) = try golden("layer_norm_affine")
            assertClose(
                layerNorm(try affine.input("x"), weight: try affine.param("weight"), bias: try affine.param("bias"), epsilon: try affineAttrs.float("eps")),
                try affine.output("y"), tolerance: 1e-5, "layer_norm_affine [\(path)]")
            let (plain, plainAttrs) = try golden("layer_norm_noaffine")
            assertClose(
                layerNorm(try plain.input("x"), weight: nil, bias: nil, epsilon: try plainAttrs.float("eps")), try plain.output("y"),
                tolerance: 1e-5, "layer_norm_noaffine [\(path)]")
        }
    }

    func testActivations() throws {
        try forEachKernelPath { path in
            let cases: [(String, (Tensor) -> Tensor)] = [
                ("silu", { silu($0) }), ("gelu_erf", { gelu($0) }), ("gelu_tanh", { gelu($0, approximation: .tanh) }),
                ("quick_gelu", { quickGELU($0) }),
            ]
            for (name, op) in cases {
                let (g, _) = try golden(name)
                let x = try g.input("x"), expected = try g.output("y")
                assertClose(op(x), expected, tolerance: 1e-5, "\(name) [\(path)]")
            }
        }
    }

    func testGEGLU() throws {
        try forEachKernelPath { path in
            let (g, _) = try golden("geglu")
            let projected = linear(try g.input("x"), weight: try g.param("proj.weight"), bias: try g.param("proj.bias"))
            assertClose(geglu(projected), try g.output("y"), tolerance: 1e-5, "geglu [\(path)]")
        }
    }

    func testSoftmax() throws {
        try forEachKernelPath { path in
            let (g, _) = try golden("softmax_lastdim")
            assertClose(softmax(try g.input("x")), try g.output("y"), tolerance: 1e-6, "softmax [\(path)]")
        }
    }

    func testScaledDotProductAttention() throws {
        try forEachKernelPath { path in
            for name in ["sdpa_self", "sdpa_cross", "sdpa_causal", "sdpa_long"] {
                let (g, attrs) = try golden(name)
                // Goldens hold [B, heads, tokens, dim]; the engine keeps heads interleaved: [B, tokens, heads * dim].
                let interleave = { (t: Tensor) in
                    permute(t, [0, 2, 1, 3]).reshaped([t.shape[0], t.shape[2], t.shape[1] * t.shape[3]])
                }
                let heads = try attrs.int("heads")
                let y = attention(
                    query: interleave(try g.input("q")), key: interleave(try g.input("k")), value: interleave(try g.input("v")),
                    heads: heads, causal: try attrs.bool("is_causal"))
                assertClose(y, interleave(try g.output("y")), tolerance: 5e-6, "\(name) [\(path)]")
            }
        }
    }

    func testEmbedding() throws {
        let (g, _) = try golden("embedding")
        let ids = try g.input("ids")
        let y = embedding(ids.scalars.map { Int($0) }, table: try g.param("weight"))
        assertClose(y.reshaped(ids.shape + [y.shape[1]]), try g.output("y"), tolerance: 0, "embedding")
    }

    func testUpsampleAndConcat() throws {
        let (up, _) = try golden("upsample_nearest2x")
        assertClose(upsampleNearest(nchwToNHWC(try up.input("x"))), nchwToNHWC(try up.output("y")), tolerance: 0, "upsample_nearest2x")
        let (cat, _) = try golden("concat_channels")
        let y = concat([nchwToNHWC(try cat.input("a")), nchwToNHWC(try cat.input("b"))], axis: 3)
        assertClose(y, nchwToNHWC(try cat.output("y")), tolerance: 0, "concat_channels")
    }

    func testTimestepEmbedding() throws {
        for name in ["timestep_embedding_flip_shift0", "timestep_embedding_noflip_shift1", "timestep_embedding_odd_dim", "timestep_embedding_sd320"] {
            let (g, attrs) = try golden(name)
            let y = timestepEmbedding(
                try g.input("timesteps").scalars, dim: try attrs.int("embedding_dim"), flipSinToCos: try attrs.bool("flip_sin_to_cos"),
                downscaleFreqShift: try attrs.float("downscale_freq_shift"))
            assertClose(y, try g.output("y"), tolerance: 1e-4, name)
        }
    }
}
