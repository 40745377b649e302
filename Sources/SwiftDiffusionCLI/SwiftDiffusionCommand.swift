import ArgumentParser

/// `swiftdiffusion`: text-to-image with Stable Diffusion models and add-on modules.
public struct SwiftDiffusionCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "swiftdiffusion",
        abstract: "Text-to-image with Stable Diffusion models, LoRAs and ControlNets, on a Swift engine.",
        subcommands: [BenchCommand.self]
    )

    public init() {}
}
