import ArgumentParser
import Configuration
import Foundation
import Logging
import RemoteControlNet
import Serving

/// `swiftdiffusion worker --role controlnet --listen HOST:PORT [--models DIR]`: a ControlNet worker in its own
/// process or host. It keeps ControlNets resident and computes their residuals for `serve --controlnet-worker`
/// over gRPC (Sources/RemoteControlNet/Protos/controlnet_worker.proto). Without `--models` it serves the
/// ControlNets `serve` finds by default (the embedded family included).
///
/// With `--store postgres://...` (or `SWIFTDIFFUSION_STORE`) the worker registers itself in the replicas' shared store
/// (issue 14 item 3): its id, the address replicas dial (`--advertise`, else the `--listen` address), its role and
/// ControlNets; it heartbeats every `--heartbeat-seconds` and deletes its row on SIGTERM/SIGINT, after the calls in
/// flight finish. Every `serve --store` replica on that store uses it.
struct WorkerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "worker",
        abstract: "Serve ControlNets to `serve --controlnet-worker` over gRPC (ControlNet workers in other processes or hosts)."
    )

    @Option(help: "What the worker computes: controlnet.")
    var role: String

    @Option(help: "HOST:PORT to listen on (port 0: any free port, printed at start).")
    var listen: String

    @Option(name: .customLong("models"), help: "A models folder to scan (repeatable); default: what `serve` finds.")
    var models: [String] = []

    @Option(help: "Threads of the worker's compute pool (default: every core).")
    var threads: Int?

    @Option(name: .customLong("max-message-mb"), help: "Largest gRPC message accepted or sent, in MiB (default 256).")
    var maxMessageMB = 256

    @Option(name: .customLong("controlnet-cache-mb"), help: "Loaded ControlNets, in MiB (default 4096).")
    var controlNetCacheMB = 4096

    @Option(name: .customLong("image-cache-mb"), help: "Cached control images of requests in flight, in MiB (default 1024).")
    var imageCacheMB = 1024

    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error (default info).")
    var logLevel = "info"

    @Option(
        help: """
            Register in the replicas' shared store, postgres://USER:PASSWORD@HOST:PORT/DATABASE[?schema=NAME] \
            (default: $SWIFTDIFFUSION_STORE; without either the worker does not register).
            """)
    var store: String?

    @Option(help: "With --store: HOST:PORT replicas dial (default: the --listen address; required when listening on 0.0.0.0 or ::).")
    var advertise: String?

    @Option(name: .customLong("heartbeat-seconds"), help: "With --store: seconds between heartbeats, 0.1 to 5 (default 5; replicas drop a worker silent for 15 s).")
    var heartbeatSeconds: Double = 5

    func run() async throws {
        guard role == "controlnet" else {
            throw CLIError("unknown worker role '\(role)' (controlnet; the unet-branch role is not built)", exitCode: 2)
        }
        let (host, port) = try parseAddress(listen, what: "--listen", allowPortZero: true)
        guard (1...4096).contains(maxMessageMB), (1...(1 << 20)).contains(controlNetCacheMB), (1...(1 << 20)).contains(imageCacheMB) else {
            throw CLIError("--max-message-mb must be 1 to 4096, the cache sizes 1 to \(1 << 20)", exitCode: 2)
        }
        if let threads, !(1...256).contains(threads) { throw CLIError("--threads must be 1 to 256", exitCode: 2) }
        var logger = Logger(label: "swiftdiffusion-worker")
        logger.logLevel = Logger.Level(rawValue: logLevel) ?? .info
        let repository = try ModelLocation.repository(folders: models)
        let controlnets = repository.list(.controlnet).map(\.id)
        guard !controlnets.isEmpty else { throw CLIError("no ControlNet found (embedded family missing and --models has none)") }

        var options = ControlNetWorkerOptions()
        options.maximumMessageBytes = maxMessageMB << 20
        options.modelCacheBytes = controlNetCacheMB << 20
        options.imageCacheBytes = imageCacheMB << 20
        options.threads = threads
        let storeURL = store ?? ProcessInfo.processInfo.environment["SWIFTDIFFUSION_STORE"].flatMap { $0.isEmpty ? nil : $0 }
        if let advertise {
            guard storeURL != nil else { throw CLIError("--advertise needs --store (or SWIFTDIFFUSION_STORE)", exitCode: 2) }
            _ = try parseAddress(advertise, what: "--advertise")
        } else if storeURL != nil, ["0.0.0.0", "::", "0:0:0:0:0:0:0:0"].contains(host) {
            throw CLIError("--listen \(listen) is not an address replicas can dial: give --advertise HOST:PORT", exitCode: 2)
        }
        // Replicas drop a worker whose heartbeat is 15 s old: at most 5 s leaves two heartbeats of slack.
        guard heartbeatSeconds >= 0.1, heartbeatSeconds <= 5 else {
            throw CLIError("--heartbeat-seconds must be 0.1 to 5 (replicas drop a worker silent for 15 s)", exitCode: 2)
        }
        let registry: PostgresJobStore?
        if let storeURL {
            registry = try await SharedStoreOption.open(url: storeURL, leaseSeconds: 15, logger: logger)
        } else {
            registry = nil
        }

        let server = ControlNetWorkerServer(
            host: host, port: port, options: options, logger: logger, available: { repository.list(.controlnet).map(\.id) },
            load: { try repository.loadControlNet($0) })
        let signals = ShutdownSignals { server.stop() }
        defer { signals.cancel() }
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await server.run() }
            let bound = try await server.port()
            logger.info("ControlNet worker listening", metadata: ["address": "\(host):\(bound)", "controlnets": "\(controlnets)"])
            var heartbeats: Task<Void, Never>?
            if let registry {
                let address = advertise ?? (host.contains(":") ? "[\(host)]:\(bound)" : "\(host):\(bound)")
                let registration = WorkerRegistration(
                    registry: registry, worker: RegisteredWorker(id: registry.replicaID, address: address, role: role, models: controlnets),
                    interval: .milliseconds(Int64(heartbeatSeconds * 1000)), logger: logger)
                do {
                    try await registration.register()
                } catch {
                    server.stop()
                    throw CLIError("cannot register in the job store: \(error)")
                }
                heartbeats = Task { await registration.heartbeats() }
            }
            // The line scripts and tests read for the port.
            FileHandle.standardOutput.write(Data("listening on \(host):\(bound)\n".utf8))
            do {
                try await group.waitForAll()
            } catch {
                heartbeats?.cancel()
                await heartbeats?.value
                throw error
            }
            // Stopped (SIGTERM/SIGINT): the row goes once the calls in flight are done.
            heartbeats?.cancel()
            await heartbeats?.value
        }
        registry?.close()
    }
}

