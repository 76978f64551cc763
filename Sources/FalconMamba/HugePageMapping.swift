#if canImport(Glibc)
import Glibc
#endif

/// How much of a file mapping the kernel maps with 2 MiB pages, and how to ask for more.
///
/// Streaming gigabytes of weights a step through 4 KiB pages costs a TLB miss every 64
/// cache lines and stops the hardware prefetchers at every page boundary. A file in the
/// page cache maps with 2 MiB pages only where the kernel holds it in 2 MiB folios:
/// read in by faults on a mapping marked `MADV_HUGEPAGE` (readahead then allocates
/// PMD-sized folios), or written with large `write`s. A file that reached the page cache
/// another way (copied or restored with small writes, or read back by a mapping without
/// the advice) stays in small folios, and so in 4 KiB pages, for as long as it stays
/// cached. Measured with the decode product alone (`PACKED_STREAM_PAGES=both
/// Benchmarks/kernels/run.sh`, both copies alternating in one process): 5-32% faster
/// on 2 MiB pages, 1 and 4 tokens, in every one of 12 pairs (docs/performance.md).
enum HugePageMapping {
    /// 2 MiB: a PMD-level page on x86-64 and on aarch64 with 4 KiB base pages.
    static let pageBytes = 2 << 20

    /// `MADV_POPULATE_READ` (Linux 5.14): fault every page of a range in, as a read.
    /// Not every libc's headers name it.
    static let populateRead: Int32 = 22

    /// Mark a file mapping for huge pages and map all of it now (from the page cache,
    /// or read ahead from disk in 2 MiB folios), so the first requests pay no faults.
    static func adviseAndPopulate(_ base: UnsafeMutableRawPointer, length: Int) {
        _ = madvise(base, length, MADV_HUGEPAGE)
        if madvise(base, length, populateRead) == 0 { return }
        // Older kernels: touch one byte a page.
        var sum: UInt8 = 0
        for offset in stride(from: 0, to: length, by: Int(getpagesize())) {
            sum &+= base.load(fromByteOffset: offset, as: UInt8.self)
        }
        withExtendedLifetime(sum) {}
    }

    /// The bytes of the mapping that starts at `base` that are mapped with 2 MiB pages
    /// (`FilePmdMapped` in /proc/self/smaps), nil where the kernel does not say.
    static func hugeBytes(of base: UnsafeRawPointer) -> Int? {
        guard let file = fopen("/proc/self/smaps", "r") else { return nil }
        defer { fclose(file) }
        var text: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let count = fread(&buffer, 1, buffer.count, file)
            if count <= 0 { break }
            text.append(contentsOf: buffer[0..<count])
        }
        return hugeBytes(inSmaps: String(decoding: text, as: UTF8.self), start: UInt(bitPattern: base))
    }

    /// `FilePmdMapped` of the mapping that starts at `start`, read from smaps text: each
    /// mapping is a line `start-end perms offset dev inode [path]` and then `Key: value kB`
    /// lines until the next mapping.
    static func hugeBytes(inSmaps text: String, start: UInt) -> Int? {
        var inMapping = false
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard let first = fields.first else { continue }
            if let dash = first.firstIndex(of: "-"), !first.hasSuffix(":"),
               let low = UInt(first[first.startIndex..<dash], radix: 16) {
                if inMapping { return nil }  // the mapping ended without the field
                inMapping = low == start
                continue
            }
            if inMapping, first == "FilePmdMapped:", fields.count >= 2, let kilobytes = Int(fields[1]) {
                return kilobytes * 1024
            }
        }
        return nil
    }

    /// Whether files in `directory` come into the page cache in 2 MiB folios (the file
    /// system supports large folios, and transparent huge pages are on): a 4 MiB file
    /// written with one `write`, mapped, and asked how much of it maps with 2 MiB pages.
    /// A few milliseconds; false where the folder is not writable.
    static func fileSystemKeepsHugeFolios(directory: String) -> Bool {
        let path = directory + "/.huge-folio-probe-\(getpid())"
        let fd = Glibc.open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return false }
        defer {
            close(fd)
            unlink(path)
        }
        let bytes = 2 * pageBytes
        let data = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 4096)
        defer { data.deallocate() }
        memset(data, 1, bytes)
        guard write(fd, data, bytes) == bytes,
              let mapped = mmap(nil, bytes, PROT_READ, MAP_SHARED, fd, 0), mapped != MAP_FAILED else { return false }
        defer { munmap(mapped, bytes) }
        adviseAndPopulate(mapped, length: bytes)
        return (hugeBytes(of: mapped) ?? 0) > 0
    }

    /// The bytes of a mapping of `length` bytes at `base` that could map with 2 MiB
    /// pages: whole 2 MiB pages, when the mapping starts on one (the kernel aligns file
    /// mappings of 2 MiB or more that way where it can).
    static func possibleHugeBytes(base: UnsafeRawPointer, length: Int) -> Int {
        UInt(bitPattern: base) % UInt(pageBytes) == 0 ? length / pageBytes * pageBytes : 0
    }
}
