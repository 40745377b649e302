import Foundation

/// Where the embedded default model lives and how a `--model` argument is resolved.
enum ModelLocation {
    /// Folder name of the embedded default model under `models/`.
    static let embeddedName = "shapes-sd"

    /// The embedded model: `$SWIFTDIFFUSION_DEFAULT_MODEL`, else `models/shapes-sd` found by walking up from
    /// the executable (a build inside the repository) or from the working directory.
    static func embeddedModel() throws -> URL {
        if let override = ProcessInfo.processInfo.environment["SWIFTDIFFUSION_DEFAULT_MODEL"], !override.isEmpty {
            return URL(fileURLWithPath: override)
        }
        let executable = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        let starts = [executable, URL(fileURLWithPath: FileManager.default.currentDirectoryPath)]
        for start in starts {
            var directory = start.standardizedFileURL
            for _ in 0..<8 {
                let candidate = directory.appendingPathComponent("models").appendingPathComponent(embeddedName)
                let markers = ["model_index.json", "tokenizer/vocab.json"]
                if markers.contains(where: { FileManager.default.fileExists(atPath: candidate.appendingPathComponent($0).path) }) {
                    return candidate
                }
                directory.deleteLastPathComponent()
            }
        }
        throw CLIError(
            "the embedded model (models/\(embeddedName)) was not found next to the executable or the working directory; "
                + "pass --model or set SWIFTDIFFUSION_DEFAULT_MODEL")
    }

    /// `--model` if given (a diffusers folder or a .safetensors checkpoint), else the embedded model.
    static func resolve(_ argument: String?) throws -> URL {
        guard let argument else { return try embeddedModel() }
        let url = URL(fileURLWithPath: (argument as NSString).expandingTildeInPath)
        guard FileManager.default.fileExists(atPath: url.path) else { throw CLIError("model not found: \(url.path)") }
        return url
    }
}

/// An error whose message is printed as is, with exit code 1 (or the given code).
struct CLIError: Error, CustomStringConvertible {
    let description: String
    let exitCode: Int32

    init(_ message: String, exitCode: Int32 = 1) {
        self.description = message
        self.exitCode = exitCode
    }
}