/// SIGTERM and SIGINT call `stop` instead of ending the process, so a worker shuts down cleanly.
final class ShutdownSignals {
    private let sources: [any DispatchSourceSignal]

    init(_ stop: @escaping @Sendable () -> Void) {
        sources = [SIGTERM, SIGINT].map { number in
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler(handler: stop)
            source.resume()
            return source
        }
    }

    func cancel() { for source in sources { source.cancel() } }
}

/// HOST:PORT (or [IPv6]:PORT) from a flag, with a CLI message naming the flag.
func parseAddress(_ address: String, what: String, allowPortZero: Bool = false) throws -> (String, Int) {
    do {
        return try parseHostPort(address, allowPortZero: allowPortZero)
    } catch {
        throw CLIError("\(what) must be HOST:PORT, got '\(address)'", exitCode: 2)
    }
}

/// `serve --controlnet-worker`: the remote ControlNet executor from the settings, nil without workers.
enum RemoteWorkers {
    /// With a `registry` (`serve --store postgres://...`), the workers registered there too (issue 14 item 3).
    static func executor(settings: ConfigReader, registry: (any WorkerRegistry)? = nil, logger: Logger) throws -> RemoteControlNetExecutor? {
        let addresses = settings.string(forKey: "controlnet.workers", default: "").split(separator: ",").map(String.init).filter { !$0.isEmpty }
        guard !addresses.isEmpty || registry != nil else { return nil }
        for address in addresses { _ = try parseAddress(address, what: "--controlnet-worker") }
        var options = RemoteControlNetExecutor.Options()
        let timeout = settings.double(forKey: "controlnet.worker_timeout", default: 30)
        guard timeout > 0, timeout <= 3600 else { throw CLIError("invalid settings: controlnet.worker_timeout must be in (0, 3600] seconds") }
        options.timeout = .milliseconds(Int64(timeout * 1000))
        switch settings.string(forKey: "controlnet.wire", default: "fp32") {
        case "fp32": options.wireFloat = .float32
        case "fp16": options.wireFloat = .float16
        case let other: throw CLIError("invalid settings: controlnet.wire must be fp32 or fp16, got '\(other)'")
        }
        let executor = try RemoteControlNetExecutor(workers: addresses, registry: registry, options: options, logger: logger)
        logger.info(
            "ControlNets run on remote workers", metadata: [
                "workers": "\(addresses)", "registered": "\(registry == nil ? "no" : "from the shared store")", "wire": "\(options.wireFloat.rawValue)",
            ])
        return executor
    }
}
