import Compute
import Models

/// One LoRA as a request uses it: resolved against the model, with separate strengths for the UNet and
/// the text encoder(s) (A1111's `<lora:name:unet:te>`, diffusers' `set_adapters` weights).
public struct LoRAApplication: Sendable {
    public let lora: ResolvedLoRA
    public let unetWeight: Float
    public let textEncoderWeight: Float

    public init(_ lora: ResolvedLoRA, weight: Float = 1) {
        self.init(lora, unetWeight: weight, textEncoderWeight: weight)
    }

    public init(_ lora: ResolvedLoRA, unetWeight: Float, textEncoderWeight: Float) {
        self.lora = lora
        self.unetWeight = unetWeight
        self.textEncoderWeight = textEncoderWeight
    }

    func strength(for component: LoRAComponent) -> Float {
        component == .unet ? unetWeight : textEncoderWeight
    }
}

/// Applies LoRAs to a model's layers, in one of two modes.
///
/// - **merged**: `W += Σ_i w_i (α_i / r_i) up_i · down_i` in place (one GEMM per layer and LoRA), after
///   saving a copy of each touched weight; `restore()` copies the pristine weights back, so the model is
///   bitwise what it was (no drift across requests).
/// - **runtime**: the low-rank product is added to the layer's output, `W` untouched; what batching
///   requests with different LoRAs needs.
///
/// The saved copies are kept after `restore()` (they still equal the weights), so later requests that patch
/// the same layers only pay a memory copy, not an allocation: the patcher trades one extra copy of the
/// patched weights in memory for cheap repeated patching. `releaseSavedCopies()` frees them.
///
/// A patcher serves one model; it must not be shared by requests running at the same time.
public final class LoRAPatcher: @unchecked Sendable {
    /// One LoRA's product for one weight: `scale · up · down`, the factors as the file stores them.
    typealias Update = (up: StoredTensor, down: StoredTensor, scale: Float)

    /// Originals of the weights ever patched, by weight storage.
    private var saved: [ObjectIdentifier: (weight: Tensor, copy: Tensor)] = [:]
    /// Weights currently holding merged deltas.
    private var merged: Set<ObjectIdentifier> = []
    private var runtimeLayers: [ObjectIdentifier: PatchableLayer] = [:]

    public init() {}

    /// True while merged weights or runtime adapters are applied.
    public var isPatched: Bool { !merged.isEmpty || !runtimeLayers.isEmpty }

    /// Number of weights currently holding merged deltas.
    public var mergedLayerCount: Int { merged.count }

    /// Bytes held by saved original weights.
    public var savedBytes: Int { saved.values.reduce(0) { $0 + $1.copy.count * MemoryLayout<Float>.stride } }

    /// Merges the LoRAs into the weights in place. Layers holding bf16 weights (bf16 models) get the LoRA as a runtime
    /// adapter instead: rounding a delta into bf16 would lose it, and the bitwise restore needs fp32 originals.
    ///
    /// Each weight's deltas are added in request order, as one product of the stacked factors where that pays (`stacks`),
    /// else one product per LoRA; weights are patched side by side, whole, one per thread, except a product too large to
    /// keep the threads balanced, which is split over them.
    public func merge(_ applications: [LoRAApplication]) {
        var order: [ObjectIdentifier] = []
        var updates: [ObjectIdentifier: [Update]] = [:]
        for application in applications {
            for entry in application.lora.entries {
                let strength = application.strength(for: entry.component)
                // Rank 0 is refused when a LoRA loads; an entry without rows has nothing to add either way.
                if strength == 0 || entry.down.count == 0 || entry.down.shape[0] == 0 { continue }
                if entry.layer.holdsBF16 {
                    // bf16 weights are not updated in place (a merge would round the delta to bf16 and the bitwise
                    // restore would need fp32 originals): the LoRA runs beside the layer in fp32 instead.
                    attach(entry, strength: strength)
                    continue
                }
                let weight = entry.layer.weight
                let key = ObjectIdentifier(weight.storage)
                if saved[key] == nil { saved[key] = (weight, weight.copy()) }
                merged.insert(key)
                if updates[key] == nil { order.append(key) }
                let flatDown = entry.down.reshaped([entry.down.shape[0], entry.down.count / entry.down.shape[0]])
                updates[key, default: []].append((entry.up, flatDown, strength * entry.scale))
            }
        }
        // Every product splits by this pool's thread count, whichever thread patches it (the same bits every run).
        let pool = ComputePool.current
        func patch(_ key: ObjectIdentifier) {
            let weight = saved[key]!.weight
            let list = updates[key]!
            if list.count > 1 && Self.stacks(list, rows: weight.shape[0]) {
                // Several LoRAs on one weight: one GEMM of their summed rank reads and writes the weight once, not once
                // per LoRA, and runs at a better GEMM shape.
                let (up, down) = Self.stacked(list)
                addMatmul(into: weight, up, down, scale: 1, pool: pool)
            } else {
                // Factors stored as fp16 or bf16 are widened here, into short-lived copies still in cache for the product.
                for update in list { addMatmul(into: weight, update.up.float32(), update.down.float32(), scale: update.scale, pool: pool) }
            }
        }
        // Whole weights per thread, largest first (the pool hands them out as threads free up), so one merge is one
        // parallel region instead of one per weight (on a small model, a hundred thread wake-ups cost more than the
        // products). A product too large for that to stay balanced (over half a thread's share of the total) is split
        // over the threads by GEMM instead, before the others.
        let cost = Dictionary(uniqueKeysWithValues: order.map { key in
            (key, updates[key]!.reduce(0) { $0 + 2 * Double($1.up.count) * Double($1.down.shape[1]) })
        })
        let share = cost.values.reduce(0, +) / Double(2 * pool.threadCount)
        let whole = order.filter { cost[$0]! <= share || cost[$0]! < 4e6 }.sorted { cost[$0]! > cost[$1]! }
        let wholeSet = Set(whole)
        for key in order where !wholeSet.contains(key) { patch(key) }
        pool.parallelFor(whole.count) { i in patch(whole[i]) }
    }

