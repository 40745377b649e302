#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The few PyTorch CPU kernels the schedulers' set-up runs, reproduced with their rounding, so betas, alphas
/// and timesteps come out bit-identical to diffusers'.
enum TorchReference {
    /// `torch.linspace(start, end, steps, dtype=torch.float32)` on CPU: float32 `step = (end - start) / (steps - 1)`,
    /// the first half counted up from `start`, the second half down from `end`; GCC contracts each
    /// `start + step * i` into one fused multiply-add.
    static func linspaceFloat32(_ start: Double, _ end: Double, _ steps: Int) -> [Float] {
        let a = Float(start), b = Float(end)
        guard steps > 1 else { return steps == 1 ? [a] : [] }
        let step = (b - a) / Float(steps - 1)
        let halfway = steps / 2
        return (0..<steps).map { i in
            i < halfway ? a.addingProduct(step, Float(i)) : b.addingProduct(-step, Float(steps - i - 1))
        }
    }

    /// `torch.cumprod` of a float32 vector on CPU: the running product is kept in double (`acc_type<float>`).
    static func cumulativeProduct(_ values: [Float]) -> [Float] {
        var running = 1.0
        return values.map { value in
            running *= Double(value)
            return Float(running)
        }
    }
}

/// The NumPy functions diffusers uses to place timesteps and interpolate sigmas, in float64 as NumPy computes them.
enum NumPyReference {
    /// `np.linspace(start, stop, num, endpoint)`: `i * step + start`, with the last element set to `stop`.
    static func linspace(_ start: Double, _ stop: Double, _ num: Int, endpoint: Bool = true) -> [Double] {
        guard num > 0 else { return [] }
        let divisor = endpoint ? num - 1 : num
        let delta = stop - start
        var values: [Double]
        if divisor > 0 {
            let step = delta / Double(divisor)
            values =
                step == 0
                ? (0..<num).map { Double($0) / Double(divisor) * delta + start }
                : (0..<num).map { Double($0) * step + start }
        } else {
            values = (0..<num).map { Double($0) * delta + start }
        }
        if endpoint && num > 1 { values[num - 1] = stop }
        return values
    }

    /// `np.arange(start, stop, step)` for floats: `start + i * (first_next - start)` after NumPy's fill.
    static func arange(_ start: Double, _ stop: Double, _ step: Double) -> [Double] {
        let length = Int(((stop - start) / step).rounded(.up))
        guard length > 0 else { return [] }
        guard length > 1 else { return [start] }
        let delta = (start + step) - start
        return (0..<length).map { i in i == 0 ? start : i == 1 ? start + step : start + Double(i) * delta }
    }

    /// `np.round` / `ndarray.round()`: round half to even.
    static func round(_ value: Double) -> Double { value.rounded(.toNearestOrEven) }

    /// `np.interp(x, xp, fp)` for increasing `xp`: clamps outside, exact values at the knots.
    static func interp(_ x: Double, _ xp: [Double], _ fp: [Double]) -> Double {
        let last = xp.count - 1
        if x >= xp[last] { return fp[last] }
        if x < xp[0] { return fp[0] }
        // Largest j with xp[j] <= x.
        var low = 0, high = last
        while high - low > 1 {
            let mid = (low + high) / 2
            if xp[mid] <= x { low = mid } else { high = mid }
        }
        if xp[low] == x { return fp[low] }
        let slope = (fp[low + 1] - fp[low]) / (xp[low + 1] - xp[low])
        return slope * (x - xp[low]) + fp[low]
    }
}
