/// A tensor kept in the number format its file stores: fp32, or fp16 / bf16 kept narrow (half the memory of fp32) and
/// widened where it is used.
///
/// LoRA factors are held this way: a cached LoRA takes the memory of its file instead of twice that, loading one does
/// not write every value out again as fp32, and a merge widens each factor into a short-lived fp32 copy right before
/// its product (`float32()`), where the copy is still in cache.
///
/// The elements live in memory another object owns (a file's read buffer, or an allocation of their own) and keeps
/// alive; copies share it. Row-major, like `Tensor`.
public struct StoredTensor: @unchecked Sendable {
    /// The element formats kept as stored.
    public enum Format: String, Sendable, Equatable {
        case float32, float16, bfloat16

        /// Bytes per element.
        public var byteSize: Int { self == .float32 ? 4 : 2 }
    }

    public let shape: [Int]
    public let format: Format
    private let base: UnsafeMutableRawPointer
    private let owner: AnyObject

    /// `count` elements of `format` at `bytes` (aligned to the element size), which `owner` keeps valid.
    public init(format: Format, shape: [Int], bytes: UnsafeMutableRawPointer, owner: AnyObject) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in shape \(shape)")
        precondition(Int(bitPattern: bytes) % format.byteSize == 0, "\(format) elements must be aligned to \(format.byteSize) bytes")
        self.shape = shape
        self.format = format
        self.base = bytes
        self.owner = owner
    }

    /// An fp32 tensor, sharing its memory.
    public init(_ tensor: Tensor) {
        self.init(format: .float32, shape: tensor.shape, bytes: UnsafeMutableRawPointer(tensor.storage.base), owner: tensor.storage)
    }

    /// `shape` elements of `format`, copied from `source` (their bytes, any alignment) into an allocation of their own.
    public init(copying source: UnsafeRawBufferPointer, format: Format, shape: [Int]) {
        let count = shape.reduce(1, *)
        precondition(source.count == count * format.byteSize, "\(source.count) bytes for \(count) \(format) elements")
        let storage = TensorStorage(count: (source.count + 3) / 4)
        let bytes = UnsafeMutableRawPointer(storage.baseAddress)
        if let from = source.baseAddress { bytes.copyMemory(from: from, byteCount: source.count) }
        self.init(format: format, shape: shape, bytes: bytes, owner: storage)
    }

    public var count: Int { shape.reduce(1, *) }
    public var rank: Int { shape.count }
    /// Bytes the elements take.
    public var byteCount: Int { count * format.byteSize }
    /// Where the elements start (two stored tensors with the same address share memory).
    public var baseAddress: UnsafeRawPointer { UnsafeRawPointer(base) }

    /// The same elements viewed with another shape (no copy).
    public func reshaped(_ newShape: [Int]) -> StoredTensor {
        precondition(newShape.reduce(1, *) == count, "cannot reshape \(shape) to \(newShape)")
        return StoredTensor(format: format, shape: newShape, bytes: base, owner: owner)
    }

    /// The elements as fp32: for fp32, a tensor sharing this memory (no copy; do not write to it); for fp16 and bf16, a
    /// new tensor widened exactly.
    public func float32() -> Tensor {
        switch format {
        case .float32:
            Tensor(
                shape: shape,
                storage: TensorStorage(borrowing: base.assumingMemoryBound(to: Float.self), count: count, owner: owner))
        case .float16, .bfloat16:
            Tensor(shape: shape) { widen(into: $0.baseAddress!) }
        }
    }

    /// Writes the `count` elements as fp32 to `destination` (exact for every format).
    public func widen(into destination: UnsafeMutablePointer<Float>) {
        switch format {
        case .float32: destination.update(from: base.assumingMemoryBound(to: Float.self), count: count)
        case .float16: Kernels.widenHalf(base, into: destination, count: count)
        case .bfloat16: Kernels.widenBFloat16(base, into: destination, count: count)
        }
    }

    /// Element `index` (row-major) as fp32.
    public func element(_ index: Int) -> Float {
        precondition(index >= 0 && index < count, "element \(index) out of range for \(shape)")
        switch format {
        case .float32: return base.load(fromByteOffset: 4 * index, as: Float.self)
        case .float16:
            var value: Float = 0
            Kernels.widenHalf(base + 2 * index, into: &value, count: 1)
            return value
        case .bfloat16: return Float(bitPattern: UInt32(base.load(fromByteOffset: 2 * index, as: UInt16.self)) << 16)
        }
    }

    /// The index of the first NaN or infinity, or nil when every element is finite.
    public func firstNonFinite() -> Int? {
        // An exponent field of all ones (NaN or infinity) is the only one that carries into the top bit when its lowest
        // bit is added to it; OR-ing those sums is an integer reduction the compiler vectorises even for SSE2.
        func carries<Bits: FixedWidthInteger & UnsignedInteger>(_: Bits.Type, exponent: Bits, lowest: Bits) -> Bool {
            let bits = UnsafeBufferPointer(start: base.assumingMemoryBound(to: Bits.self), count: count)
            var carried: Bits = 0
            for pattern in bits { carried |= (pattern & exponent) &+ lowest }
            return carried >> (Bits.bitWidth - 1) != 0
        }
        let suspect =
            switch format {
            case .float32: carries(UInt32.self, exponent: 0x7F80_0000, lowest: 0x0080_0000)
            case .float16: carries(UInt16.self, exponent: 0x7C00, lowest: 0x0400)
            case .bfloat16: carries(UInt16.self, exponent: 0x7F80, lowest: 0x0080)
            }
        guard suspect else { return nil }
        return (0..<count).first { !element($0).isFinite }
    }

    /// A convolution kernel `[out, in, kh, kw]` reordered channels-last, `[out, kh, kw, in]`, in its own memory (see
    /// `channelsLastKernelInPlace(_:)`): only for a tensor whose memory nobody else reads.
    public func channelsLastKernelInPlace() -> StoredTensor {
        precondition(rank == 4, "a conv kernel is [out, in, kh, kw], got \(shape)")
        let (outputs, inputs, taps) = (shape[0], shape[1], shape[2] * shape[3])
        switch format {
        case .float32: reorderChannelsLast(base.assumingMemoryBound(to: UInt32.self), outputs: outputs, inputs: inputs, taps: taps)
        case .float16, .bfloat16:
            reorderChannelsLast(base.assumingMemoryBound(to: UInt16.self), outputs: outputs, inputs: inputs, taps: taps)
        }
        return reshaped([outputs, shape[2], shape[3], inputs])
    }
}

/// Reorders each output channel's `[in, taps]` block of `base` to `[taps, in]` through a copy of that one block.
func reorderChannelsLast<Element>(_ base: UnsafeMutablePointer<Element>, outputs: Int, inputs: Int, taps: Int) {
    let perOutput = inputs * taps
    if taps == 1 || inputs == 1 || perOutput == 0 { return }
    let block = UnsafeMutablePointer<Element>.allocate(capacity: perOutput)
    defer { block.deallocate() }
    for output in 0..<outputs {
        let channel = base + output * perOutput
        block.update(from: channel, count: perOutput)
        for tap in 0..<taps {
            let row = channel + tap * inputs
            for input in 0..<inputs { row[input] = block[input * taps + tap] }
        }
    }
}
