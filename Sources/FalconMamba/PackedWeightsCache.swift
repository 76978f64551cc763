#if canImport(Glibc)
import Glibc
#endif
import CKernels

/// A folder where packed weights are kept between runs, one file per checkpoint
/// version. The first start packs (a few seconds for the 7B) straight into a new file;
/// later starts map that file from the page cache and are ready at once, and every
/// process serving the model shares the same pages. A file whose key (the checkpoint
/// files' device, inode, size and mtime, and the packed shapes) does not match is not
/// used; files are written under a temporary name and renamed into place. Each file
/// records the checkpoint folder it came from, so packing one model also removes the
/// files of folders that no longer exist (a deleted model does not keep gigabytes here).
public struct PackedWeightsCache: Sendable {
    public let directory: String

    public init(directory: String) { self.directory = directory }

    /// $MAMBAD_CACHE_DIR, else systemd's $CACHE_DIRECTORY (CacheDirectory=), else
    /// $XDG_CACHE_HOME/mambad, else ~/.cache/mambad; nil if none is set.
    public static func defaultDirectory(environment: (String) -> String?) -> String? {
        func env(_ name: String) -> String? { environment(name).flatMap { $0.isEmpty ? nil : $0 } }
        if let dir = env("MAMBAD_CACHE_DIR") { return dir }
        if let dirs = env("CACHE_DIRECTORY") { return String(dirs.split(separator: ":").first ?? Substring(dirs)) }
        if let xdg = env("XDG_CACHE_HOME") { return xdg + "/mambad" }
        if let home = env("HOME") { return home + "/.cache/mambad" }
        return nil
    }

    /// The default folder for this process's environment.
    public static var defaultDirectory: String? {
        defaultDirectory { name in getenv(name).map { String(cString: $0) } }
    }

    static let magic: UInt64 = 0x3250_4441_424D_414D  // "MAMBADP2" as little-endian bytes (v2: uint8 block scales)
    static let entryBytes = 64

    /// The fixed header, one entry per matrix, then room for the checkpoint folder's path.
    static func headerBytes(count: Int) -> Int { (sourceOffset(count: count) + Int(PATH_MAX) + 4095) / 4096 * 4096 }
    static func sourceOffset(count: Int) -> Int { 64 + count * entryBytes }

    /// The file for a checkpoint and set of layouts: `<folder name>-<hash of its path>-<variant>-<key>.packed`.
    /// Also returns the key (stored in the header) and the prefix every file of this
    /// checkpoint folder and variant shares (for `prune`): files of other variants (the
    /// lm_head in int8 or at 4 bits) stay, so switching between them does not repack.
    func path(for checkpoint: Checkpoint, layouts: [PackedLayout], variant: String) -> CacheTarget {
        var key = Self.fnv(["mambad packed weights v2"] + checkpoint.files.map(\.file.identity)
                           + layouts.map { "\($0.rows)x\($0.cols)x\($0.bits)" })
        if key == 0 { key = 1 }
        let source = realpath(checkpoint.directory, nil).map { pointer in
            defer { free(pointer) }
            return String(cString: pointer)
        } ?? checkpoint.directory
        let folder = Self.prefix(source: source), prefix = folder + variant + "-"
        return CacheTarget(path: directory + "/" + prefix + Self.hex(key) + ".packed", key: key, prefix: prefix,
                           folderPrefix: folder, source: source)
    }

    /// Where one checkpoint's packed weights go.
    struct CacheTarget {
        let path: String
        let key: UInt64
        /// What every cache file of this checkpoint folder and variant starts with.
        let prefix: String
        /// What every cache file of this checkpoint folder starts with.
        let folderPrefix: String
        /// The checkpoint folder, resolved.
        let source: String
    }

    static func prefix(source: String) -> String {
        let name = source.split(separator: "/").last.map(String.init) ?? "model"
        return name + "-" + String(hex(fnv([source])).prefix(8)) + "-"
    }

    static func fnv(_ parts: [String]) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for part in parts {
            for byte in part.utf8 { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
            hash = (hash ^ 0xFF) &* 0x100_0000_01b3
        }
        return hash
    }

