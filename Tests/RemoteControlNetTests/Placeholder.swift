import XCTest
@testable import RemoteControlNet
