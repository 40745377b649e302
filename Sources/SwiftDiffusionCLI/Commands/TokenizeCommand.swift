import ArgumentParser
import Foundation
import Models

/// `swiftdiffusion tokenize`: shows how a prompt is cut into CLIP tokens.
struct TokenizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenize",
        abstract: "Print a prompt's CLIP token ids (padded to 77, as the text encoder sees them) as a JSON array."
    )

    @Option(help: "Model folder (diffusers layout) or its tokenizer folder; default: the embedded model.")
    var model: String?

    @Option(name: .customLong("tokenizer"), help: "Which tokenizer of an SDXL folder: tokenizer or tokenizer_2.")
    var tokenizerName = "tokenizer"

    @Flag(help: "Print the tokens as text next to the ids, without padding.")
    var verbose = false

    @Argument(help: "The prompt.")
    var prompt: String

    func run() throws {
        do {
            let root = try ModelLocation.resolve(model)
            let folder =
                FileManager.default.fileExists(atPath: root.appendingPathComponent("vocab.json").path)
                ? root : root.appendingPathComponent(tokenizerName)
            let tokenizer = try CLIPTokenizer(folder: folder)
            let ids = tokenizer.encode(prompt)
            if verbose {
                let raw = tokenizer.tokenize(prompt)
                for id in raw { print(id, tokenizer.token(of: id) ?? "?") }
                print("\(raw.count) tokens; the encoder sees \(min(raw.count, tokenizer.modelMaxLength - 2)) of them")
            } else {
                print("[" + ids.map(String.init).joined(separator: ", ") + "]")
            }
        } catch {
            throw CLIError(wrapping: error)
        }
    }
}
