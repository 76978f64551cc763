#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A whole file mapped read-only and shared: the page cache backs it, so several
/// processes serving the same model share one copy, and nothing is read until used.
public final class MappedFile: @unchecked Sendable {
    public let path: String
    public let size: Int
    /// The first byte of the mapping (nil for an empty file).
    public let base: UnsafeRawPointer?
    /// Device, inode, size and modification time: changes whenever the file does.
    let identity: String

    public init(path: String) throws(CheckpointError) {
        self.path = path
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            let code = errno
            if code == ENOENT { throw .missingFile(path: path) }
            throw .unreadableFile(path: path, reason: String(cString: strerror(code)))
        }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            throw .unreadableFile(path: path, reason: String(cString: strerror(errno)))
        }
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            throw .unreadableFile(path: path, reason: "not a regular file")
        }
        size = Int(info.st_size)
        identity = "\(info.st_dev):\(info.st_ino):\(info.st_size):\(info.st_mtim.tv_sec).\(info.st_mtim.tv_nsec)"
        if size == 0 {
            base = nil
            return
        }
        guard let mapped = mmap(nil, size, PROT_READ, MAP_SHARED, fd, 0), mapped != MAP_FAILED else {
            throw .unreadableFile(path: path, reason: "mmap: " + String(cString: strerror(errno)))
        }
        base = UnsafeRawPointer(mapped)
    }

    deinit {
        if let base { munmap(UnsafeMutableRawPointer(mutating: base), size) }
    }

    /// Drop this process's page mappings (the page cache keeps the data; a later access
    /// maps it again). Used once the weights live in a repacked copy.
    func releaseResidentPages() {
        if let base { _ = madvise(UnsafeMutableRawPointer(mutating: base), size, MADV_DONTNEED) }
    }

    /// The bytes [offset, offset + count) of the file; the caller has checked the range.
    func bytes(at offset: Int, count: Int) -> UnsafeRawBufferPointer {
        guard let base else { return UnsafeRawBufferPointer(start: nil, count: 0) }
        return UnsafeRawBufferPointer(start: base + offset, count: count)
    }
}
