import ArgumentParser

/// `swiftdiffusion bench ...`: benchmarks that print ratios against a baseline measured in the same run.
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Benchmarks that print ratios against a baseline measured in the same run.",
        subcommands: [
            OpsBenchmarkCommand.self, UNetBenchmarkCommand.self, LoRABenchmarkCommand.self, GenerateBenchmarkCommand.self,
            LoadBenchmarkCommand.self, ControlNetBenchmarkCommand.self, VAEBenchmarkCommand.self, WorkflowBenchmarkCommand.self,
            PipelineBenchmarkCommand.self, PrecisionBenchmarkCommand.self, BALBenchmarkCommand.self,
        ]
    )
}
