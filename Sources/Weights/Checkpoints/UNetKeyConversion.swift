/// The block structure of an original-layout (LDM `openaimodel.UNetModel`) UNet, read from which
/// `input_blocks` / `output_blocks` indices exist and what they hold, so the index arithmetic fits any
/// number of levels and layers per level (SD 1.x/2.x: 4 levels x 2, SDXL: 3 levels x 2, tiny test models).
///
/// `input_blocks.0` is `conv_in`; then per level `layers` entries `[ResBlock, (SpatialTransformer)]` and,
/// except for the last level, one `[Downsample]` entry (`input_blocks.N.0.op`). `output_blocks` hold per
/// level (deepest first) `layers + 1` entries `[ResBlock, (SpatialTransformer), (Upsample)]`; the last
/// entry of every level but the shallowest ends with `Upsample` (`.1.conv` or `.2.conv`).
public struct LDMUNetLayout: Sendable, Equatable {
    public enum InputSlot: Sendable, Equatable {
        case convIn
        case layer(block: Int, layer: Int)
        case downsampler(block: Int)
    }

    public struct OutputSlot: Sendable, Equatable {
        public var block: Int
        public var layer: Int
    }

    /// What each `input_blocks` index holds (array index = LDM index).
    public let inputSlots: [InputSlot]
    /// Which diffusers up block and layer each `output_blocks` index is (array index = LDM index).
    public let outputSlots: [OutputSlot]
    /// Resnets per down block (diffusers `layers_per_block`).
    public let downLayers: [Int]
    /// Resnets per up block (diffusers: `layers_per_block + 1`, deepest block first).
    public let upLayers: [Int]

    /// Reads the layout from UNet keys without the `model.diffusion_model.` prefix.
    public init(keys: [String], source: String = "<keys>") throws {
        func fail(_ detail: String) -> CheckpointError { .invalidLayout(path: source, component: "unet", detail: detail) }

        var inputs: [Int: Bool] = [:]  // index -> is a downsampler
        var outputs: [Int: Bool] = [:]  // index -> ends with an upsampler
        for key in keys {
            let name = DottedName(key)
            guard name.parts.count >= 4, let index = name.int(at: 1) else { continue }
            switch name.parts[0] {
            case "input_blocks":
                inputs[index, default: false] = inputs[index, default: false] || (name.parts[2] == "0" && name.parts[3] == "op")
            case "output_blocks":
                let upsampler = (name.parts[2] == "1" || name.parts[2] == "2") && name.parts[3] == "conv"
                outputs[index, default: false] = outputs[index, default: false] || upsampler
            default:
                continue
            }
        }
        guard let lastInput = inputs.keys.max(), inputs.count == lastInput + 1, inputs[0] == false else {
            throw fail(
                "input_blocks must be numbered 0, 1, 2, ... with input_blocks.0 the input convolution; found indices "
                    + "\(inputs.keys.sorted())")
        }
        guard let lastOutput = outputs.keys.max(), outputs.count == lastOutput + 1 else {
            throw fail("output_blocks must be numbered 0, 1, 2, ...; found indices \(outputs.keys.sorted())")
        }

        var slots: [InputSlot] = [.convIn]
        var downLayers = [0]
        for index in stride(from: 1, through: lastInput, by: 1) {
            if inputs[index] == true {
                guard downLayers[downLayers.count - 1] > 0 else {
                    throw fail("input_blocks.\(index) is a downsampler but its level has no resnet")
                }
                slots.append(.downsampler(block: downLayers.count - 1))
                downLayers.append(0)
            } else {
                slots.append(.layer(block: downLayers.count - 1, layer: downLayers[downLayers.count - 1]))
                downLayers[downLayers.count - 1] += 1
            }
        }
        guard downLayers.last ?? 0 > 0 else { throw fail("the deepest level has no resnet after the last downsampler") }

        var outputSlots: [OutputSlot] = []
        var upLayers = [0]
        for index in 0...lastOutput {
            outputSlots.append(OutputSlot(block: upLayers.count - 1, layer: upLayers[upLayers.count - 1]))
            upLayers[upLayers.count - 1] += 1
            if outputs[index] == true {
                guard index != lastOutput else { throw fail("the last output block (\(index)) has an upsampler") }
                upLayers.append(0)
            }
        }
        guard upLayers.count == downLayers.count else {
            throw fail(
                "\(downLayers.count) down levels (input_blocks) but \(upLayers.count) up levels (output_blocks, counted "
                    + "by their upsamplers)")
        }
        for (block, count) in upLayers.enumerated() where count != downLayers[downLayers.count - 1 - block] + 1 {
            throw fail(
                "up block \(block) has \(count) output_blocks but mirrors a down level with "
                    + "\(downLayers[downLayers.count - 1 - block]) resnets (expected one more)")
        }
        self.inputSlots = slots
        self.outputSlots = outputSlots
        self.downLayers = downLayers
        self.upLayers = upLayers
    }
}

