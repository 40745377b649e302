import Foundation

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
