import Compute
import Foundation
import ArgumentParser

/// `swiftdiffusion`: text-to-image with Stable Diffusion models and add-on modules.
public struct SwiftDiffusionCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "swiftdiffusion",
        abstract: "Text-to-image with Stable Diffusion models, LoRAs and ControlNets, on a Swift engine.",
        subcommands: [GenerateCommand.self, BatchCommand.self, ServeCommand.self, WorkerCommand.self, TokenizeCommand.self, BenchCommand.self, DependenceCommand.self, TraceCommand.self]
    )

    public init() {}

    /// Runs the command line; `CLIError`s print their message (no usage text) and exit with their code.
    public static func runMain() async {
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try runOnComputeThread(&command)
            }
        } catch let error as CLIError {
            FileHandle.standardError.write(Data("error: \(error.description)\n".utf8))
            Foundation.exit(error.exitCode)
        } catch {
            // A missing file that reached here unwrapped still reads `no such file: PATH`, never an error dump.
            if let path = CLIError.missingPath(error) {
                FileHandle.standardError.write(Data("error: no such file: \(path)\n".utf8))
                Foundation.exit(1)
            }
            exit(withError: error)
        }
    }

    /// Synchronous commands (generate, batch, tokenize, bench ...) run their compute on a dedicated thread (with a
    /// large stack), never on a thread of Swift's cooperative pool, where `async main` would otherwise put them:
    /// the compute pool's caller takes part in every parallel region, and a blocked cooperative thread starves
    /// the runtime.
    static func runOnComputeThread(_ command: inout any ParsableCommand) throws {
        final class Outcome: @unchecked Sendable {
            var command: any ParsableCommand
            var error: (any Error)?
            let done = DispatchSemaphore(value: 0)
            init(_ command: any ParsableCommand) { self.command = command }
        }
        let outcome = Outcome(command)
        let thread = Thread {
            do { try outcome.command.run() } catch { outcome.error = error }
            outcome.done.signal()
        }
        thread.name = "swiftdiffusion-command"
        thread.stackSize = 64 << 20
        thread.start()
        outcome.done.wait()
        command = outcome.command
        if let error = outcome.error { throw error }
    }
}