    static func hex(_ value: UInt64) -> String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }

    /// The variants a checkpoint folder may have a file for at once.
    static let variants = LMHeadPrecision.allCases.map { "lm" + $0.rawValue }

    /// Remove what a new cache file replaces: older files of the same checkpoint folder
    /// and variant (or of no variant this version knows), files whose checkpoint folder
    /// is gone, and temporary files of packing processes that no longer run.
    func prune(keeping path: String, target: CacheTarget) {
        guard let folder = opendir(directory) else { return }
        defer { closedir(folder) }
        while let entry = readdir(folder) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            let full = directory + "/" + name
            let otherVariant = Self.variants.contains { name.hasPrefix(target.folderPrefix + $0 + "-") } && !name.hasPrefix(target.prefix)
            if name.hasSuffix(".packed"), full != path,
               name.hasPrefix(target.folderPrefix) && !otherVariant || Self.sourceIsGone(full) {
                unlink(full)
            } else if name.hasPrefix(".packing-"), let pid = Int32(name.dropFirst(9).prefix { $0 != "-" }),
                      kill(pid, 0) != 0, errno == ESRCH {
                unlink(full)
            }
        }
    }

    /// Whether a cache file of this format names a checkpoint folder that no longer
    /// exists. Files of other formats (another mambad version's) are left alone.
    static func sourceIsGone(_ path: String) -> Bool {
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var fixed = [UInt8](repeating: 0, count: 64)
        guard pread(fd, &fixed, 64, 0) == 64 else { return false }
        let (magic, count, length) = fixed.withUnsafeBytes {
            ($0.loadUnaligned(as: UInt64.self), $0.loadUnaligned(fromByteOffset: 16, as: UInt32.self),
             $0.loadUnaligned(fromByteOffset: 32, as: UInt32.self))
        }
        guard magic == Self.magic, length > 0, length < UInt32(PATH_MAX), count < 1 << 20 else { return false }
        var bytes = [UInt8](repeating: 0, count: Int(length))
        guard pread(fd, &bytes, Int(length), off_t(sourceOffset(count: Int(count)))) == Int(length) else { return false }
        var info = stat()
        return stat(String(decoding: bytes, as: UTF8.self), &info) != 0 && errno == ENOENT
    }

    /// Evict a file's clean pages from the page cache (nothing may map them), so the
    /// next read brings them back through readahead.
    static func dropFromPageCache(_ path: String) -> Bool {
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        return posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) == 0
    }

    /// Map an existing cache file and check it holds `layouts` under `key`; nil if absent
    /// or stale. A valid file in small folios is read back in 2 MiB ones
    /// (`PackedCacheFile.inHugePages`); a stale one is not, since it is about to be replaced.
    func open(_ path: String, key: UInt64, layouts: [PackedLayout], offsets: [Int], total: Int) -> PackedCacheFile? {
        guard let file = PackedCacheFile(path: path, length: total, writable: false) else { return nil }
        let header = file.base
        guard header.load(as: UInt64.self) == Self.magic, header.load(fromByteOffset: 8, as: UInt64.self) == key,
              header.load(fromByteOffset: 16, as: UInt32.self) == UInt32(layouts.count),
              header.load(fromByteOffset: 24, as: UInt64.self) == UInt64(total) else { return nil }
        for (i, layout) in layouts.enumerated() {
            let entry = header + 64 + i * Self.entryBytes
            guard entry.load(as: UInt64.self) == UInt64(offsets[i]), entry.load(fromByteOffset: 8, as: Int64.self) == Int64(layout.rows),
                  entry.load(fromByteOffset: 16, as: Int64.self) == Int64(layout.cols),
                  entry.load(fromByteOffset: 24, as: Int32.self) == layout.bits else { return nil }
        }
        return file.inHugePages(path: path, probeDirectory: directory)
    }

    /// The table and output scale stored for matrix i.
    static func entry(_ i: Int, in file: PackedCacheFile, into m: inout mk_packed_matrix) {
        let entry = file.base + 64 + i * entryBytes
        m.out_scale = entry.loadUnaligned(fromByteOffset: 28, as: Float.self)
        withUnsafeMutableBytes(of: &m.lut) { $0.copyMemory(from: UnsafeRawBufferPointer(start: entry + 32, count: 16)) }
    }

    /// A new file of `total` bytes under a temporary name, its blocks reserved; nil if
    /// the folder cannot be created or the disk has no room.
    func create(total: Int) -> (file: PackedCacheFile, temporaryPath: String)? {
        guard makeDirectories(directory) else { return nil }
        let temporary = directory + "/.packing-\(getpid())-\(UInt64.random(in: 0...UInt64.max))"
        guard let file = PackedCacheFile(path: temporary, length: total, writable: true) else {
            unlink(temporary)
            return nil
        }
        return (file, temporary)
    }

    /// Write the header of a filled file and move it into place.
    func commit(_ file: PackedCacheFile, temporaryPath: String, target: CacheTarget,
                matrices: [mk_packed_matrix], offsets: [Int], total: Int) -> Bool {
        let header = file.base
        let source = Array(target.source.utf8.prefix(Int(PATH_MAX) - 1))
        header.storeBytes(of: UInt32(source.count), toByteOffset: 32, as: UInt32.self)
        (header + Self.sourceOffset(count: matrices.count)).copyMemory(from: source, byteCount: source.count)
        for (i, m) in matrices.enumerated() {
            let entry = header + 64 + i * Self.entryBytes
            entry.storeBytes(of: UInt64(offsets[i]), as: UInt64.self)
            entry.storeBytes(of: m.rows, toByteOffset: 8, as: Int64.self)
            entry.storeBytes(of: m.cols, toByteOffset: 16, as: Int64.self)
            entry.storeBytes(of: m.bits, toByteOffset: 24, as: Int32.self)
            entry.storeBytes(of: m.out_scale, toByteOffset: 28, as: Float.self)
            withUnsafeBytes(of: m.lut) { (entry + 32).copyMemory(from: $0.baseAddress!, byteCount: 16) }
        }
        header.storeBytes(of: target.key, toByteOffset: 8, as: UInt64.self)
        header.storeBytes(of: UInt32(matrices.count), toByteOffset: 16, as: UInt32.self)
        header.storeBytes(of: UInt64(total), toByteOffset: 24, as: UInt64.self)
        header.storeBytes(of: Self.magic, as: UInt64.self)
        // On disk before it gets its name: a crash must not leave a file that has a valid
        // header but weights that never reached the disk. Also keeps the first requests
        // from competing with gigabytes of writeback.
        guard msync(file.base, file.length, MS_SYNC) == 0, rename(temporaryPath, target.path) == 0 else {
            unlink(temporaryPath)
            return false
        }
        prune(keeping: target.path, target: target)
        return true
    }

    private func makeDirectories(_ path: String) -> Bool {
        var built = path.hasPrefix("/") ? "" : "."
        for part in path.split(separator: "/") {
            built += "/" + part
            if mkdir(built, 0o755) != 0 && errno != EEXIST { return false }
        }
        var info = stat()
        return stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR && access(path, W_OK) == 0
    }
}

