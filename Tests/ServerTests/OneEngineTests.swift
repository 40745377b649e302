import Compute
import Foundation
import HummingbirdTesting
import ParityTesting
import Serving
import Weights
import XCTest

/// One engine for every front end: the same request through `swiftdiffusion generate` (the built executable, a
/// subprocess) and through the server's native API (in process) gives the same PNG file, byte for byte — the
/// same model, seed, sampler, LoRA and ControlNet, the same infotext.
final class OneEngineTests: XCTestCase {
    static let fixtures = Golden.fixturesDirectory.appendingPathComponent("models")

    /// The binary built next to the test bundle (`swift build --build-tests` builds every product).
    static let executable: URL? = {
        let candidates = [
            URL(fileURLWithPath: ProcessInfo.processInfo.arguments[0]).deletingLastPathComponent().appendingPathComponent("swiftdiffusion"),
            Golden.fixturesDirectory.deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent(".build/debug/swiftdiffusion"),
        ]
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0.path) }
    }()

    func testTheCommandLineAndTheServerWriteTheSamePNG() async throws {
        let executable = try XCTUnwrap(Self.executable, "swiftdiffusion is not built next to the tests (run `swift build` first)")
        let controlImage = Golden.fixturesDirectory.appendingPathComponent("pipelines/control_ring.png")
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("swiftdiffusion-one-engine-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let output = directory.appendingPathComponent("cli.png")

        // The CLI names files; the server names the same files by their registry names.
        let process = Process()
        process.executableURL = executable
        process.arguments = [
            "generate", "--model", Self.fixtures.appendingPathComponent("sd1").path, "--width", "32", "--height", "32", "--steps", "3",
            "--seed", "7", "--sampler", "euler", "--cfg", "5", "--negative-prompt", "blurry",
            "--lora", Self.fixtures.appendingPathComponent("sd1-lora.safetensors").path + ":0.8",
            "--control", Self.fixtures.appendingPathComponent("sd1-controlnet").path + ":" + controlImage.path + ":0.9",
            "--control-preprocessor", "none", "--quiet", "-o", output.path, "a red circle",
        ]
        var environment = ProcessInfo.processInfo.environment
        // The same threads as this process's pool (the kernels split work by thread count).
        environment["SWIFTDIFFUSION_THREADS"] = "\(ComputePool.shared.threadCount)"
        process.environment = environment
        let errors = Pipe()
        process.standardError = errors
        process.standardOutput = Pipe()
        try process.run()
        let stderr = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0, String(decoding: stderr, as: UTF8.self))
        let cli = try Data(contentsOf: output)

        let body = try JSONSerialization.data(withJSONObject: [
            "model": "sd1", "prompt": "a red circle", "negative_prompt": "blurry", "width": 32, "height": 32, "steps": 3, "seed": 7,
            "sampler": "euler", "cfg": 5, "loras": [["name": "sd1-lora", "weight": 0.8]],
            "controls": [
                ["model": "sd1-controlnet", "image": try Data(contentsOf: controlImage).base64EncodedString(), "preprocessor": "none", "weight": 0.9]
            ],
            // LoRAs patched before denoising, as the CLI does by default (--lora-deadline 0).
            "lora_deadline_step": 0,
        ] as [String: Any])
        let served = UnsafeSendableBox<Data>()
        try await TestServer.withApplication { client in
            let id = try await API.submitID(client, (try JSONSerialization.jsonObject(with: body)) as? [String: Any] ?? [:])
            let job = try await API.waitFinished(client, id)
            XCTAssertEqual(job["status"] as? String, "succeeded", "\(job)")
            let response = try await client.execute(uri: "/v1/images/jobs/\(id)/images/0", method: .get)
            XCTAssertEqual(response.status, .ok)
            served.value = Data(buffer: response.body)
        }
        let server = try XCTUnwrap(served.value)
        XCTAssertGreaterThan(cli.count, 100)
        // The infotext names what ran: the LoRA and the ControlNet, by the same names from both front ends.
        let text = Self.parameters(cli)
        for field in ["Lora weights: \"sd1-lora: 0.8\"", "ControlNet 0: \"sd1-controlnet, none, weight 0.9\"", "Seed: 7", "Model: sd1"] {
            XCTAssertTrue(text.contains(field), "\(field) missing from \(text)")
        }
        XCTAssertEqual(cli, server, "the CLI's PNG and the server's differ:\nCLI: \(Self.parameters(cli))\nserver: \(Self.parameters(server))")
    }

    /// Starting latents: `generate --init-latents FILE` and the native API's `init_latents` give the same PNG; a wrong
    /// shape is a 400 at submission.
    func testInitLatentsFromTheCommandLineAndTheServer() async throws {
        let executable = try XCTUnwrap(Self.executable)
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("swiftdiffusion-init-latents-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        // The fixture's VAE downsamples by 2: a 32x32 image has 16x16 latents.
        let latents = Tensor(shape: [1, 4, 16, 16]) { buffer in for i in buffer.indices { buffer[i] = sinf(Float(i) * 0.37) } }
        let file = directory.appendingPathComponent("start.npy"), output = directory.appendingPathComponent("cli.png")
        try NumPy.write(latents, to: file)
        let process = Process()
        process.executableURL = executable
        process.arguments = [
            "generate", "--model", Self.fixtures.appendingPathComponent("sd1").path, "--width", "32", "--height", "32", "--steps", "2",
            "--seed", "4", "--sampler", "euler", "--cfg", "5", "--init-latents", file.path, "--quiet", "-o", output.path, "a blue square",
        ]
        var environment = ProcessInfo.processInfo.environment
        environment["SWIFTDIFFUSION_THREADS"] = "\(ComputePool.shared.threadCount)"
        process.environment = environment
        process.standardOutput = Pipe()
        try process.run()
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0)
        let cli = try Data(contentsOf: output)
        let encoded = NumPy.encode(latents).base64EncodedString()
        let wrong = NumPy.encode(Tensor(shape: [1, 4, 8, 8]) { _ in }).base64EncodedString()
        let served = UnsafeSendableBox<Data>()
        try await TestServer.withApplication { client in
            let bad = try await API.submit(client, ["prompt": "a blue square", "width": 32, "height": 32, "steps": 2, "init_latents": wrong])
            XCTAssertEqual(bad.status, .badRequest)
            XCTAssertTrue(API.message(bad).contains("init latents have shape [1, 4, 8, 8]"), API.message(bad))
            let id = try await API.submitID(
                client,
                [
                    "model": "sd1", "prompt": "a blue square", "width": 32, "height": 32, "steps": 2, "seed": 4, "sampler": "euler", "cfg": 5,
                    "init_latents": encoded,
                ])
            let job = try await API.waitFinished(client, id)
            XCTAssertEqual(job["status"] as? String, "succeeded", "\(job)")
            served.value = Data(buffer: try await client.execute(uri: "/v1/images/jobs/\(id)/images/0", method: .get).body)
        }
        XCTAssertEqual(cli, try XCTUnwrap(served.value), "init latents: the CLI's PNG and the server's differ")
    }

    /// The text of a PNG's "parameters" chunk (for the failure message).
    static func parameters(_ png: Data) -> String {
        let text = String(decoding: png, as: UTF8.self)
        guard let range = text.range(of: "parameters") else { return "(none)" }
        return String(text[range.upperBound...].prefix(400))
    }
}

final class UnsafeSendableBox<Value>: @unchecked Sendable {
    var value: Value?
}
