import SwiftDiffusionCLI
SwiftDiffusionCommand.runMain()
