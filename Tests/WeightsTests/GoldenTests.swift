import Compute
import Foundation
import ParityTesting
import Weights
import XCTest

/// Tests of the parity-test helpers themselves (they live in Tests/ParityTesting, built on Weights).
final class GoldenTests: XCTestCase {
    private var directory: TemporaryDirectory!

    override func setUpWithError() throws { directory = try TemporaryDirectory() }

    override func tearDown() {
        unsetenv("SWIFTDIFFUSION_FIXTURES")
        directory = nil
    }

    func testFixturesDirectoryIsFoundFromSourcePath() {
        unsetenv("SWIFTDIFFUSION_FIXTURES")
        XCTAssertTrue(Golden.fixturesDirectory.path.hasSuffix("Tests/Fixtures"), Golden.fixturesDirectory.path)
    }

    func testMissingGoldenExplainsHowToRegenerate() {
        XCTAssertThrowsError(try Golden("no_such_fixture_for_sure")) { error in
            let message = "\(error)"
            XCTAssertTrue(message.contains("no_such_fixture_for_sure"), message)
            XCTAssertTrue(message.contains("Tests/Fixtures/no_such_fixture_for_sure.safetensors"), message)
            XCTAssertTrue(message.contains("tools/parity/"), message)
        }
        XCTAssertThrowsError(try Golden("blocks/no_such_block")) { error in
            XCTAssertTrue("\(error)".contains("tools/parity/make_block_goldens.py --only no_such_block"), "\(error)")
        }
        XCTAssertThrowsError(try Golden("ops/no_such_op")) { error in
            XCTAssertTrue("\(error)".contains("tools/parity/make_op_goldens.py --only no_such_op"), "\(error)")
        }
    }

    func testCommittedGoldensOpen() throws {
        // Every committed fixture must pass the strict header validation.
        unsetenv("SWIFTDIFFUSION_FIXTURES")
        let root = Golden.fixturesDirectory
        let files =
            FileManager.default.enumerator(at: root, includingPropertiesForKeys: nil)?
            .compactMap { $0 as? URL }.filter { $0.pathExtension == "safetensors" } ?? []
        var checked = 0
        for file in files {
            let name = String(file.path.dropFirst(root.path.count + 1).dropLast(".safetensors".count))
            let golden = try Golden(name)
            XCTAssertFalse(golden.file.names.isEmpty, name)
            // Model weights (models/, lora/) are fixtures too but not goldens; a golden has inputs or outputs
            // and names its case.
            let isGolden = golden.file.names.contains { $0.hasPrefix("input.") || $0.hasPrefix("output.") }
            if isGolden { XCTAssertNotNil(golden.metadata["case"], name) }
            checked += isGolden ? 1 : 0
        }
        XCTAssertGreaterThan(checked, 50, "expected the committed goldens under \(root.path)")
    }

    func testReadsTensorsAndAttributes() throws {
        setenv("SWIFTDIFFUSION_FIXTURES", directory.url.path, 1)
        try SafeTensorsWriter.write(
            [
                "input.x": Tensor(shape: [1, 2], values: [1, 2]),
                "param.conv.weight": Tensor(shape: [2], values: [3, 4]),
                "output.y": Tensor(shape: [1, 2], values: [5, 6]),
            ],
            metadata: ["channels": "32", "eps": "1e-05", "config": #"{"layers": [1, 2], "name": "unet"}"#],
            to: directory.file("block.safetensors"))

        let golden = try Golden("block")
        XCTAssertEqual(try golden.input("x").scalars, [1, 2])
        XCTAssertEqual(try golden.output("y").scalars, [5, 6])
        XCTAssertEqual(try golden.tensor("param.conv.weight").scalars, [3, 4])
        XCTAssertEqual(golden.params.names, ["conv.weight"])
        XCTAssertEqual(try golden.int("channels"), 32)
        XCTAssertEqual(try golden.float("eps"), 1e-5)
        let config = try XCTUnwrap(try golden.json("config") as? [String: Any])
        XCTAssertEqual(config["name"] as? String, "unet")
        struct Config: Decodable { let layers: [Int] }
        XCTAssertEqual(try golden.decode(Config.self, "config").layers, [1, 2])

        XCTAssertThrowsError(try golden.int("eps")) { XCTAssertTrue("\($0)".contains("'eps' = '1e-05' is not an integer")) }
        XCTAssertThrowsError(try golden.string("missing")) { XCTAssertTrue("\($0)".contains("has no attribute 'missing'")) }
        XCTAssertThrowsError(try golden.tensor("output.z")) { XCTAssertTrue("\($0)".contains("no tensor named 'output.z'")) }
    }

    func testAssertClosePassesWithinTolerance() {
        let expected = Tensor(shape: [2, 2], values: [1, 2, 3, 4])
        let actual = Tensor(shape: [2, 2], values: [1, 2.00001, 3, 4])
        assertClose(actual, expected, tolerance: 1e-4, "within tolerance")
    }
}
