import SwiftDiffusionCLI
await SwiftDiffusionCommand.runMain()
