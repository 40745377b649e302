import Foundation
import Hummingbird
import Logging
import Prometheus
import Serving

/// Server settings (the `serve` command fills them from flags, environment and a config file).
public struct ServerConfiguration: Sendable {
    public var host = "127.0.0.1"
    public var port = 7860
    /// Bearer tokens accepted on every route but health; empty means no authentication.
    public var tokens: Set<String> = []

    public init() {}
}

/// Builds the HTTP application: every API surface on one router, on one engine.
public enum ServerApplication {
    public static func router(engine: GenerationEngine, configuration: ServerConfiguration) -> Router<ServerRequestContext> {
        let router = Router(context: ServerRequestContext.self)
        router.add(middleware: ErrorMappingMiddleware())
        router.add(middleware: AuthMiddleware(tokens: configuration.tokens))
        router.add(middleware: BodyLimitMiddleware())
        OperationsAPI(engine: engine, metrics: MetricsBootstrap.registry).register(on: router)
        NativeAPI(engine: engine).register(on: router)
        OpenAIAPI(engine: engine).register(on: router)
        A1111API(engine: engine).register(on: router)
        WebPage().register(on: router)
        OpenAPIDocument().register(on: router)
        // Last: it wraps only the not-found responder (405 with Allow for a known path, else a JSON 404).
        router.add(middleware: RouteFallbackMiddleware(routes: router.routes))
        return router
    }

    public static func application(engine: GenerationEngine, configuration: ServerConfiguration, logger: Logger)
        -> some ApplicationProtocol
    {
        Application(
            router: router(engine: engine, configuration: configuration),
            configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "SwiftDiffusion"),
            services: [engine],
            logger: logger)
    }

    /// Bootstraps metrics before anything records them.
    public static func bootstrapMetrics() { _ = MetricsBootstrap.registry }
}
