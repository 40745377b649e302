import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import ParityTesting
import Server
import Serving

/// An in-process server over the tiny fixture models (Tests/Fixtures/models): checkpoints sd1, sd2, sdxl;
/// LoRAs sd1-lora, sd1-lora-b; ControlNets sd1-controlnet, sd1-controlnet-b. Jobs run for real (a 32x32
/// image with a few steps takes milliseconds).
enum TestServer {
    /// A models folder in the layout `serve --models` scans, made of links to the fixtures.
    static let modelsFolder: URL = FixtureModels.linkedFolder(named: "swiftdiffusion-test-models")

    /// A fresh engine (in-memory store unless one is given) on the fixture models, default model sd1.
    static func engine(
        configuration: EngineConfiguration = EngineConfiguration(), store: any JobStore = InMemoryJobStore()
    ) -> GenerationEngine {
        ServerApplication.bootstrapMetrics()
        let repository = ModelRepository(roots: [modelsFolder], embeddedModels: nil, defaultModel: "sd1")
        var logger = Logger(label: "test")
        logger.logLevel = .warning
        return GenerationEngine(configuration: configuration, repository: repository, store: store, logger: logger)
    }

    /// Runs `body` against an application whose engine runs in the background.
    static func withApplication(
        engine: GenerationEngine = TestServer.engine(), server: ServerConfiguration = ServerConfiguration(),
        _ body: @escaping @Sendable (any TestClientProtocol) async throws -> Void
    ) async throws {
        let router = ServerApplication.router(engine: engine, configuration: server)
        var logger = Logger(label: "test")
        logger.logLevel = .warning
        let application = Application(router: router, services: [engine], logger: logger)
        try await application.test(.router, body)
    }

    /// JSON body helper.
    static func json(_ object: Any) -> ByteBuffer {
        ByteBuffer(bytes: (try? JSONSerialization.data(withJSONObject: object)) ?? Data())
    }
}

extension ByteBuffer {
    /// The body parsed as a JSON object (empty if it is not one).
    var jsonObject: [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(buffer: self))) as? [String: Any] ?? [:]
    }
}
