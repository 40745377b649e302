import Compute
import ArgumentParser
import Configuration
import Foundation
import Hummingbird
import Logging
import RemoteControlNet
import Server
import Serving
import SystemPackage

/// `swiftdiffusion serve`: the HTTP server (native async API, AUTOMATIC1111 and OpenAI surfaces, web page).
///
/// Settings come from, highest priority first: flags, `SWIFTDIFFUSION_*` environment variables
/// (`SWIFTDIFFUSION_PORT`, `SWIFTDIFFUSION_QUEUE_CAPACITY`, ...), and a JSON file given with `--config`
/// (`{"port": 7860, "queue": {"capacity": 32}, ...}`).
struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve text-to-image over HTTP: native /v1 jobs API, AUTOMATIC1111 /sdapi/v1, OpenAI /v1/images/generations."
    )

    @Option(help: "Address to listen on (config key: host).")
    var host: String?

    @Option(help: "Port (config key: port; default 7860, AUTOMATIC1111's).")
    var port: Int?

    @Option(name: .customLong("models"), help: "A models folder to scan (repeatable; config key: models, comma-separated).")
    var models: [String] = []

    @Option(help: "A JSON configuration file.")
    var config: String?

    @Option(
        help: """
            Job database: a SQLite file path, or 'memory' (config key: database; default \
            $XDG_STATE_HOME/swiftdiffusion/jobs.sqlite, else ~/.local/state/swiftdiffusion/jobs.sqlite).
            """)
    var database: String?

    @Option(
        help: """
            Job store shared by replicas: postgres://USER:PASSWORD@HOST:PORT/DATABASE[?schema=NAME] (config key: store;             default: the SQLite --database).
            """)
    var store: String?

    @Option(name: .customLong("lease-seconds"), help: "With --store postgres://: seconds a claimed job's lease lasts without a heartbeat (config key: store.lease_seconds; default 15).")
    var leaseSeconds: Double?

    @Option(name: .customLong("max-wait"), help: "Seconds a queued job may be passed over for jobs of the adapters in memory (config key: queue.max_wait; default 30).")
    var maxWait: Double?

    @Option(
        help: """
            With --store postgres://: how replicas pick queued jobs: affinity (what each replica holds; docs/scale-out.md) \
            or random (each job to the replica its id hashes to: the baseline) (config key: queue.placement; default affinity).
            """)
    var placement: PlacementSettings.Policy?

    @Option(name: .customLong("locality-wait"), help: "With --store postgres:// and affinity placement: seconds a young job is left to a replica that holds more of it, busy or idle (config key: queue.locality_wait; default 1; 0: never).")
    var localityWait: Double?

    @Option(name: .customLong("token"), help: "A bearer token clients must send (repeatable; config key: tokens, comma-separated).")
    var tokens: [String] = []

    @Option(name: .customLong("queue-capacity"), help: "Queued jobs beyond this get 429 (config key: queue.capacity; default 32).")
    var queueCapacity: Int?

    @Option(name: .customLong("lora-deadline"), help: "Bounded async LoRA loading: patch LoRAs in by this fraction of the steps; 0 = load first (config key: lora.deadline; default 0.05, from docs/bal-study.md).")
    var loraDeadline: Double?

    @Option(name: .customLong("lora-mode"), help: "merged or runtime (config key: lora.mode; default merged).")
    var loraMode: String?

    @Option(
        name: .customLong("controlnet-threads"),
        help: "Threads of a ControlNet worker that runs ControlNets beside the UNet's down path; 0 = one after another (config key: controlnet.threads; default 0).")
    var controlNetThreads: Int?

    @Option(
        name: .customLong("unet-threads"),
        help: "With --controlnet-threads: the UNet's threads (config key: unet.threads; default: the cores the ControlNet worker leaves).")
    var unetThreads: Int?

    @Flag(
        name: .customLong("pin-cores"),
        help: "With --controlnet-threads: pin the UNet's threads to the first cores and the ControlNet worker's to the next (config key: pin_cores).")
    var pinCores = false

    @Option(
        name: .customLong("controlnet-worker"),
        help: "A ControlNet worker (`swiftdiffusion worker --role controlnet`) at HOST:PORT (repeatable; config key: controlnet.workers, comma-separated).")
    var controlNetWorkers: [String] = []

    @Option(
        name: .customLong("controlnet-worker-timeout"),
        help: "Seconds a ControlNet worker call may take before the request finishes with local ControlNets (config key: controlnet.worker_timeout; default 30).")
    var controlNetWorkerTimeout: Double?

    @Option(
        name: .customLong("controlnet-wire"),
        help: "Tensors to and from ControlNet workers: fp32 or fp16 (config key: controlnet.wire; default fp32).")
    var controlNetWire: String?

    @Option(
        name: .customLong("taesd"),
        help: "Decode with TAESD (a diffusers AutoencoderTiny folder) instead of each model's VAE where it fits (config key: taesd).")
    var taesd: String?

    @Option(name: .customLong("model-cache-mb"), help: "Loaded base models, in MiB (config key: cache.models_mb; default 16384).")
    var modelCacheMB: Int?

    @Option(name: .customLong("controlnet-cache-mb"), help: "Loaded ControlNets, in MiB (config key: cache.controlnets_mb; default 4096).")
    var controlNetCacheMB: Int?

    @Option(name: .customLong("lora-cache-mb"), help: "Parsed LoRA files, in MiB (config key: cache.loras_mb; default 2048).")
    var loraCacheMB: Int?

    @Option(
        help: "fp32, bf16 (needs AVX512-BF16 or AMX) or auto: precision of the models' linear and conv layers (config key: precision; default fp32).")
    var precision: String?

    @Option(name: .customLong("loaded-models"), help: "Base models kept loaded (config key: models_loaded; default 1).")
    var loadedModels: Int?

    @Option(name: .customLong("retention-hours"), help: "Keep finished jobs this long (config key: retention_hours; default 24).")
    var retentionHours: Double?

    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error (config key: log_level; default info).")
    var logLevel: String?

    func run() async throws {
        let settings = try await settingsReader()
        var logger = Logger(label: "swiftdiffusion")
        logger.logLevel = Logger.Level(rawValue: settings.string(forKey: "log_level", default: "info")) ?? .info
        ServerApplication.bootstrapMetrics()

        var engineConfiguration = EngineConfiguration()
        engineConfiguration.queueCapacity = settings.int(forKey: "queue.capacity", default: engineConfiguration.queueCapacity)
        engineConfiguration.loraDeadlineFraction = settings.double(forKey: "lora.deadline", default: engineConfiguration.loraDeadlineFraction)
        engineConfiguration.loraMode = settings.string(forKey: "lora.mode", default: engineConfiguration.loraMode)
        engineConfiguration.controlNetWorkerThreads = settings.int(forKey: "controlnet.threads", default: 0)
        let unetThreads = settings.int(forKey: "unet.threads", default: 0)
        engineConfiguration.unetThreads = unetThreads > 0 ? unetThreads : nil
        engineConfiguration.pinCores = settings.bool(forKey: "pin_cores", default: false)
        if unetThreads < 0 || unetThreads > 256 { throw CLIError("invalid settings: unet.threads must be between 1 and 256") }
        guard (0..<max(2, ProcessInfo.processInfo.activeProcessorCount)).contains(engineConfiguration.controlNetWorkerThreads) else {
            throw CLIError("invalid settings: controlnet.threads must be between 0 and the number of cores minus one")
        }
        do {
            engineConfiguration.precision = try PrecisionOption.resolve(settings.string(forKey: "precision", default: "fp32"))
        } catch let error as ValidationError {
            throw CLIError("invalid settings: \(error.message)")
        }
        engineConfiguration.loadedModelLimit = settings.int(forKey: "models_loaded", default: engineConfiguration.loadedModelLimit)
        engineConfiguration.retention = 3600 * settings.double(forKey: "retention_hours", default: 24)
        for (key, keyPath) in [
            ("cache.models_mb", \EngineConfiguration.modelCacheBytes), ("cache.controlnets_mb", \EngineConfiguration.controlNetCacheBytes),
            ("cache.loras_mb", \EngineConfiguration.loraCacheBytes),
        ] {
            let megabytes = settings.int(forKey: ConfigKey(key), default: engineConfiguration[keyPath: keyPath] >> 20)
            guard (1...(1 << 24)).contains(megabytes) else { throw CLIError("invalid settings: \(key) must be between 1 and \(1 << 24)") }
            engineConfiguration[keyPath: keyPath] = megabytes << 20
        }
        if let taesd = settings.string(forKey: "taesd") { engineConfiguration.taesdFolder = try InputPath.existing(taesd).path }
        engineConfiguration.maximumGroupingWait = settings.double(forKey: "queue.max_wait", default: engineConfiguration.maximumGroupingWait)
        guard engineConfiguration.maximumGroupingWait >= 0 else { throw CLIError("invalid settings: queue.max_wait must be >= 0") }
        let placementName = settings.string(forKey: "queue.placement", default: engineConfiguration.placement.policy.rawValue)
        guard let placementPolicy = PlacementSettings.Policy(rawValue: placementName) else {
            throw CLIError("invalid settings: queue.placement must be affinity or random, not '\(placementName)'")
        }
        engineConfiguration.placement.policy = placementPolicy
        engineConfiguration.placement.localityWait = settings.double(
            forKey: "queue.locality_wait", default: engineConfiguration.placement.localityWait)
        guard engineConfiguration.placement.localityWait >= 0, engineConfiguration.placement.localityWait.isFinite else {
            throw CLIError("invalid settings: queue.locality_wait must be >= 0")
        }
        guard engineConfiguration.queueCapacity >= 1, (0...1).contains(engineConfiguration.loraDeadlineFraction),
            ["merged", "runtime"].contains(engineConfiguration.loraMode)
        else { throw CLIError("invalid settings: queue.capacity >= 1, lora.deadline in [0, 1], lora.mode merged|runtime") }

        let repository = try ModelLocation.repository(folders: settings.string(forKey: "models", default: "").split(separator: ",").map(String.init))
        let hasStaticWorkers = !settings.string(forKey: "controlnet.workers", default: "").isEmpty
        if hasStaticWorkers && engineConfiguration.controlNetWorkerThreads > 0 {
            throw CLIError("invalid settings: --controlnet-worker and --controlnet-threads exclude each other")
        }
        guard !repository.list(.checkpoint).isEmpty else { throw CLIError("no model found (embedded model missing and --models has none)") }

        // The job database lives in the state folder unless one is named; never in the working directory.
        let databasePath = try settings.string(forKey: "database") ?? StateDirectory.jobsDatabase()
        if databasePath != "memory" {
            let folder = URL(fileURLWithPath: (databasePath as NSString).expandingTildeInPath).deletingLastPathComponent()
            guard FileManager.default.fileExists(atPath: folder.path) else { throw CLIError.noSuchFile(folder.path) }
        }
        let store: any JobStore
        if let url = settings.string(forKey: "store") {
            let shared = try await SharedStoreOption.open(url: url, leaseSeconds: settings.double(forKey: "store.lease_seconds", default: 15), logger: logger)
            store = shared
            // ControlNet workers registered in the shared store (issue 14 item 3), unless ControlNets run in process.
            if engineConfiguration.controlNetWorkerThreads > 0 {
                logger.info("ControlNets run in process (--controlnet-threads); ControlNet workers registered in the store are not used")
            } else {
                engineConfiguration.controlNetExecutor = try RemoteWorkers.executor(settings: settings, registry: shared, logger: logger)
            }
        } else {
            engineConfiguration.controlNetExecutor = try RemoteWorkers.executor(settings: settings, logger: logger)
            do {
                store = databasePath == "memory" ? InMemoryJobStore() : try SQLiteJobStore(path: (databasePath as NSString).expandingTildeInPath)
            } catch {
                throw CLIError("cannot open the job database \(databasePath): \(error)")
            }
        }
        let engine = GenerationEngine(configuration: engineConfiguration, repository: repository, store: store, logger: logger)

        var server = ServerConfiguration()
        server.host = settings.string(forKey: "host", default: server.host)
        server.port = settings.int(forKey: "port", default: server.port)
        server.tokens = Set(settings.string(forKey: "tokens", default: "").split(separator: ",").map(String.init).filter { !$0.isEmpty })
        logger.info(
            "serving", metadata: [
                "address": "http://\(server.host):\(server.port)", "models": "\(repository.list(.checkpoint).map(\.id))",
                "default": "\(repository.defaultModel ?? "-")", "database": "\(settings.string(forKey: "store").map(SharedStoreOption.redacted) ?? databasePath)", "auth": "\(server.tokens.isEmpty ? "off" : "bearer")",
            ])
        // Which kernels run, and a warning with the fix when they are slower than this processor allows.
        let kernels = KernelReport.make(measure: true)
        logger.info(
            "kernels", metadata: ["processor": "\(kernels.processor.summary)", "gemm": "\(kernels.gemm.summary)", "simd": "\(kernels.simd.summary)"])
        if let fraction = kernels.fraction {
            logger.info("GEMM speed", metadata: ["share_of_fma_peak": "\(Int((fraction * 100).rounded())) %"])
        }
        if let warning = kernels.warning { logger.warning("\(warning)") }
        logger.info("\(PrecisionOption.describe(engineConfiguration.precision))")
        let application = ServerApplication.application(engine: engine, configuration: server, logger: logger)
        try await application.runService()
    }

    /// Flags over `SWIFTDIFFUSION_*` environment variables over the JSON file.
    private func settingsReader() async throws -> ConfigReader {
        var flags: [AbsoluteConfigKey: ConfigValue] = [:]
        func set(_ key: String, _ content: ConfigContent?) {
            if let content { flags[AbsoluteConfigKey(ConfigKey(key))] = ConfigValue(content, isSecret: key == "tokens" || key == "store") }
        }
        set("host", host.map { .string($0) })
        set("port", port.map { .int($0) })
        set("models", models.isEmpty ? nil : .string(models.joined(separator: ",")))
        set("database", database.map { .string($0) })
        set("store", store.map { .string($0) })
        set("store.lease_seconds", leaseSeconds.map { .double($0) })
        set("queue.max_wait", maxWait.map { .double($0) })
        set("queue.placement", placement.map { .string($0.rawValue) })
        set("queue.locality_wait", localityWait.map { .double($0) })
        set("tokens", tokens.isEmpty ? nil : .string(tokens.joined(separator: ",")))
        set("queue.capacity", queueCapacity.map { .int($0) })
        set("lora.deadline", loraDeadline.map { .double($0) })
        set("lora.mode", loraMode.map { .string($0) })
        set("controlnet.threads", controlNetThreads.map { .int($0) })
        set("unet.threads", unetThreads.map { .int($0) })
        set("pin_cores", pinCores ? .bool(true) : nil)
        set("controlnet.workers", controlNetWorkers.isEmpty ? nil : .string(controlNetWorkers.joined(separator: ",")))
        set("controlnet.worker_timeout", controlNetWorkerTimeout.map { .double($0) })
        set("controlnet.wire", controlNetWire.map { .string($0) })
        set("models_loaded", loadedModels.map { .int($0) })
        set("taesd", taesd.map { .string($0) })
        set("cache.models_mb", modelCacheMB.map { .int($0) })
        set("cache.controlnets_mb", controlNetCacheMB.map { .int($0) })
        set("cache.loras_mb", loraCacheMB.map { .int($0) })
        set("retention_hours", retentionHours.map { .double($0) })
        set("log_level", logLevel.map { .string($0) })
        set("precision", precision.map { .string($0) })
        let prefix = "SWIFTDIFFUSION_"
        var environment: [String: String] = [:]
        for (name, value) in ProcessInfo.processInfo.environment where name.hasPrefix(prefix) {
            environment[String(name.dropFirst(prefix.count))] = value
        }
        var providers: [any ConfigProvider] = [
            InMemoryProvider(name: "flags", values: flags),
            EnvironmentVariablesProvider(environmentVariables: environment, secretsSpecifier: .specific(["TOKENS", "STORE"])),
        ]
        if let config {
            guard FileManager.default.fileExists(atPath: config) else { throw CLIError.noSuchFile(config) }
            do {
                providers.append(try await FileProvider<JSONSnapshot>(filePath: FilePath(config)))
            } catch {
                throw CLIError("cannot read config file \(config): \(error)")
            }
        }
        return ConfigReader(providers: providers)
    }
}

extension PlacementSettings.Policy: ExpressibleByArgument {}
