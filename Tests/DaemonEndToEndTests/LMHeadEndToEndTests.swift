import Foundation
import Testing

/// `lm-head = 4bit` through the daemon: the completion a client gets is the one the
/// same engine computes in `mambad run` with the same settings.
@Suite struct LMHeadEndToEndTests {
    @Test func fourBitLMHeadServesWhatTheEngineComputes() throws {
        let settings = ["--precision", "fast", "--lm-head", "4bit", "--packed-cache", "none"]
        let daemon = try TestDaemon(settings)
        // nothing to map: the daemon serves at once and packs on another thread; compare
        // once the packed weights serve
        try daemon.waitForLog("weights packed")
        for r in ReferenceCase.all.prefix(2) {
            let reply = try daemon.call("complete", #"{"tokens":\#(r.prompt_ids),"maxTokens":12,"cache":false}"#)
            let served = try #require(reply["result"]?["tokens"]?.ints, "\(reply)")
            let run = try Command.run([TestDaemon.executable.path, "run", "--model", TestDaemon.model] + settings.prefix(4)
                                      + ["--tokens", r.prompt_ids.map(String.init).joined(separator: ","), "--max-tokens", "12", "--json"],
                                      environment: ProcessInfo.processInfo.environment.merging(["MAMBAD_THREADS": "1", "MAMBAD_CACHE_DIR": daemon.directory.path]) { $1 })
            #expect(run.succeeded, "\(run)")
            let object = try #require(try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any])
            #expect(object["tokens"] as? [Int] == served)
            #expect(served.count == 12 || served.last == 11)
        }
    }
}
