import Foundation
import ArgumentParser

/// `swiftdiffusion`: text-to-image with Stable Diffusion models and add-on modules.
public struct SwiftDiffusionCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "swiftdiffusion",
        abstract: "Text-to-image with Stable Diffusion models, LoRAs and ControlNets, on a Swift engine.",
        subcommands: [GenerateCommand.self, BatchCommand.self, ServeCommand.self, TokenizeCommand.self, BenchCommand.self]
    )

    public init() {}

    /// Runs the command line; `CLIError`s print their message (no usage text) and exit with their code.
    public static func runMain() async {
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch let error as CLIError {
            FileHandle.standardError.write(Data("error: \(error.description)\n".utf8))
            Foundation.exit(error.exitCode)
        } catch {
            exit(withError: error)
        }
    }
}
