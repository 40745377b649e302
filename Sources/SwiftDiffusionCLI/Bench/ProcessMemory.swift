import Compute
import Foundation

/// Resident-memory readings of this process (Linux `/proc/self/status`; nil elsewhere).
enum ProcessMemory {
    /// Peak resident set size in MiB (`VmHWM`).
    static var peakResidentMiB: Double? { field("VmHWM") }
    /// Current resident set size in MiB (`VmRSS`).
    static var residentMiB: Double? { field("VmRSS") }

    private static func field(_ name: String) -> Double? { ProcessStatus.kilobytes(name).map { Double($0) / 1024 } }
}
