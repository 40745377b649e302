import Foundation
import Hummingbird
import Metrics
import Prometheus
import Serving

/// Health, readiness and Prometheus metrics.
struct OperationsAPI {
    let engine: GenerationEngine
    let metrics: PrometheusCollectorRegistry

    func register(on router: Router<ServerRequestContext>) {
        router.get("healthz") { _, _ in try json(["status": "ok"]) }
        router.get("readyz") { _, _ in
            let ready = await engine.isReady && !engine.repository.list(.checkpoint).isEmpty
            return try json(["status": ready ? "ready" : "starting"], status: ready ? .ok : .serviceUnavailable)
        }
        router.get("metrics") { _, _ in
            Gauge(label: "swiftdiffusion_queue_depth").record(await engine.queueDepth)
            var buffer: [UInt8] = []
            metrics.emit(into: &buffer)
            return Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"], body: .init(byteBuffer: ByteBuffer(bytes: buffer)))
        }
    }
}

/// The process-wide Prometheus registry behind swift-metrics (bootstrapped once per process).
enum MetricsBootstrap {
    private static let once: PrometheusCollectorRegistry = {
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        return registry
    }()

    static var registry: PrometheusCollectorRegistry { once }
}
