import Foundation

/// Resident-memory readings of this process (Linux `/proc/self/status`; nil elsewhere).
enum ProcessMemory {
    /// Peak resident set size in MiB (`VmHWM`).
    static var peakResidentMiB: Double? { field("VmHWM") }
    /// Current resident set size in MiB (`VmRSS`).
    static var residentMiB: Double? { field("VmRSS") }

    private static func field(_ name: String) -> Double? {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return nil }
        for line in status.split(separator: "\n") where line.hasPrefix(name + ":") {
            let parts = line.split(separator: " ", omittingEmptySubsequences: true)
            if parts.count >= 2, let kilobytes = Double(parts[1]) { return kilobytes / 1024 }
        }
        return nil
    }
}
