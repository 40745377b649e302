import Foundation
import Hummingbird
import Imaging
import Serving

/// The sd-webui-controlnet extension's side of the A1111 API: units in `alwayson_scripts.controlnet.args`, and the
/// extension's `/controlnet/*` routes.
///
/// Unit fields: `enabled` (false units are skipped), `model` ("name" or "name [hash]"), `module` with `threshold_a` /
/// `threshold_b`, `image` (base64, `{image, mask}` or a list of those; legacy `input_image`), `resize_mode` (name or
/// 0/1/2), `weight`, `guidance_start`, `guidance_end` (legacy `guidance`), `control_mode`.
///
/// `control_mode`: "Balanced" (0) is plain ControlNet; "My prompt is more important" (1) is the extension's soft
/// injection, residuals scaled by `0.825 ** (12 - i)` on both guidance branches (`softInjection`); "ControlNet is
/// more important" (2) adds the extension's CFG injection, control on the conditional branch only, which with those
/// scales is diffusers' guess mode (`logspace(-1, 0, 13)` = `0.8254 ** (12 - i)`), so it maps to `guessMode`.
enum A1111ControlNet {
    static let apiVersion = 2

    /// The units of `args` as ControlNet specs. `fallbackImage` (img2img's init image) serves units without an image,
    /// as the extension does; in txt2img such a unit is a 400.
    static func units(
        _ args: [Any], fallbackImage: Data?, repository: ModelRepository, maximum: Int = RequestLimits().maximumControls,
        ignored: inout [String]
    ) throws -> [ControlSpec] {
        var specs: [ControlSpec] = []
        // The extension's UI sends a few units, most of them disabled; thousands are not a request but a payload.
        let maximumUnits = max(maximum, 16)
        guard args.count <= maximumUnits else {
            throw APIError.badRequest("alwayson_scripts.controlnet.args has \(args.count) units; at most \(maximumUnits) are read")
        }
        for (index, item) in args.enumerated() {
            let label = "ControlNet unit \(index)"
            guard let object = item as? [String: Any] else {
                ignored.append("\(label) (not an object)")
                continue
            }
            let unit = A1111Fields(object)
            guard try unit.bool("enabled") ?? true else { continue }
            let modelName = try unit.string("model") ?? ""
            guard !modelName.isEmpty, modelName.lowercased() != "none" else {
                ignored.append("\(label) (no model)")
                continue
            }
            guard let model = repository.entry(.controlnet, modelName) else {
                throw APIError.notFound("\(label): ControlNet model '\(modelName)' not found; see /controlnet/model_list")
            }
            // Before its image is decoded.
            guard specs.count < maximum else {
                throw APIError.badRequest("at most \(maximum) ControlNet units may be enabled per request; \(label) is one more")
            }

            var image = try imageData(unit.value("image") ?? unit.value("input_image"), label: label, ignored: &ignored)
            if image == nil { image = fallbackImage }
            guard let image else { throw APIError.badRequest("\(label) is enabled but has no image") }

            let module = try unit.string("module") ?? "none"
            let thresholdA = try unit.double("threshold_a"), thresholdB = try unit.double("threshold_b")
            do { _ = try ControlPreprocessor.named(module, thresholdA: thresholdA, thresholdB: thresholdB) } catch {
                throw APIError.badRequest("\(label): \(error)")
            }
            let resize = try resizeMode(unit, label: label)
            let weight = try unit.double("weight") ?? 1
            let start = try unit.double("guidance_start") ?? 0
            let end = try unit.double("guidance_end") ?? unit.double("guidance") ?? 1
            let mode = try controlMode(unit, label: label)

            if try unit.bool("pixel_perfect") ?? false { ignored.append("\(label).pixel_perfect") }
            if unit.has("mask") || unit.has("mask_image") { ignored.append("\(label).mask") }
            if unit.has("advanced_weighting") { ignored.append("\(label).advanced_weighting") }
            if unit.has("effective_region_mask") { ignored.append("\(label).effective_region_mask") }
            specs.append(
                ControlSpec(
                    model: model.id, image: image, preprocessor: module, thresholdA: thresholdA, thresholdB: thresholdB,
                    resizeMode: resize.rawValue, weight: Float(weight), start: Float(start), end: Float(end),
                    guessMode: mode == 2,
                    softInjection: mode == 1 ? true : nil))
        }
        return specs
    }

