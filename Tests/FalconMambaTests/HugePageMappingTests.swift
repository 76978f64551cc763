@testable import FalconMamba
import Foundation
import Testing

/// How much of a file mapping is in 2 MiB pages, and the cache file's way of getting
/// there when the page cache holds it in small folios.
@Suite struct HugePageMappingTests {
    static let smaps = """
        55d0c0a00000-55d0c0a21000 r--p 00000000 fe:01 1234                       /usr/bin/mambad
        Size:                132 kB
        Rss:                 132 kB
        FilePmdMapped:         0 kB
        7f0000000000-7f00e4000000 r--s 00000000 fe:01 98765                      /cache/model.packed
        Size:            3735552 kB
        Rss:             3659512 kB
        AnonHugePages:         0 kB
        FilePmdMapped:   3616768 kB
        VmFlags: rd sh mr mw me ms hg
        7f00e4000000-7f00e4200000 rw-p 00000000 00:00 0
        Size:               2048 kB
        Rss:                   0 kB
        VmFlags: rd wr mr mw me ac
        7f00e4200000-7f00e4400000 r--s 00000000 fe:01 4321                       /cache/other.packed
        Size:               2048 kB
        FilePmdMapped:      2048 kB
        """

    @Test func smapsGivesTheMappingThatStartsAtTheAddress() {
        #expect(HugePageMapping.hugeBytes(inSmaps: Self.smaps, start: 0x7f00_0000_0000) == 3_616_768 * 1024)
        #expect(HugePageMapping.hugeBytes(inSmaps: Self.smaps, start: 0x55d0_c0a0_0000) == 0)
        #expect(HugePageMapping.hugeBytes(inSmaps: Self.smaps, start: 0x7f00_e420_0000) == 2048 * 1024)
        // a mapping without the field (an older kernel's), and one that is not there
        #expect(HugePageMapping.hugeBytes(inSmaps: Self.smaps, start: 0x7f00_e400_0000) == nil)
        #expect(HugePageMapping.hugeBytes(inSmaps: Self.smaps, start: 0x7f00_0000_1000) == nil)
        #expect(HugePageMapping.hugeBytes(inSmaps: "", start: 0x7f00_0000_0000) == nil)
    }

    @Test func onlyWhole2MiBPagesFromAnAlignedStartCount() {
        let aligned = UnsafeRawPointer(bitPattern: 0x7f00_0000_0000)!, off = UnsafeRawPointer(bitPattern: 0x7f00_0000_1000)!
        #expect(HugePageMapping.possibleHugeBytes(base: aligned, length: 5 << 20) == 4 << 20)
        #expect(HugePageMapping.possibleHugeBytes(base: aligned, length: 1 << 20) == 0)
        #expect(HugePageMapping.possibleHugeBytes(base: off, length: 64 << 20) == 0)
    }


    /// Write `bytes` with writes of `chunk` bytes (small writes leave small folios in the
    /// page cache, large ones large folios where the file system allows).
    static func write(_ path: String, bytes: Int, chunk: Int) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { throw CocoaError(.fileWriteUnknown) }
        defer { close(fd) }
        let data = [UInt8](repeating: 7, count: chunk)
        for _ in 0..<(bytes / chunk) {
            guard Foundation.write(fd, data, chunk) == chunk else { throw CocoaError(.fileWriteUnknown) }
        }
        guard fsync(fd) == 0 else { throw CocoaError(.fileWriteUnknown) }
    }

    @Test func aMappingReportsItsPagesWithinItsSize() throws {
        let scratch = try ScratchFolder("pages"), path = scratch.path + "/weights"
        try Self.write(path, bytes: 8 << 20, chunk: 1 << 20)
        let file = try #require(PackedCacheFile(path: path, length: 8 << 20, writable: false))
        let pages = file.hugePages
        let huge = try #require(pages.mapped, "/proc/self/smaps names the mapping")
        #expect(huge >= 0 && huge <= pages.possible && pages.possible <= 8 << 20)
        #expect(!file.rereadForHugePages)
        // every byte is mapped and readable as written
        #expect(file.base.load(fromByteOffset: (8 << 20) - 1, as: UInt8.self) == 7)
    }

    /// Where the file system keeps files in 2 MiB folios (ext4 since Linux 6.16, XFS): a
    /// file written 4 KiB at a time maps with small pages; opening it for the weights
    /// reads it back from disk, in 2 MiB pages, with the same bytes.
    @Test(.enabled(if: HugePageMapping.fileSystemKeepsHugeFolios(directory: NSTemporaryDirectory()),
                   "needs a file system with large folios and transparent huge pages"))
    func smallFoliosAreReadBackInHugePages() throws {
        let scratch = try ScratchFolder("pages"), path = scratch.path + "/weights", length = 16 << 20
        try Self.write(path, bytes: length, chunk: 4096)
        let small = try #require(PackedCacheFile(path: path, length: length, writable: false))
        let before = small.hugePages
        try #require(before.possible >= 14 << 20, "the kernel aligned the mapping to 2 MiB")
        #expect((before.mapped ?? 0) < before.possible / 2, "4 KiB writes left small folios")
        small.unmap()

        func mapInHugePages() -> PackedCacheFile? {
            PackedCacheFile(path: path, length: length, writable: false)?.inHugePages(path: path, probeDirectory: scratch.path)
        }
        let file = try #require(mapInHugePages())
        #expect(file.rereadForHugePages)
        let after = file.hugePages
        #expect(after.mapped == after.possible)
        #expect(file.base.load(fromByteOffset: length - 1, as: UInt8.self) == 7)

        // now in 2 MiB folios: the next open maps them as they are
        file.unmap()
        let next = try #require(mapInHugePages())
        #expect(!next.rereadForHugePages && next.hugePages.mapped == next.hugePages.possible)
    }
}
