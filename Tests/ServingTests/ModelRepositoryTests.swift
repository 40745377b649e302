import Foundation
import XCTest

@testable import Serving

/// The registry clients' names go through: what a scan finds, A1111-style names, and names that try to
/// point outside the model folders.
final class ModelRepositoryTests: XCTestCase {
    func testScanFindsEveryKindAndPicksTheDefault() {
        let repository = ServingFixtures.repository()
        XCTAssertEqual(repository.list(.checkpoint).map(\.id), ["sd1", "sd2", "sdxl"])
        XCTAssertEqual(repository.list(.lora).map(\.id), ["sd1-lora", "sd1-lora-b"])
        XCTAssertEqual(repository.list(.controlnet).map(\.id), ["sd1-controlnet", "sd1-controlnet-b"])
        XCTAssertEqual(repository.defaultModel, "sd1")
        XCTAssertEqual(repository.entry(.checkpoint, "sd2")?.format, "diffusers")
        XCTAssertEqual(repository.entry(.lora, "sd1-lora")?.format, "safetensors")
        XCTAssertGreaterThan(repository.entry(.lora, "sd1-lora")?.sizeBytes ?? 0, 10_000, "sizes follow the links")
        // Without a configured default, the first checkpoint by name.
        let unnamed = ModelRepository(roots: [ServingFixtures.modelsFolder], embeddedModels: nil)
        XCTAssertEqual(unnamed.defaultModel, "sd1")
    }

    func testAUTOMATIC1111StyleNamesResolveToTheBareName() {
        let repository = ServingFixtures.repository()
        XCTAssertEqual(repository.entry(.lora, "sd1-lora.safetensors")?.id, "sd1-lora")
        XCTAssertEqual(repository.entry(.lora, "styles/sd1-lora.safetensors")?.id, "sd1-lora")
        XCTAssertEqual(repository.entry(.checkpoint, "sd2 [a1b2c3d4]")?.id, "sd2")
        XCTAssertNil(repository.entry(.checkpoint, "sd1-lora"), "kinds are separate")
        XCTAssertNil(repository.entry(.lora, ""))
    }

    func testNamesThatPointOutsideTheModelFoldersAreUnknown() throws {
        let repository = ServingFixtures.repository()
        // A real LoRA file outside the models folder.
        let outside = FileManager.default.temporaryDirectory.appendingPathComponent("swiftdiffusion-outside-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: outside, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: outside) }
        try FileManager.default.copyItem(
            at: ServingFixtures.modelsFolder.appendingPathComponent("loras/sd1-lora.safetensors").resolvingSymlinksInPath(),
            to: outside.appendingPathComponent("evil.safetensors"))
        let names = [
            outside.appendingPathComponent("evil.safetensors").path, outside.appendingPathComponent("evil").path, "../../evil",
            "../loras/sd1-lora", "../../\(ServingFixtures.modelsFolder.lastPathComponent)/loras/sd1-lora.safetensors",
            "/etc/passwd",
            "/sd1-lora", "sub/../sd1-lora", "..", ".", "./sd1-lora/..",
        ]
        for name in names {
            XCTAssertNil(repository.entry(.lora, name), name)
        }
        XCTAssertNil(repository.entry(.checkpoint, "../checkpoints/sd1"))
        XCTAssertNil(repository.entry(.checkpoint, ServingFixtures.modelsFolder.appendingPathComponent("checkpoints/sd1").path))
        XCTAssertNil(repository.entry(.controlnet, "/controlnets/sd1-controlnet"))
    }

    func testRescanSeesNewAndRemovedFiles() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("swiftdiffusion-rescan-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: root) }
        // AUTOMATIC1111's folder names work too.
        try FileManager.default.createDirectory(
            at: root.appendingPathComponent("Stable-diffusion"), withIntermediateDirectories: true)
        try FileManager.default.createDirectory(at: root.appendingPathComponent("Lora/styles"), withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(
            at: root.appendingPathComponent("Stable-diffusion/sd1"),
            withDestinationURL: ServingFixtures.modelsFolder.appendingPathComponent("checkpoints/sd1"))
        let repository = ModelRepository(roots: [root], embeddedModels: nil)
        XCTAssertEqual(repository.list(.lora).count, 0)
        try FileManager.default.createSymbolicLink(
            at: root.appendingPathComponent("Lora/styles/new-style.safetensors"),
            withDestinationURL: ServingFixtures.modelsFolder.appendingPathComponent("loras/sd1-lora-b.safetensors"))
        XCTAssertNil(repository.entry(.lora, "new-style"), "not before a rescan")
        let counts = repository.rescan()
        XCTAssertEqual(counts[.lora], 1)
        XCTAssertEqual(counts[.checkpoint], 1)
        XCTAssertEqual(
            repository.entry(.lora, "new-style")?.path, root.appendingPathComponent("Lora/styles/new-style.safetensors").path)
        try FileManager.default.removeItem(at: root.appendingPathComponent("Lora/styles/new-style.safetensors"))
        repository.rescan()
        XCTAssertNil(repository.entry(.lora, "new-style"))
    }
}
