import SwiftDiffusionCLI
SwiftDiffusionCommand.main()