/// A cache file mapped shared: read-only when loaded, read-write while being packed.
final class PackedCacheFile: @unchecked Sendable {
    let base: UnsafeMutableRawPointer
    let length: Int
    private var mapped = true
    /// Opening found it in small folios and read it back from disk.
    var rereadForHugePages = false

    /// Unmap now (nothing may point into it any more).
    func unmap() {
        if mapped { munmap(base, length) }
        mapped = false
    }

    init?(path: String, length: Int, writable: Bool) {
        let fd = writable ? Glibc.open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o644) : Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var info = stat()
        if writable {
            // Reserve the blocks now: writing through a mapping into a file the disk
            // cannot hold would end in SIGBUS.
            guard posix_fallocate(fd, 0, off_t(length)) == 0 else { return nil }
        } else {
            guard fstat(fd, &info) == 0, Int(info.st_size) == length else { return nil }
        }
        let protection = writable ? PROT_READ | PROT_WRITE : PROT_READ
        guard let mapped = mmap(nil, length, protection, MAP_SHARED, fd, 0), mapped != MAP_FAILED else { return nil }
        base = mapped
        self.length = length
        // Loading: map every page now (from the page cache, or read ahead from disk in
        // 2 MiB folios), so the first requests do not pay a page fault per 64 KiB of
        // weights, and pages evicted later come back as 2 MiB ones too.
        if !writable { HugePageMapping.adviseAndPopulate(mapped, length: length) }
    }

    /// This read-only mapping of the file at `path`, or, if the page cache holds the file
    /// in small folios (copied or restored with small writes, say), so that over a tenth
    /// of it maps with 4 KiB pages, and files in `probeDirectory`'s file system can come
    /// in as 2 MiB folios at all: this one unmapped, the file dropped from the page cache
    /// and mapped again, once; read back from disk (about a second for the 7B here) it
    /// comes in as 2 MiB folios (`HugePageMapping`). Pages another process maps stay as
    /// they are.
    func inHugePages(path: String, probeDirectory: String) -> PackedCacheFile? {
        let pages = hugePages
        guard let huge = pages.mapped, huge < pages.possible / 10 * 9,
              HugePageMapping.fileSystemKeepsHugeFolios(directory: probeDirectory) else { return self }
        unmap()
        guard PackedWeightsCache.dropFromPageCache(path),
              let again = PackedCacheFile(path: path, length: length, writable: false) else { return nil }
        again.rereadForHugePages = true
        return again
    }

    /// Bytes of the mapping in 2 MiB pages (nil where the kernel does not say), and how
    /// many could be.
    var hugePages: (mapped: Int?, possible: Int) {
        (HugePageMapping.hugeBytes(of: base), HugePageMapping.possibleHugeBytes(base: base, length: length))
    }

    deinit { unmap() }
}
