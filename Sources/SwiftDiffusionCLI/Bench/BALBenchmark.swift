import ArgumentParser
import Charts
import Dependence
import Foundation
import Imaging
import Serving

/// `swiftdiffusion bench bal`: the BAL (bounded asynchronous LoRA loading) quality study (issue 12, item 5).
///
/// For each LoRA and each of its evaluation prompts (the "with LoRA" rows of `tools/embedded/eval_sets/lora_<name>.jsonl`:
/// prompt, seed, steps, sampler, guidance), one image with synchronous patching (the LoRA patched before denoising) and
/// one per deadline D %, where the LoRA lands **exactly** at step K = round(D % x steps), clamped to the last step as the
/// engine clamps its deadline: the worst case of bounded loading (the load took until the deadline), forced with
/// `EngineRequest.loraLanding = .atDeadline`, never dependent on timing. Every image goes through `ImageEngine`.
/// Per LoRA and deadline: mean and minimum SSIM and mean PSNR against the synchronous image (`ImageQuality`), and
/// with `--evaluator-python` the LoRA-effect rate of tools/embedded/evaluate.py (the project's checker) for every
/// column, synchronous included. Writes the images, their manifest, the evaluator's report, `table.md` and the plot
/// `bal-study.png` to `--out`.
struct BALBenchmarkCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bal",
        abstract: "BAL quality study: LoRAs landing at a deadline vs synchronous patching (SSIM, PSNR, LoRA-effect rate), with a plot."
    )

    @Option(help: "Model folder (default: the embedded model).")
    var model: String?

    @Option(name: .customLong("lora"), help: "A LoRA file (repeatable; default: the embedded model's shipped LoRAs). Prompts come from <eval-sets>/lora_<file name>.jsonl.")
    var loras: [String] = []

    @Option(name: .customLong("eval-sets"), help: "Folder of the evaluation manifests (default: tools/embedded/eval_sets of this repository).")
    var evalSets: String?

    @Option(help: "Prompts (each with its own seed) per LoRA: the first N rows with the LoRA of its evaluation set.")
    var seeds = 50

    @Option(help: "Deadlines in percent of the steps, comma-separated.")
    var deadlines = "10,20,40,60,100"

    @Option(help: "Denoising steps (default: the evaluation set's).")
    var steps: Int?

    @Option(help: "Image width and height (default: the evaluation set's).")
    var size: Int?

    @Option(help: "Output folder: images, manifest.jsonl, evaluation.json, table.md, bal-study.png.")
    var out = "bal-study"

    @Option(name: .customLong("evaluator-python"), help: "A Python with numpy, Pillow and opencv: scores the LoRA effect with tools/embedded/evaluate.py.")
    var evaluatorPython: String?

    func parsedDeadlines() throws -> [Int] {
        let values = deadlines.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !values.isEmpty, values.allSatisfy({ $0 != nil && (1...100).contains($0!) }) else {
            throw ValidationError("--deadlines must be comma-separated whole percentages in 1...100, got '\(deadlines)'")
        }
        return values.map { $0! }
    }

    func validate() throws {
        _ = try parsedDeadlines()
        guard (1...1000).contains(seeds) else { throw ValidationError("--seeds must be between 1 and 1000") }
        if let steps { guard (1...150).contains(steps) else { throw ValidationError("--steps must be between 1 and 150") } }
        if let size { guard (16...1024).contains(size), size % 8 == 0 else { throw ValidationError("--size must be a multiple of 8 in 16...1024") } }
    }

    /// The landing step of deadline `percent`: round(percent % x steps), clamped to the last step (as the engine clamps).
    static func landingStep(percent: Int, steps: Int) -> Int {
        min(Int((Double(percent) / 100 * Double(steps)).rounded()), steps - 1)
    }

    struct Column {
        var name: String
        var percent: Int?  // nil: synchronous
        var ssim: [Double] = []
        var psnr: [Double] = []
        var effect: Double?
    }

    func run() throws {
        let percents = try parsedDeadlines()
        let python = try evaluatorPython.map(InputPath.existing)
        let modelURL = try ModelLocation.resolve(model)
        let embedded = try? ModelLocation.embeddedModel()
        let repositoryRoot = embedded?.deletingLastPathComponent().deletingLastPathComponent()
        let setsURL = try evalSets.map(InputPath.folder) ?? repositoryRoot?.appendingPathComponent("tools/embedded/eval_sets")
        guard let setsURL, FileManager.default.fileExists(atPath: setsURL.path) else {
            throw CLIError("the evaluation sets (tools/embedded/eval_sets) were not found; pass --eval-sets")
        }
        let loraURLs: [URL] =
            loras.isEmpty
            ? try ["heart", "outline"].map { name in
                guard let folder = embedded?.deletingLastPathComponent().appendingPathComponent("shapes-sd-loras") else {
                    throw CLIError("the embedded LoRAs were not found; pass --lora")
                }
                return folder.appendingPathComponent("\(name).safetensors")
            } : try loras.map(InputPath.existing)
        let output = URL(fileURLWithPath: out)
        try FileManager.default.createDirectory(at: output, withIntermediateDirectories: true)

        let repository = ModelRepository(roots: [], embeddedModels: nil)
        let modelID = repository.register(.checkpoint, path: modelURL.path)
        let profile = try repository.profile(modelID)
        var configuration = EngineConfiguration()
        configuration.tokenizerFolder = embedded?.appendingPathComponent("tokenizer").path
        let engine = ImageEngine(repository: repository, configuration: configuration, logger: CommandLineLog.logger())
        _ = try engine.pipeline(for: modelID)

        var manifest: [String] = []
        var results: [(lora: String, columns: [Column], steps: Int)] = []
        let started = Date()
        for loraURL in loraURLs {
            let name = loraURL.deletingPathExtension().lastPathComponent
            let setURL = setsURL.appendingPathComponent("lora_\(name).jsonl")
            guard FileManager.default.fileExists(atPath: setURL.path) else {
                throw CLIError("no evaluation set for LoRA '\(name)': \(setURL.path) does not exist")
            }
            let rows = try String(contentsOf: setURL, encoding: .utf8).split(separator: "\n").compactMap { line in
                (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any]
            }.filter { $0["lora"] is [String: Any] }
            guard rows.count >= seeds else { throw CLIError("\(setURL.path) has \(rows.count) rows with the LoRA, fewer than --seeds \(seeds)") }
            let loraID = repository.register(.lora, path: loraURL.path)
            var columns = [Column(name: "sync", percent: nil)] + percents.map { Column(name: "d\($0)", percent: $0) }
            var rowSteps = 0
            for row in rows.prefix(seeds) {
                let number = { (key: String) in (row[key] as? NSNumber)?.doubleValue }
                let id = row["id"] as? String ?? "row"
                let stepCount = steps ?? number("steps").map { Int($0) } ?? profile.steps
                rowSteps = stepCount
                let side = size
                let weight = Float(((row["lora"] as? [String: Any])?["scale"] as? NSNumber)?.doubleValue ?? 1)
                let sampler = (row["scheduler"] as? String).flatMap { BatchCommand.schedulerClasses[$0] } ?? profile.sampler
                let spec = JobSpec(
                    model: modelID, prompt: row["prompt"] as? String ?? "", negativePrompt: row["negative_prompt"] as? String,
                    width: side ?? number("width").map { Int($0) }, height: side ?? number("height").map { Int($0) }, steps: stepCount,
                    sampler: sampler, cfg: Float(number("guidance") ?? Double(profile.cfg)), seed: UInt64(number("seed") ?? 0),
                    loras: [LoRASpec(name: loraID, weight: weight)])
                var reference: RGBImage?
                for index in columns.indices {
                    var columnSpec = spec
                    let step = columns[index].percent.map { Self.landingStep(percent: $0, steps: stepCount) } ?? 0
                    columnSpec.loraDeadlineStep = step
                    var request = try engine.prepare(columnSpec)
                    request.loraLanding = .atDeadline
                    let rendered = try engine.render(request)
                    // The forcing is checked, not assumed: the LoRA landed exactly at the step asked (0: patched up front).
                    guard (rendered.loraPatchStep ?? 0) == step else {
                        throw CLIError("\(id): the LoRA landed at step \(rendered.loraPatchStep ?? 0), expected \(step)")
                    }
                    let set = "lora_\(name)_\(columns[index].name)"
                    let file = "images/\(set)/\(id).png"
                    try FileManager.default.createDirectory(
                        at: output.appendingPathComponent("images/\(set)"), withIntermediateDirectories: true)
                    try rendered.images[0].write(to: output.appendingPathComponent(file))
                    var entry = row
                    entry["set"] = set
                    entry["file"] = file
                    entry["lora_patch_step"] = step
                    manifest.append(String(decoding: try JSONSerialization.data(withJSONObject: entry, options: [.sortedKeys]), as: UTF8.self))
                    let image = try ImageCodec.decode(rendered.images[0])
                    if let reference {
                        columns[index].ssim.append(try ImageQuality.ssim(reference, image))
                        columns[index].psnr.append(try ImageQuality.psnr(reference, image))
                    } else {
                        reference = image
                    }
                }
            }
            results.append((name, columns, rowSteps))
        }
        let manifestURL = output.appendingPathComponent("manifest.jsonl")
        try (manifest.joined(separator: "\n") + "\n").write(to: manifestURL, atomically: true, encoding: .utf8)
        let seconds = Date().timeIntervalSince(started)

        if let python {
            let script = setsURL.deletingLastPathComponent().appendingPathComponent("evaluate.py")
            guard FileManager.default.fileExists(atPath: script.path) else { throw CLIError("the evaluator \(script.path) does not exist") }
            let reportURL = output.appendingPathComponent("evaluation.json")
            _ = try Subprocess.run(
                python.path, [script.path, "--images", output.path, "--manifest", manifestURL.path, "--json", reportURL.path])
            let report = (try JSONSerialization.jsonObject(with: Data(contentsOf: reportURL))) as? [String: Any] ?? [:]
            for r in results.indices {
                for c in results[r].columns.indices {
                    let set = "lora_\(results[r].lora)_\(results[r].columns[c].name)"
                    results[r].columns[c].effect = ((report[set] as? [String: Any])?["effect_with"] as? NSNumber)?.doubleValue
                }
            }
        }

        let table = Self.table(results.map { ($0.lora, $0.columns, $0.steps) })
        try table.write(to: output.appendingPathComponent("table.md"), atomically: true, encoding: .utf8)
        print("SwiftDiffusion bench bal: \(modelURL.lastPathComponent), \(seeds) prompts/seeds per LoRA, \(String(format: "%.0f", seconds)) s")
        print(table, terminator: "")
        if python == nil { print("(pass --evaluator-python /path/to/python with numpy, Pillow, opencv for the LoRA-effect rate)") }
        let chart = Self.chart(results.map { ($0.lora, $0.columns) }, title: "BAL vs synchronous LoRA patching: \(modelURL.lastPathComponent), \(seeds) seeds")
        try chart.png().write(to: output.appendingPathComponent("bal-study.png"))
        if let choice = Self.choose(results.map { $0.columns }, requireEffect: python != nil) {
            print("largest deadline meeting SSIM >= 0.95 (mean)\(python != nil ? " and LoRA-effect rate within 5 points" : "") for every LoRA: \(choice) %")
        } else {
            print("no deadline meets SSIM >= 0.95 (mean)\(python != nil ? " and LoRA-effect rate within 5 points" : "") for every LoRA")
        }
        print("wrote \(output.path)/{table.md,bal-study.png,manifest.jsonl,images/}")
    }

    static func mean(_ values: [Double]) -> Double { values.isEmpty ? .nan : values.reduce(0, +) / Double(values.count) }

    /// Mean PSNR over the images that differ from the synchronous one (identical images have infinite PSNR; counted apart).
    static func psnrText(_ values: [Double]) -> String {
        let finite = values.filter(\.isFinite)
        let identical = values.count - finite.count
        let text = finite.isEmpty ? "inf" : String(format: "%.2f", mean(finite))
        return identical > 0 ? "\(text) (\(identical) identical)" : text
    }

    static func table(_ results: [(String, [Column], Int)]) -> String {
        var s = "| LoRA | deadline | LoRA lands before step | mean SSIM | min SSIM | mean PSNR (dB) | LoRA-effect rate | vs synchronous |\n"
        s += "|---|---|---|---|---|---|---|---|\n"
        for (lora, columns, steps) in results {
            let sync = columns.first?.effect
            for column in columns {
                let effect = column.effect.map { String(format: "%.0f %%", $0 * 100) } ?? "n/a"
                var delta = ""
                if column.percent != nil, let value = column.effect, let sync { delta = String(format: "%+.0f points", (value - sync) * 100) }
                if let percent = column.percent {
                    s += "| \(lora) | \(percent) % | \(landingStep(percent: percent, steps: steps)) of \(steps) | "
                    s += String(format: "%.4f | %.4f | ", mean(column.ssim), column.ssim.min() ?? .nan)
                    s += "\(psnrText(column.psnr)) | \(effect) | \(delta) |\n"
                } else {
                    s += "| \(lora) | synchronous | 0 of \(steps) (before denoising) | 1 | 1 | inf | \(effect) | |\n"
                }
            }
        }
        return s
    }

    /// The largest deadline whose mean SSIM is at least 0.95 and (with the evaluator) whose LoRA-effect rate is within
    /// 5 points of synchronous patching, for every LoRA.
    static func choose(_ results: [[Column]], requireEffect: Bool) -> Int? {
        guard let percents = results.first?.compactMap(\.percent) else { return nil }
        return percents.filter { percent in
            results.allSatisfy { columns in
                guard let column = columns.first(where: { $0.percent == percent }) else { return false }
                var effectOK = !requireEffect
                if requireEffect, let value = column.effect, let sync = columns.first?.effect { effectOK = abs(value - sync) <= 0.05 + 1e-9 }
                return mean(column.ssim) >= 0.95 && effectOK
            }
        }.max()
    }

    static func chart(_ results: [(String, [Column])], title: String) -> SVGChart {
        func line(_ columns: [Column], _ value: (Column) -> Double?) -> [(x: Double, y: Double)] {
            columns.compactMap { column in
                guard let percent = column.percent, let y = value(column), y.isFinite else { return nil }
                return (x: Double(percent), y: y)
            }
        }
        let count = results.count
        func padded(_ lines: [[(x: Double, y: Double)]]) -> [[(x: Double, y: Double)]] {
            lines + Array(repeating: [], count: 2 * count - lines.count)
        }
        let effectLines =
            results.map { line($0.1, { $0.effect }) }
            + results.map { lora in
                guard let sync = lora.1.first?.effect else { return [] }
                return lora.1.compactMap { $0.percent }.map { (x: Double($0), y: sync) }
            }
        var chart = SVGChart(
            title: title, xLabel: "deadline, % of the steps (the LoRA lands there)", yLabel: "vs synchronous",
            panels: [
                SVGChart.Panel(title: "mean SSIM vs synchronous", lines: padded(results.map { line($0.1, { mean($0.ssim) }) })),
                SVGChart.Panel(title: "minimum SSIM vs synchronous", lines: padded(results.map { line($0.1, { $0.ssim.min() }) })),
                SVGChart.Panel(
                    title: "mean PSNR vs synchronous (dB)",
                    lines: padded(results.map { line($0.1, { column in mean(column.psnr.filter(\.isFinite)) }) })),
                SVGChart.Panel(title: "LoRA-effect rate (evaluator)", lines: effectLines, yRange: 0...1),
            ],
            legend: results.map { $0.0 } + results.map { "\($0.0), synchronous" })
        chart.columns = 2
        return chart
    }
}
