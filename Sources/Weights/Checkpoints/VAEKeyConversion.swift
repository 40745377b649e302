/// Original-layout (LDM `autoencoder.AutoencoderKL`) VAE keys -> diffusers `AutoencoderKL` names.
///
/// The decoder's `up.N` blocks are numbered from the lowest resolution's *opposite* end: LDM `decoder.up.0`
/// is the last block to run (full resolution), diffusers `decoder.up_blocks.0` the first. The mid-block
/// attention uses 1x1 convolutions `q/k/v/proj_out` where diffusers has linear `to_q/to_k/to_v/to_out.0`.
public enum VAEKeyConversion {
    /// Modules with fixed names (module path -> diffusers module path).
    public static let topLevel: [String: String] = [
        "encoder.conv_in": "encoder.conv_in",
        "encoder.norm_out": "encoder.conv_norm_out",
        "encoder.conv_out": "encoder.conv_out",
        "decoder.conv_in": "decoder.conv_in",
        "decoder.norm_out": "decoder.conv_norm_out",
        "decoder.conv_out": "decoder.conv_out",
        "quant_conv": "quant_conv",
        "post_quant_conv": "post_quant_conv",
    ]

    /// LDM `ResnetBlock` submodule -> diffusers `ResnetBlock2D` submodule.
    public static let resnet: [String: String] = [
        "norm1": "norm1", "conv1": "conv1", "norm2": "norm2", "conv2": "conv2", "nin_shortcut": "conv_shortcut",
    ]

    /// LDM `AttnBlock` submodule -> diffusers `Attention` submodule; all but `norm` are 1x1 convolutions.
    public static let attention: [String: String] = [
        "norm": "group_norm", "q": "to_q", "k": "to_k", "v": "to_v", "proj_out": "to_out.0",
    ]

    /// Converts VAE keys given without the `first_stage_model.` prefix.
    public static func convert(_ keys: [String], source: String = "<keys>") throws -> KeyConversion {
        var encoderLevels = Set<Int>()
        var decoderLevels = Set<Int>()
        for key in keys {
            let name = DottedName(key)
            guard name.parts.count > 2, let index = name.int(at: 2) else { continue }
            if name.parts[0] == "encoder" && name.parts[1] == "down" { encoderLevels.insert(index) }
            if name.parts[0] == "decoder" && name.parts[1] == "up" { decoderLevels.insert(index) }
        }
        let levels = decoderLevels.count
        guard decoderLevels == Set(0..<levels), encoderLevels.isEmpty || encoderLevels == Set(0..<levels) else {
            throw CheckpointError.invalidLayout(
                path: source, component: "vae",
                detail: "encoder.down indices \(encoderLevels.sorted()) and decoder.up indices \(decoderLevels.sorted()) "
                    + "must both be 0..<n for the same n")
        }

        var result = KeyConversion()
        for key in keys {
            guard let (module, parameter) = splitParameter(key) else {
                result.unconverted.append(key)
                continue
            }
            if let mapped = topLevel[module] {
                result.recipes["\(mapped).\(parameter)"] = .rename(key)
            } else if let (name, squeeze) = blockName(module, levels: levels) {
                let diffusersName = "\(name).\(parameter)"
                result.recipes[diffusersName] = squeeze && parameter == "weight" ? .squeezeConv(key) : .rename(key)
            } else {
                result.unconverted.append(key)
            }
        }
        result.unconverted.sort()
        return result
    }

    /// The diffusers module of a block submodule, and whether its weight is a 1x1 conv to flatten.
    private static func blockName(_ module: String, levels: Int) -> (String, Bool)? {
        let name = DottedName(module)
        guard name.parts.count >= 3, name.parts[0] == "encoder" || name.parts[0] == "decoder" else { return nil }
        let side = String(name.parts[0])
        if name.parts[1] == "mid" {
            // encoder.mid.block_1.conv1, encoder.mid.attn_1.q
            guard name.parts.count == 4 else { return nil }
            let sub = String(name.parts[3])
            switch name.parts[2] {
            case "block_1": return resnet[sub].map { ("\(side).mid_block.resnets.0.\($0)", false) }
            case "block_2": return resnet[sub].map { ("\(side).mid_block.resnets.1.\($0)", false) }
            case "attn_1": return attention[sub].map { ("\(side).mid_block.attentions.0.\($0)", sub != "norm") }
            default: return nil
            }
        }
        guard let level = name.int(at: 2) else { return nil }
        let encoder = side == "encoder"
        guard name.parts[1] == (encoder ? "down" : "up") else { return nil }
        let block = encoder ? "encoder.down_blocks.\(level)" : "decoder.up_blocks.\(levels - 1 - level)"
        // encoder.down.0.block.1.conv1, encoder.down.0.downsample.conv, decoder.up.1.upsample.conv
        if name.parts.count == 6, name.parts[3] == "block", let layer = name.int(at: 4),
            let mapped = resnet[String(name.parts[5])]
        {
            return ("\(block).resnets.\(layer).\(mapped)", false)
        }
        if name.parts.count == 5, name.parts[4] == "conv" {
            if encoder && name.parts[3] == "downsample" { return ("\(block).downsamplers.0.conv", false) }
            if !encoder && name.parts[3] == "upsample" { return ("\(block).upsamplers.0.conv", false) }
        }
        return nil
    }
}