    /// Whether several LoRAs on one weight of `rows` outputs go in as one product of their stacked factors. Stacking
    /// copies the factors (`[Σr, in]` read and written once more) to read and write the weight once instead of once per
    /// LoRA (`[out, in]` each time): it pays where the weight is the larger, Σr < out x (LoRAs - 1). An SD 1.5 layer (320
    /// to 1280 outputs) with two rank-64 LoRAs stacks; a small model's (32 to 128 outputs) does not, where copying the
    /// factors cost more than the product (`perf` of `bench workflow --workloads 0C/2L` on the embedded model).
    static func stacks(_ updates: [Update], rows: Int) -> Bool {
        updates.reduce(0) { $0 + $1.up.shape[1] } < rows * (updates.count - 1)
    }

    /// `[s_1 up_1 | s_2 up_2 | ...]` `[out, Σr]` and `[down_1; down_2; ...]` `[Σr, in]` in fp32: their product is
    /// `Σ_i s_i up_i down_i`.
    static func stacked(_ updates: [Update]) -> (up: Tensor, down: Tensor) {
        let rows = updates[0].up.shape[0], columns = updates[0].down.shape[1]
        let rank = updates.reduce(0) { $0 + $1.up.shape[1] }
        let up = Tensor(uninitializedShape: [rows, rank]), down = Tensor(uninitializedShape: [rank, columns])
        up.withUnsafeMutableBufferPointer { stackedUp in
            down.withUnsafeMutableBufferPointer { stackedDown in
                var offset = 0
                for update in updates {
                    let r = update.up.shape[1]
                    precondition(update.up.shape[0] == rows && update.down.shape == [r, columns], "LoRA factors of one weight differ in shape")
                    update.up.float32().withUnsafeBufferPointer { source in
                        for row in 0..<rows {
                            for j in 0..<r { stackedUp[row * rank + offset + j] = update.scale * source[row * r + j] }
                        }
                    }
                    update.down.widen(into: stackedDown.baseAddress! + offset * columns)
                    offset += r
                }
            }
        }
        return (up, down)
    }

    /// Copies every merged weight back from its saved original (bitwise restore).
    public func restore() {
        let keys = Array(merged)
        ComputePool.current.parallelFor(keys.count) { i in
            if let entry = saved[keys[i]] { copyInPlace(entry.weight, from: entry.copy) }
        }
        merged.removeAll()
    }

    /// Frees the saved originals (only while nothing is merged).
    public func releaseSavedCopies() {
        precondition(merged.isEmpty, "restore() before releasing the saved weights")
        saved.removeAll()
    }

    /// Adds the LoRAs as runtime adapters (weights untouched).
    public func attachRuntime(_ applications: [LoRAApplication]) {
        for application in applications {
            for entry in application.lora.entries {
                let strength = application.strength(for: entry.component)
                if strength == 0 { continue }
                attach(entry, strength: strength)
            }
        }
    }

    private func attach(_ entry: ResolvedLoRA.Entry, strength: Float) {
        // The layer multiplies by the factors at every step: fp32 copies for as long as they are attached.
        let adapter = LowRankAdapter(down: entry.down.float32(), up: entry.up.float32(), scale: strength * entry.scale)
        switch entry.layer {
        case .linear(let layer):
            layer.adapters.append(adapter)
            runtimeLayers[ObjectIdentifier(layer)] = entry.layer
        case .conv(let layer):
            layer.adapters.append(adapter)
            runtimeLayers[ObjectIdentifier(layer)] = entry.layer
        }
    }

    /// Removes every runtime adapter this patcher attached.
    public func detachRuntime() {
        for (_, layer) in runtimeLayers {
            switch layer {
            case .linear(let layer): layer.adapters.removeAll()
            case .conv(let layer): layer.adapters.removeAll()
            }
        }
        runtimeLayers.removeAll()
    }

    /// Undoes everything: merged weights and runtime adapters.
    public func reset() {
        restore()
        detachRuntime()
    }
}
