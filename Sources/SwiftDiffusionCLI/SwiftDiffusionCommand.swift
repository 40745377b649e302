import Foundation
import ArgumentParser

/// `swiftdiffusion`: text-to-image with Stable Diffusion models and add-on modules.
public struct SwiftDiffusionCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "swiftdiffusion",
        abstract: "Text-to-image with Stable Diffusion models, LoRAs and ControlNets, on a Swift engine.",
        subcommands: [GenerateCommand.self, TokenizeCommand.self, BenchCommand.self]
    )

    public init() {}

    /// Runs the command line; `CLIError`s print their message (no usage text) and exit with their code.
    public static func runMain() {
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch let error as CLIError {
            FileHandle.standardError.write(Data("error: \(error.description)\n".utf8))
            Foundation.exit(error.exitCode)
        } catch {
            exit(withError: error)
        }
    }
}
