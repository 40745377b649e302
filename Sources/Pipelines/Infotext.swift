import Foundation

/// AUTOMATIC1111's "parameters" text ("infotext"): the prompt, the negative prompt, then `Key: value`
/// pairs. Written into PNG `tEXt` chunks and returned by the A1111-compatible API, so images made here read
/// back in tools that understand A1111's metadata.
public struct Infotext: Sendable {
    public var prompt: String
    public var negativePrompt: String?
    public var fields: [(key: String, value: String)]

    /// The parameters of `request` on `modelName`; `loras` are (name, weight) pairs.
    public init(request: GenerationRequest, modelName: String, loras: [(name: String, weight: Float)] = [], controls: [String] = []) {
        prompt = request.prompt
        negativePrompt = request.negativePrompt
        var fields: [(String, String)] = [
            ("Steps", "\(request.steps)"), ("Sampler", request.sampler.a1111Name), ("CFG scale", Self.number(request.guidanceScale)),
            ("Seed", "\(request.seed)"), ("Size", "\(request.width)x\(request.height)"), ("Model", modelName),
        ]
        if request.initImage != nil { fields.append(("Denoising strength", Self.number(request.strength))) }
        if let clipSkip = request.clipSkip { fields.append(("Clip skip", "\(clipSkip + 1)")) }
        if request.count > 1 { fields.append(("Batch size", "\(request.count)")) }
        if !loras.isEmpty {
            fields.append(("Lora weights", "\"" + loras.map { "\($0.name): \(Self.number($0.weight))" }.joined(separator: ", ") + "\""))
        }
        for (index, control) in controls.enumerated() { fields.append(("ControlNet \(index)", "\"\(control)\"")) }
        fields.append(("Version", "SwiftDiffusion \(SwiftDiffusionVersion.current)"))
        self.fields = fields
    }

    /// The text as A1111 writes it.
    public var text: String {
        var lines = [prompt]
        if let negativePrompt, !negativePrompt.isEmpty { lines.append("Negative prompt: \(negativePrompt)") }
        lines.append(fields.map { "\($0.key): \($0.value)" }.joined(separator: ", "))
        return lines.joined(separator: "\n")
    }

    /// 7.5 -> "7.5", 7.0 -> "7", as A1111 prints numbers.
    static func number(_ value: Float) -> String {
        value == value.rounded() && abs(value) < 1e9 ? String(Int(value)) : String(format: "%g", value)
    }
}

/// The project's version string.
public enum SwiftDiffusionVersion {
    public static let current = "0.1.0"
}
