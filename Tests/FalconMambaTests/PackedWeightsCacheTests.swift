import CKernels
@testable import FalconMamba
import Foundation
import Testing

/// The fast path's packed weights: saved to a cache folder on the first load, mapped
/// from it on the next, and never used when stale or damaged.
@Suite struct PackedWeightsCacheTests {
    static let fixture = "tiny-fp4-like-7b"
    static let prompt = [1, 17, 300, 5, 999, 42, 7]

    func logits(_ model: FalconMambaModel) throws -> [Float] {
        var state = model.newState()
        return try model.prefill(Self.prompt, state: &state, logits: .all).logits
    }

    func cacheFiles(_ folder: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []).filter { $0.hasSuffix(".packed") }
    }

    @Test(.enabled(if: mk_q8_available() != 0, "needs an int8 kernel (AVX2 or AVX-512 VNNI)")) func firstLoadPacksAndSavesSecondMapsTheSameWeights() throws {
        let scratch = try ScratchFolder("pack"), folder = scratch.path + "/nested/cache"
        let cache = PackedWeightsCache(directory: folder)
        let first = try FalconMambaModel(directory: Fixtures.modelPath(Self.fixture), precision: .fast, cache: cache)
        guard case .packed(let saved?) = first.packSource else {
            Issue.record("expected a packed load saved to the cache, got \(first.packSource)")
            return
        }
        #expect(cacheFiles(folder).count == 1)
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder).allSatisfy { !$0.hasPrefix(".packing") })
        let second = try FalconMambaModel(directory: Fixtures.modelPath(Self.fixture), precision: .fast, cache: cache)
        #expect(second.packSource == .cacheFile(saved))
        #expect(try logits(first) == logits(second))
        #expect(first.packedBytes > 0 && first.packedBytes == second.packedBytes)
    }

    @Test(.enabled(if: mk_q8_available() != 0, "needs an int8 kernel (AVX2 or AVX-512 VNNI)")) func deferredPackingServesExactUntilPacked() throws {
        let scratch = try ScratchFolder("pack"), folder = scratch.path + "/cache"
        let cache = PackedWeightsCache(directory: folder)
        let path = Fixtures.modelPath(Self.fixture)
        // nothing cached: no packing now, the exact kernels serve
        let deferred = try FalconMambaModel(directory: path, precision: .fast, cache: cache, deferPacking: true)
        #expect(deferred.packingDeferred && deferred.packSource == .none && deferred.packedBytes == 0)
        #expect(cacheFiles(folder).isEmpty)
        let exact = try FalconMambaModel(directory: path, precision: .exact, cache: nil)
        #expect(try logits(deferred) == logits(exact))
        // a load without deferring packs and saves; a deferring one then maps that file
        let packing = try FalconMambaModel(directory: path, precision: .fast, cache: cache)
        guard case .packed(let saved?) = packing.packSource else {
            Issue.record("expected a packed load saved to the cache, got \(packing.packSource)")
            return
        }
        let later = try FalconMambaModel(directory: path, precision: .fast, cache: cache, deferPacking: true)
        #expect(!later.packingDeferred && later.packSource == .cacheFile(saved))
        #expect(try logits(later) == logits(packing))
        // no cache folder: deferred as well (packing into memory takes as long)
        let memory = try FalconMambaModel(directory: path, precision: .fast, cache: nil, deferPacking: true)
        #expect(memory.packingDeferred && memory.packSource == .none)
        // the exact path never packs, so it never defers
        #expect(!(try FalconMambaModel(directory: path, precision: .exact, cache: cache, deferPacking: true)).packingDeferred)
    }

    @Test(.enabled(if: mk_q8_available() != 0, "needs an int8 kernel (AVX2 or AVX-512 VNNI)")) func aChangedCheckpointIsPackedAgain() throws {
        let scratch = try ScratchFolder("pack"), model = scratch.path + "/model", folder = scratch.path + "/cache"
        try FileManager.default.copyItem(atPath: Fixtures.modelPath(Self.fixture), toPath: model)
        let cache = PackedWeightsCache(directory: folder)
        _ = try FalconMambaModel(directory: model, precision: .fast, cache: cache)
        // same bytes, new modification time: a different checkpoint version as far as the key goes
        let weights = try #require(try FileManager.default.contentsOfDirectory(atPath: model).first { $0.hasSuffix(".safetensors") })
        try FileManager.default.setAttributes([.modificationDate: Date(timeIntervalSinceNow: -3600)], ofItemAtPath: model + "/" + weights)
        // a leftover of a packing process that died
        try Data().write(to: URL(fileURLWithPath: folder + "/.packing-999999999-1"))
        let again = try FalconMambaModel(directory: model, precision: .fast, cache: cache)
        guard case .packed(let saved?) = again.packSource else {
            Issue.record("a stale cache file was used: \(again.packSource)")
            return
        }
        // the new file replaced the stale one; the dead process's temporary file is gone
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder) == [String(saved.split(separator: "/").last!)])
    }

    @Test(.enabled(if: mk_q8_available() != 0, "needs an int8 kernel (AVX2 or AVX-512 VNNI)")) func bothLMHeadVariantsStayCached() throws {
        let scratch = try ScratchFolder("pack")
        let cache = PackedWeightsCache(directory: scratch.path)
        let path = Fixtures.modelPath(Self.fixture)
        // a file of this folder from a version without variants: replaced, not kept
        let resolved = try #require(realpath(path, nil).map { pointer in defer { free(pointer) }; return String(cString: pointer) })
        let old = scratch.path + "/" + PackedWeightsCache.prefix(source: resolved) + "0123456789abcdef.packed"
        #expect(FileManager.default.createFile(atPath: old, contents: Data(count: 100)))
        _ = try FalconMambaModel(directory: path, precision: .fast, lmHead: .int8, cache: cache)
        _ = try FalconMambaModel(directory: path, precision: .fast, lmHead: .rescored4bit, cache: cache)
        #expect(cacheFiles(scratch.path).count == 2)
        #expect(!FileManager.default.fileExists(atPath: old))
        for lmHead in LMHeadPrecision.allCases {
            let model = try FalconMambaModel(directory: path, precision: .fast, lmHead: lmHead, cache: cache)
            guard case .cacheFile = model.packSource else {
                Issue.record("\(lmHead) was packed again: \(model.packSource)")
                continue
            }
        }
    }

    @Test(.enabled(if: mk_q8_available() != 0, "needs an int8 kernel (AVX2 or AVX-512 VNNI)")) func filesOfDeletedCheckpointFoldersAreRemovedWhenAnotherModelPacks() throws {
        let scratch = try ScratchFolder("pack"), folder = scratch.path + "/cache"
        let cache = PackedWeightsCache(directory: folder)
        let kept = scratch.path + "/kept", deleted = scratch.path + "/deleted", other = scratch.path + "/other"
        for path in [kept, deleted, other] { try FileManager.default.copyItem(atPath: Fixtures.modelPath(Self.fixture), toPath: path) }
        for path in [kept, deleted] { _ = try FalconMambaModel(directory: path, precision: .fast, cache: cache) }
        // another version's file: not ours to judge
        let foreign = folder + "/gone-0000-1111.packed"
        try Data("MAMBADP1".utf8 + [UInt8](repeating: 0, count: 100)).write(to: URL(fileURLWithPath: foreign))
        #expect(cacheFiles(folder).count == 3)
        try FileManager.default.removeItem(atPath: deleted)
        _ = try FalconMambaModel(directory: other, precision: .fast, cache: cache)
        let names = cacheFiles(folder)
        #expect(names.count == 3)
        #expect(names.contains { $0.hasPrefix("kept-") } && names.contains { $0.hasPrefix("other-") })
        #expect(!names.contains { $0.hasPrefix("deleted-") })
        #expect(FileManager.default.fileExists(atPath: foreign))
    }

    @Test(.enabled(if: mk_q8_available() != 0, "needs an int8 kernel (AVX2 or AVX-512 VNNI)"), arguments: ["header", "truncated"]) func aDamagedCacheFileIsReplaced(damage: String) throws {
        let scratch = try ScratchFolder("pack")
        let cache = PackedWeightsCache(directory: scratch.path)
        let reference = try logits(FalconMambaModel(directory: Fixtures.modelPath(Self.fixture), precision: .fast, cache: cache))
        let path = scratch.path + "/" + (try #require(cacheFiles(scratch.path).first))
        let handle = try #require(FileHandle(forUpdatingAtPath: path))
        if damage == "header" {
            try handle.seek(toOffset: 70)  // inside the first matrix's entry
            handle.write(Data([0xFF, 0xFF, 0xFF, 0xFF]))
        } else {
            try handle.truncate(atOffset: 10_000)
        }
        try handle.close()
        let model = try FalconMambaModel(directory: Fixtures.modelPath(Self.fixture), precision: .fast, cache: cache)
        #expect(model.packSource == .packed(cacheFile: path))
        #expect(try logits(model) == reference)
    }

    @Test(.enabled(if: mk_q8_available() != 0, "needs an int8 kernel (AVX2 or AVX-512 VNNI)")) func anUnusableCacheFolderPacksIntoMemory() throws {
        let scratch = try ScratchFolder("pack")
        let blocker = scratch.path + "/file"
        try Data("not a folder".utf8).write(to: URL(fileURLWithPath: blocker))
        let cache = PackedWeightsCache(directory: blocker + "/cache")
        let model = try FalconMambaModel(directory: Fixtures.modelPath(Self.fixture), precision: .fast, cache: cache)
        #expect(model.packSource == .packed(cacheFile: nil))
        let unpackedCache = try FalconMambaModel(directory: Fixtures.modelPath(Self.fixture), precision: .fast, cache: nil)
        #expect(try logits(model) == logits(unpackedCache))
    }

    @Test func theExactPathPacksNothing() throws {
        let scratch = try ScratchFolder("pack")
        let model = try FalconMambaModel(directory: Fixtures.modelPath(Self.fixture), precision: .exact,
                                         cache: PackedWeightsCache(directory: scratch.path))
        #expect(model.packSource == .none)
        #expect(model.packedBytes == 0)
        #expect(cacheFiles(scratch.path).isEmpty)
    }
}
