/// Scaled dot-product attention, tiled over query rows.
///
/// Heads stay interleaved in the feature axis (`[B, tokens, heads * headDim]`), exactly as the
/// projections produce them, so no transposes are needed: each head is a strided view that BLAS reads
/// with a leading dimension. Work items are (batch, head, block of query rows); a block's scores
/// `[rows, keys]` live in the thread's scratch buffer, so a 4096-token score matrix never exists whole.
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
    let pool = ComputePool.current
    let blockRows = max(8, min(256, (1 << 17) / max(keys, 1)))
    let blocks = (queries + blockRows - 1) / blockRows
    let q = query.storage.base, k = key.storage.base, v = value.storage.base, o = out.storage.base

    pool.parallelFor(batch * heads * blocks) { item in
        let (pair, block) = item.quotientAndRemainder(dividingBy: blocks)
        let (b, h) = pair.quotientAndRemainder(dividingBy: heads)
        let firstRow = block * blockRows
        let rows = min(blockRows, queries - firstRow)
        // Causal: row i sees keys 0...i, so the block needs keys up to its last row.
        let visibleKeys = causal ? min(keys, firstRow + rows) : keys
        let scores = ThreadBinding.scratch(count: rows * visibleKeys)
        let qBlock = q + (b * queries + firstRow) * features + h * headDim
        let kHead = k + b * keys * features + h * headDim
        let vHead = v + b * keys * valueFeatures + h * valueHeadDim
        GEMM.serial(false, true, rows, visibleKeys, headDim, scale, qBlock, features, kHead, features, 0, scores, visibleKeys)
        for r in 0..<rows {
            let row = scores + r * visibleKeys
            if causal {
                let valid = min(visibleKeys, firstRow + r + 1)
                softmaxRow(row, row, valid)
                (row + valid).update(repeating: 0, count: visibleKeys - valid)
            } else {
                softmaxRow(row, row, visibleKeys)
            }
        }
        let oBlock = o + (b * queries + firstRow) * valueFeatures + h * valueHeadDim
        GEMM.serial(false, false, rows, valueHeadDim, visibleKeys, 1, scores, visibleKeys, vHead, valueFeatures, 0, oBlock, valueFeatures)
    }
    return out
}
