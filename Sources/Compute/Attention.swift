/// Scaled dot-product attention: fused and tiled, no score matrix in memory.
///
/// Heads stay interleaved in the feature axis (`[B, tokens, heads * headDim]`), exactly as the projections produce
/// them, so no transposes are needed. Work items are (batch, head, block of query rows); each is one call of the
/// dispatched kernel (`Kernels`, `Sources/CKernels/kernels_impl.h`), which streams the keys in blocks with an online
/// softmax (flash-attention style): scores live only in a small tile of the thread's scratch buffer, in registers
/// while they are computed.
public func attention(
    query: Tensor, key: Tensor, value: Tensor, heads: Int, causal: Bool = false, scale: Float? = nil
) -> Tensor {
    precondition(query.rank == 3 && key.rank == 3 && value.rank == 3, "attention needs [B, tokens, features] inputs")
    let (batch, queries, features) = (query.shape[0], query.shape[1], query.shape[2])
    let keys = key.shape[1]
    precondition(key.shape[0] == batch && value.shape[0] == batch, "attention batch sizes differ")
    precondition(key.shape[2] == features, "query and key feature sizes differ: \(query.shape) vs \(key.shape)")
    precondition(value.shape[1] == keys, "key and value token counts differ")
    precondition(features % heads == 0, "\(features) features do not split into \(heads) heads")
    let headDim = features / heads
    let valueFeatures = value.shape[2]
    precondition(valueFeatures % heads == 0, "value features do not split into heads")
    let valueHeadDim = valueFeatures / heads
    let scale = scale ?? 1 / Float(headDim).squareRoot()

    let out = Tensor(uninitializedShape: [batch, queries, valueFeatures])
    if out.count == 0 { return out }
    let kernels = Kernels.current
    let kernel = kernels.attention!
    let blockRows = kernels.attentionBlockRows
    let scratchCount = kernels.attentionScratchFloats!(headDim, valueHeadDim)
    let blocks = (queries + blockRows - 1) / blockRows
    let q = query.storage.base, k = key.storage.base, v = value.storage.base, o = out.storage.base

    // Items are claimed in runs of consecutive items, mostly blocks of one head: the head's keys and values stay in the
    // thread's cache, and the kernel prefetches the next block's query and output rows (a run that crosses into the next
    // head only misses that prefetch). Runs stay short enough to balance.
    let items = batch * heads * blocks
    let pool = ComputePool.current
    let run = max(1, min(8, items / (8 * pool.threadCount)))
    pool.parallelFor((items + run - 1) / run) { claim in
        for item in claim * run..<min(items, (claim + 1) * run) {
            let (pair, block) = item.quotientAndRemainder(dividingBy: blocks)
            let (b, h) = pair.quotientAndRemainder(dividingBy: heads)
            let firstRow = block * blockRows
            kernel(
                q + (b * queries + firstRow) * features + h * headDim,
                k + b * keys * features + h * headDim,
                v + b * keys * valueFeatures + h * valueHeadDim,
                o + (b * queries + firstRow) * valueFeatures + h * valueHeadDim,
                min(blockRows, queries - firstRow), keys, headDim, valueHeadDim,
                features, features, valueFeatures, valueFeatures, scale, firstRow, causal ? 1 : 0,
                ThreadBinding.scratch(count: scratchCount))
        }
    }
    return out
}
