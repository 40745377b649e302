import Foundation
import Logging
import Serving

/// A one-line progress bar with steps/s and ETA on standard error, drawn only on a terminal.
final class ProgressBar: @unchecked Sendable {
    private let enabled: Bool
    private var stageName = ""
    private var stepStart = DispatchTime.now().uptimeNanoseconds
    private var drawn = false

    init(enabled: Bool) {
        self.enabled = enabled && isatty(STDERR_FILENO) != 0
    }

    func stage(_ name: String) {
        stageName = name
        if name == "denoise" { stepStart = DispatchTime.now().uptimeNanoseconds }
    }

    func step(_ done: Int, of total: Int) {
        guard enabled else { return }
        let elapsed = Double(DispatchTime.now().uptimeNanoseconds - stepStart) / 1e9
        let rate = elapsed > 0 ? Double(done) / elapsed : 0
        let remaining = rate > 0 ? Double(total - done) / rate : 0
        let width = 30
        let filled = total > 0 ? width * done / total : width
        let bar = String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled)
        let line = String(format: "\r%@ [%@] %d/%d  %.2f steps/s  ETA %.0fs ", stageName, bar, done, total, rate, remaining)
        FileHandle.standardError.write(Data(line.utf8))
        drawn = true
    }

    func finish() {
        if drawn { FileHandle.standardError.write(Data("\n".utf8)) }
        drawn = false
    }
}

/// Status lines and warnings on standard error (so standard output carries only results).
struct StatusPrinter {
    let quiet: Bool

    func line(_ text: String) {
        if !quiet { FileHandle.standardError.write(Data((text + "\n").utf8)) }
    }

    func warning(_ text: String) {
        FileHandle.standardError.write(Data(("warning: " + text + "\n").utf8))
    }
}

extension ProgressBar {
    /// The engine's progress reports drawn as this bar (the CLI never cancels).
    var observer: RenderObserver {
        RenderObserver(progress: { [self] progress in
            if progress.stage == "denoise" && progress.step > 0 {
                step(progress.step, of: progress.total)
            } else {
                stage(progress.stage)
            }
        })
    }
}

/// The engine's log on the command line: warnings and errors as `warning: ...` lines on standard error (a LoRA
/// whose modules match no layer, a TAESD that does not fit the model), nothing else.
enum CommandLineLog {
    static func logger() -> Logger {
        Logger(label: "swiftdiffusion") { _ in Handler() }
    }

    struct Handler: LogHandler {
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .warning

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            guard event.level >= .warning else { return }
            let details = (event.metadata ?? [:]).sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }
            StatusPrinter(quiet: false).warning("\(event.message)" + (details.isEmpty ? "" : " (" + details.joined(separator: ", ") + ")"))
        }
    }
}
