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
        let server = ControlNetWorkerServer(
            host: host, port: port, options: options, logger: logger, available: { repository.list(.controlnet).map(\.id) },
            load: { try repository.loadControlNet($0) })
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await server.run() }
            let bound = try await server.port()
            logger.info("ControlNet worker listening", metadata: ["address": "\(host):\(bound)", "controlnets": "\(controlnets)"])
            // The line scripts and tests read for the port.
            FileHandle.standardOutput.write(Data("listening on \(host):\(bound)\n".utf8))
            try await group.waitForAll()
        }
    }
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
    static func executor(settings: ConfigReader, logger: Logger) throws -> RemoteControlNetExecutor? {
        let addresses = settings.string(forKey: "controlnet.workers", default: "").split(separator: ",").map(String.init).filter { !$0.isEmpty }
        guard !addresses.isEmpty else { return nil }
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
        let executor = try RemoteControlNetExecutor(workers: addresses, options: options, logger: logger)
        logger.info("ControlNets run on remote workers", metadata: ["workers": "\(addresses)", "wire": "\(options.wireFloat.rawValue)"])
        return executor
    }
}