/// Original-layout UNet keys -> diffusers `UNet2DConditionModel` names.
public enum UNetKeyConversion {
    /// Modules outside the blocks (module path -> diffusers module path). `label_emb` is SDXL's added
    /// (text_time) embedding MLP.
    public static let topLevel: [String: String] = [
        "input_blocks.0.0": "conv_in",
        "time_embed.0": "time_embedding.linear_1",
        "time_embed.2": "time_embedding.linear_2",
        "label_emb.0.0": "add_embedding.linear_1",
        "label_emb.0.2": "add_embedding.linear_2",
        "out.0": "conv_norm_out",
        "out.2": "conv_out",
    ]

    /// LDM `ResBlock` submodule -> diffusers `ResnetBlock2D` submodule.
    public static let resnet: [String: String] = [
        "in_layers.0": "norm1",
        "in_layers.2": "conv1",
        "emb_layers.1": "time_emb_proj",
        "out_layers.0": "norm2",
        "out_layers.3": "conv2",
        "skip_connection": "conv_shortcut",
    ]

    /// `SpatialTransformer` submodules, named as diffusers' `Transformer2DModel` names them (kept as they are).
    public static let transformer: Set<String> = ["norm", "proj_in", "proj_out"]
    /// `BasicTransformerBlock` submodules under `transformer_blocks.N.` (identical in both layouts).
    public static let transformerBlock: Set<String> = [
        "attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0",
        "attn2.to_q", "attn2.to_k", "attn2.to_v", "attn2.to_out.0",
        "ff.net.0.proj", "ff.net.2", "norm1", "norm2", "norm3",
    ]

    /// Converts UNet keys given without the `model.diffusion_model.` prefix.
    public static func convert(_ keys: [String], source: String = "<keys>") throws -> KeyConversion {
        let layout = try LDMUNetLayout(keys: keys, source: source)
        var result = KeyConversion()
        for key in keys {
            if let name = diffusersName(key, layout: layout) {
                result.recipes[name] = .rename(key)
            } else {
                result.unconverted.append(key)
            }
        }
        result.unconverted.sort()
        return result
    }

    /// The diffusers name of one key, or nil when no rule applies.
    static func diffusersName(_ key: String, layout: LDMUNetLayout) -> String? {
        guard let (module, parameter) = splitParameter(key), parameter == "weight" || parameter == "bias" else { return nil }
        if let mapped = topLevel[module] { return "\(mapped).\(parameter)" }
        let name = DottedName(key)
        guard name.parts.count >= 4 else { return nil }
        let rest = name.joined(from: 3)  // after `input_blocks.<i>.<j>.` / `output_blocks.<i>.<j>.`
        switch name.parts[0] {
        case "input_blocks":
            guard let index = name.int(at: 1), let sub = name.int(at: 2), index < layout.inputSlots.count else { return nil }
            switch layout.inputSlots[index] {
            case .convIn:
                return nil  // only input_blocks.0.0.{weight,bias}, handled by the top-level table
            case .downsampler(let block):
                return sub == 0 && (rest == "op.weight" || rest == "op.bias")
                    ? "down_blocks.\(block).downsamplers.0.conv.\(parameter)" : nil
            case .layer(let block, let layer):
                if sub == 0 { return resnetName(rest).map { "down_blocks.\(block).resnets.\(layer).\($0)" } }
                if sub == 1 { return transformerName(rest).map { "down_blocks.\(block).attentions.\(layer).\($0)" } }
                return nil
            }
        case "middle_block":
            let rest = name.joined(from: 2)  // after `middle_block.<j>.`
            switch name.parts[1] {
            case "0": return resnetName(rest).map { "mid_block.resnets.0.\($0)" }
            case "1": return transformerName(rest).map { "mid_block.attentions.0.\($0)" }
            case "2": return resnetName(rest).map { "mid_block.resnets.1.\($0)" }
            default: return nil
            }
        case "output_blocks":
            guard let index = name.int(at: 1), let sub = name.int(at: 2), index < layout.outputSlots.count else { return nil }
            let slot = layout.outputSlots[index]
            let upsampler = "up_blocks.\(slot.block).upsamplers.0.conv.\(parameter)"
            switch sub {
            case 0: return resnetName(rest).map { "up_blocks.\(slot.block).resnets.\(slot.layer).\($0)" }
            case 1 where rest.hasPrefix("conv."): return rest == "conv.\(parameter)" ? upsampler : nil
            case 1: return transformerName(rest).map { "up_blocks.\(slot.block).attentions.\(slot.layer).\($0)" }
            case 2: return rest == "conv.\(parameter)" ? upsampler : nil
            default: return nil
            }
        default:
            return nil
        }
    }

    private static func resnetName(_ rest: String) -> String? {
        guard let (module, parameter) = splitParameter(rest), let mapped = resnet[module] else { return nil }
        return "\(mapped).\(parameter)"
    }

    private static func transformerName(_ rest: String) -> String? {
        guard let (module, _) = splitParameter(rest) else { return nil }
        if transformer.contains(module) { return rest }
        let name = DottedName(module)
        guard name.parts.count >= 3, name.parts[0] == "transformer_blocks", name.int(at: 1) != nil,
            transformerBlock.contains(name.joined(from: 2))
        else { return nil }
        return rest
    }
}
