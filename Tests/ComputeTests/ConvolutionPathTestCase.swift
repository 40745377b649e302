import Compute
import XCTest

/// A test case that may switch `ConvolutionPaths.mode`: each test gets the mode the suite runs in back afterwards
/// (`SWIFTDIFFUSION_CONV` forces one for the whole suite).
class ConvolutionPathTestCase: XCTestCase {
    private let suiteMode = ConvolutionPaths.mode

    override func tearDown() {
        ConvolutionPaths.setMode(suiteMode)
        super.tearDown()
    }
}
