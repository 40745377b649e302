import Compute
import Foundation
import GRPCCore
import Models
import SwiftProtobuf

/// The generated message types under shorter names.
typealias WireTensor = Swiftdiffusion_Controlnet_V1_Tensor
typealias WireDType = Swiftdiffusion_Controlnet_V1_DType
typealias ResidualsRequest = Swiftdiffusion_Controlnet_V1_ResidualsRequest
typealias ResidualsReply = Swiftdiffusion_Controlnet_V1_ResidualsReply
typealias ModelsRequest = Swiftdiffusion_Controlnet_V1_ModelsRequest
typealias ModelsReply = Swiftdiffusion_Controlnet_V1_ModelsReply
typealias WorkerService = Swiftdiffusion_Controlnet_V1_ControlNetWorker

/// Element type of tensors on the wire.
public enum WireFloat: String, Sendable {
    case float32, float16

    var dtype: WireDType { self == .float16 ? .float16 : .float32 }
    var bytes: Int { self == .float16 ? 2 : 4 }
}

/// Tensors to and from their wire form (little-endian float32 or IEEE binary16, row-major), with every size
/// checked before anything is allocated.
enum WireFormat {
    /// Rank and per-dimension bounds of any tensor on the wire (the message size bound comes first).
    static let maximumRank = 4
    static let maximumDimension = 1 << 16

    static func encode(_ tensor: Tensor, as float: WireFloat) -> WireTensor {
        var wire = WireTensor()
        wire.shape = tensor.shape.map { UInt32($0) }
        wire.dtype = float.dtype
        wire.data = tensor.withUnsafeBufferPointer { source in
            switch float {
            case .float32:
                return Data(buffer: source)
            case .float16:
                var data = Data(count: source.count * 2)
                data.withUnsafeMutableBytes { raw in
                    let out = raw.bindMemory(to: UInt16.self)
                    for i in source.indices { out[i] = Float16(source[i]).bitPattern.littleEndian }
                }
                return data
            }
        }
        return wire
    }

    /// The tensor, or `RPCError(.invalidArgument)` naming `field` when the shape or the byte count is wrong.
    static func decode(_ wire: WireTensor, field: String) throws -> Tensor {
        guard (1...maximumRank).contains(wire.shape.count) else {
            throw invalid("\(field): rank must be 1 to \(maximumRank), got \(wire.shape.count)")
        }
        guard wire.shape.allSatisfy({ (1...UInt32(maximumDimension)).contains($0) }) else {
            throw invalid("\(field): every dimension must be 1 to \(maximumDimension), got \(wire.shape)")
        }
        let shape = wire.shape.map(Int.init)
        let elementBytes: Int
        switch wire.dtype {
        case .float32: elementBytes = 4
        case .float16: elementBytes = 2
        case .UNRECOGNIZED(let value): throw invalid("\(field): unknown dtype \(value)")
        }
        // Overflow-checked: four dimensions of 65536 overflow Int.
        var bytes = elementBytes
        for dimension in shape {
            let (product, overflow) = bytes.multipliedReportingOverflow(by: dimension)
            guard !overflow, product <= wire.data.count else {
                throw invalid("\(field): shape \(shape) needs more bytes of \(wire.dtype) than the \(wire.data.count) sent")
            }
            bytes = product
        }
        guard bytes == wire.data.count else {
            throw invalid("\(field): shape \(shape) needs \(bytes) bytes of \(wire.dtype), got \(wire.data.count)")
        }
        let count = bytes / elementBytes
        return Tensor(shape: shape) { out in
            wire.data.withUnsafeBytes { raw in
                if elementBytes == 4 {
                    for i in 0..<count { out[i] = Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))) }
                } else {
                    for i in 0..<count {
                        out[i] = Float(Float16(bitPattern: UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))))
                    }
                }
            }
        }
    }

    static func invalid(_ message: String) -> RPCError { RPCError(code: .invalidArgument, message: message) }

    /// How many control-image pixels make one latent pixel: the conditioning embedding halves the image once per
    /// block after its first (diffusers' `ControlNetConditioningEmbedding`; 8 for Stable Diffusion).
    static func controlImageScale(of configuration: ControlNetConfiguration) -> Int {
        1 << max(0, configuration.conditioningEmbeddingOutChannels.count - 1)
    }

    /// The shapes of a ControlNet's down residuals and mid residual for an NHWC `sample`: conv_in's output, each
    /// resnet layer's and each downsampler's (diffusers: every block but the last downsamples), then the mid block.
    static func residualShapes(of configuration: ControlNetConfiguration, sample: [Int]) throws -> (down: [[Int]], mid: [Int]) {
        let unet = configuration.unet
        let channels = unet.blockOutChannels
        let layers = try unet.layersPerBlock.values(count: channels.count, field: "layers_per_block")
        var (height, width) = (sample[1], sample[2])
        var down = [[sample[0], height, width, channels[0]]]
        for (index, channel) in channels.enumerated() {
            down += Array(repeating: [sample[0], height, width, channel], count: layers[index])
            if index < channels.count - 1 {
                height = (height + 1) / 2
                width = (width + 1) / 2
                down.append([sample[0], height, width, channel])
            }
        }
        return (down, [sample[0], height, width, channels[channels.count - 1]])
    }
}