    /// A unit's image: base64 text ("" = none), `{image, mask}`, or a list of those (the first is used).
    static func imageData(_ value: Any?, label: String, ignored: inout [String]) throws -> Data? {
        var value = value
        if let list = value as? [Any] {
            if list.count > 1 { ignored.append("\(label).image[1...] (one image per unit)") }
            value = list.first
        }
        if let pair = value as? [String: Any] {
            if let mask = pair["mask"], !(mask is NSNull), !((mask as? String)?.isEmpty ?? false) {
                ignored.append("\(label).image.mask")
            }
            value = pair["image"]
        }
        guard let value, !(value is NSNull) else { return nil }
        guard let text = value as? String else { throw APIError.badRequest("\(label): image must be a base64 string") }
        if text.isEmpty { return nil }
        guard let data = Base64.decodeImage(text), !data.isEmpty else {
            throw APIError.badRequest("\(label): image is not valid base64")
        }
        return data
    }

    /// `resize_mode` by name ("Just Resize", "Crop and Resize", "Resize and Fill", legacy names) or index; the
    /// extension's default is Crop and Resize.
    static func resizeMode(_ unit: A1111Fields, label: String) throws -> ResizeMode {
        guard let value = unit.value("resize_mode") else { return .cropAndResize }
        if let number = value as? NSNumber, !A1111Fields.isBool(number), let index = A1111Fields.exactInt(number),
            let mode = ResizeMode(index: index)
        {
            return mode
        }
        if let text = value as? String, let mode = ResizeMode(name: text) { return mode }
        throw APIError.badRequest(
            "\(label): unknown resize_mode \(A1111Fields.describe(value)) (Just Resize, Crop and Resize, Resize and Fill, or 0, 1, 2)"
        )
    }

    /// 0 Balanced, 1 My prompt is more important, 2 ControlNet is more important (also the legacy `guessmode` flag).
    static func controlMode(_ unit: A1111Fields, label: String) throws -> Int {
        if let value = unit.value("control_mode") {
            if let number = value as? NSNumber, !A1111Fields.isBool(number), let index = A1111Fields.exactInt(number),
                (0...2).contains(index)
            {
                return index
            }
            if let text = value as? String {
                switch text.trimmingCharacters(in: .whitespaces).lowercased() {
                case "balanced", "0": return 0
                case "my prompt is more important", "1": return 1
                case "controlnet is more important", "2": return 2
                default: break
                }
            }
            throw APIError.badRequest(
                "\(label): unknown control_mode \(A1111Fields.describe(value)) (Balanced, My prompt is more important, ControlNet is more important)"
            )
        }
        let guessMode = try unit.bool("guessmode") ?? unit.bool("guess_mode") ?? false
        return guessMode ? 2 : 0
    }

    // MARK: - Routes

    static func register(on router: Router<ServerRequestContext>, engine: GenerationEngine, settings: A1111Settings) {
        let repository = engine.repository
        router.get("controlnet/version") { _, _ in try json(["version": apiVersion]) }
        router.get("controlnet/model_list") { request, _ in
            if request.uri.queryParameters["update"].map({ $0.lowercased() == "true" }) ?? false { repository.rescan() }
            return try json(["model_list": repository.list(.controlnet).map(settings.title)])
        }
        router.get("controlnet/module_list") { request, _ in
            let aliases = request.uri.queryParameters["alias_names"].map { $0.lowercased() == "true" } ?? false
            return try json([
                "module_list": aliases ? ControlPreprocessor.moduleLabels : ControlPreprocessor.moduleList,
                "module_detail": moduleDetail(),
            ])
        }
        router.get("controlnet/settings") { _, _ in
            try json(["control_net_unit_count": engine.configuration.limits.maximumControls])
        }
        router.get("controlnet/control_types") { _, _ in
            let models = ["None"] + repository.list(.controlnet).map(settings.title)
            return try json([
                "control_types": [
                    "All": [
                        "module_list": ControlPreprocessor.moduleList, "model_list": models, "default_option": "none",
                        "default_model": "None",
                    ]
                ]
            ])
        }
    }

    /// Per module: model-free, and its sliders (the extension's `module_detail`).
    static func moduleDetail() -> [String: Any] {
        func slider(_ name: String, _ value: Double, _ min: Double, _ max: Double) -> [String: Any] {
            ["name": name, "value": value, "min": min, "max": max, "step": 1]
        }
        let resolution = slider("Preprocessor Resolution", 512, 64, 2048)
        var detail: [String: Any] = [:]
        for module in ControlPreprocessor.moduleList {
            var sliders: [[String: Any]] = []
            switch module {
            case "canny":
                sliders = [
                    resolution, slider("Canny Low Threshold", ControlPreprocessor.defaultCannyThresholds.low, 1, 255),
                    slider("Canny High Threshold", ControlPreprocessor.defaultCannyThresholds.high, 1, 255),
                ]
            case "threshold", "scribble":
                sliders = [resolution, slider("Binarization Threshold", ControlPreprocessor.defaultThresholdLevel, 0, 255)]
            case "invert":
                sliders = [resolution]
            default:
                break
            }
            detail[module] = ["model_free": module == "none", "sliders": sliders]
        }
        return detail
    }
}
