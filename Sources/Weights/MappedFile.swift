import Compute
import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A read-only memory mapping of a whole file. Weight files are mapped, never read into a `Data`, so a
/// multi-gigabyte checkpoint costs page cache, not heap, and only the tensors actually used are paged in. A small file
/// read whole and soon dropped (a LoRA) can be read into a buffer instead (`readingUpTo`).
final class MappedFile: @unchecked Sendable {
    let path: String
    /// The file's bytes; empty for an empty file. Valid for the lifetime of this object.
    let bytes: UnsafeRawBufferPointer

    /// The buffer a small file was read into instead of mapped (`readingUpTo`); nil for a mapping.
    private let readBuffer: TensorStorage?

    /// True when `bytes` is this object's own read buffer (which its user may change), false for a read-only mapping.
    var isWritable: Bool { readBuffer != nil }

    /// Maps the file; one of at most `readingUpTo` bytes is read into memory instead.
    ///
    /// Reading suits small files read whole and soon dropped (LoRAs): a mapping faults its pages in one by one and,
    /// unmapped, makes the kernel flush every other core's TLB, interrupting the threads computing there; the buffer
    /// read into comes from the tensor buffer cache and goes back to it.
    init(url: URL, readingUpTo readLimit: Int = 0) throws {
        path = url.path
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else {
            throw WeightsError.cannotOpen(path: path, reason: String(cString: strerror(errno)))
        }
        defer { close(descriptor) }

        var status = stat()
        guard fstat(descriptor, &status) == 0 else {
            throw WeightsError.cannotOpen(path: path, reason: String(cString: strerror(errno)))
        }
        guard (status.st_mode & S_IFMT) == S_IFREG else {
            let kind = (status.st_mode & S_IFMT) == S_IFDIR ? "it is a directory" : "it is not a regular file"
            throw WeightsError.cannotOpen(path: path, reason: kind)
        }
        let size = Int(status.st_size)
        guard size > 0 else {
            bytes = UnsafeRawBufferPointer(start: nil, count: 0)
            readBuffer = nil
            return
        }
        if size <= readLimit {
            let buffer = TensorStorage(count: (size + 3) / 4)
            let target = UnsafeMutableRawPointer(buffer.baseAddress)
            var done = 0
            while done < size {
                let count = pread(descriptor, target + done, size - done, off_t(done))
                if count < 0 && errno == EINTR { continue }
                guard count > 0 else {
                    let reason = count == 0 ? "the file shrank while it was read" : String(cString: strerror(errno))
                    throw WeightsError.cannotOpen(path: path, reason: "read failed: \(reason)")
                }
                done += count
            }
            bytes = UnsafeRawBufferPointer(start: target, count: size)
            readBuffer = buffer
            return
        }
        readBuffer = nil
        let address = mmap(nil, size, PROT_READ, MAP_PRIVATE, descriptor, 0)
        guard let address, address != UnsafeMutableRawPointer(bitPattern: -1) else {
            throw WeightsError.cannotOpen(path: path, reason: "mmap failed: \(String(cString: strerror(errno)))")
        }
        bytes = UnsafeRawBufferPointer(start: address, count: size)
    }

    deinit {
        if readBuffer == nil, let base = bytes.baseAddress {
            munmap(UnsafeMutableRawPointer(mutating: base), bytes.count)
        }
    }
}
