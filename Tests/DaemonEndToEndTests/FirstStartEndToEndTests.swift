import Foundation
import Testing

/// A first start on the fast path: nothing to map yet, so the daemon answers at once with
/// the exact kernels, packs the weights on another thread into the cache folder, and then
/// serves with them; the next start maps the saved file and serves the same tokens.
@Suite struct FirstStartEndToEndTests {
    @Test func firstStartServesWhilePackingThenTheNextMapsTheCache() throws {
        let cache = FileManager.default.temporaryDirectory.appendingPathComponent("mambad-first-start-\(UUID().uuidString.prefix(8))")
        defer { try? FileManager.default.removeItem(at: cache) }
        let settings = ["--precision", "fast", "--packed-cache", cache.path]
        let request = #"{"tokens":\#(ReferenceCase.all[0].prompt_ids),"maxTokens":12,"cache":false}"#

        let first = try TestDaemon(settings)
        #expect(first.stderr.contains("serving with the exact kernels while the packed weights are made"), "\(first.stderr)")
        let early = try first.call("complete", request)
        #expect((early["result"]?["tokens"]?.ints ?? []).count > 0, "\(early)")
        try first.waitForLog("weights packed for the fast path")
        let packedFiles = try FileManager.default.contentsOfDirectory(atPath: cache.path).filter { $0.hasSuffix(".packed") }
        #expect(packedFiles.count == 1, "\(packedFiles)")
        let served = try #require(try first.call("complete", request)["result"]?["tokens"]?.ints)
        #expect(first.terminate() == 0)

        let second = try TestDaemon(settings)
        #expect(second.stderr.contains("packed weights mapped from the cache"), "\(second.stderr)")
        #expect(!second.stderr.contains("serving with the exact kernels"), "\(second.stderr)")
        #expect(try second.call("complete", request)["result"]?["tokens"]?.ints == served)
    }
}
