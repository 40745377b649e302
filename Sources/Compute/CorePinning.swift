import CCPUFeatures

/// Core placement: pins OS threads to cores (Linux `sched_setaffinity`), so that the UNet and the ControlNet
/// workers each keep cores of their own when asked (`serve --pin-cores`).
public enum CorePinning {
    /// Pins the calling thread to `cores`; false where pinning is not supported or a core is not available.
    @discardableResult
    public static func pinCurrentThread(to cores: [Int]) -> Bool {
        let narrow = cores.map { Int32(clamping: $0) }
        return narrow.withUnsafeBufferPointer { sd_pin_current_thread($0.baseAddress, Int32($0.count)) }
    }

    /// The cores the calling thread may run on.
    public static func currentThreadCores() -> [Int] {
        var buffer = [Int32](repeating: 0, count: 1024)
        let count = Int(sd_current_thread_cores(&buffer, Int32(buffer.count)))
        return buffer.prefix(count).map(Int.init)
    }
}
