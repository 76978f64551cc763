import FalconMamba
import Foundation
import Logging
@testable import MambaDaemon
import MambaRPC
import Synchronization
import Testing
import Tokenizer

/// The scheduler against the real tiny Falcon-vocabulary model, without sockets.
@Suite struct SchedulerTests {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/models/tiny-falcon-vocab-nf4").path
    static let model = try! FalconMambaModel(directory: directory, precision: .exact, pool: ComputePool(threads: 1))
    static let tokenizer = try! Tokenizer.load(modelDirectory: URL(fileURLWithPath: directory))

    struct Case: Decodable {
        let prompt_ids: [Int]
        let greedy_ids: [Int]
        let greedy_text: String
    }
    static let cases: [Case] = {
        struct File: Decodable { let cases: [Case] }
        let url = URL(fileURLWithPath: directory).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("reference/tiny-falcon-vocab-nf4.json")
        return try! JSONDecoder().decode(File.self, from: Data(contentsOf: url)).cases
    }()

    func scheduler(maxActive: Int = 8, maxQueue: Int = 64, chunk: Int = 4) -> Scheduler {
        let s = Scheduler(model: Self.model, tokenizer: Self.tokenizer,
                          limits: .init(maxActive: maxActive, maxQueue: maxQueue, prefillChunk: chunk, cacheBytes: 64 << 20),
                          logger: Logger(label: "test"))
        s.start()
        return s
    }

    /// Submits completions and waits for all outcomes.
    func complete(_ scheduler: Scheduler, _ params: [CompleteParams], prompts: [[Int]]) throws -> [JobOutcome] {
        let outcomes = Mutex<[Int: JobOutcome]>([:])
        let done = DispatchSemaphore(value: 0)
        for (i, p) in params.enumerated() {
            let job = Job(work: .complete(CompletionRequest(prompt: prompts[i], params: p, seed: p.seed ?? 1)), label: "t/\(i)",
                          onFinish: { _, outcome in outcomes.withLock { $0[i] = outcome }; done.signal() })
            try scheduler.submit(job)
        }
        for _ in params { #expect(done.wait(timeout: .now() + 60) == .success) }
        return outcomes.withLock { m in (0..<params.count).map { m[$0]! } }
    }

    func result(_ outcome: JobOutcome) throws -> CompleteResult {
        guard case .completion(let r) = outcome else { throw SocketClient.Failure(description: "not a completion: \(outcome)") }
        return r
    }

    @Test func batchedSequencesMatchTheReferenceGreedyTokens() throws {
        let s = scheduler()
        var params: [CompleteParams] = []
        var prompts: [[Int]] = []
        for c in Self.cases + Self.cases {   // 8 sequences at once, prompts of different lengths
            var p = CompleteParams(tokens: c.prompt_ids, maxTokens: c.greedy_ids.count)
            p.cache = false
            params.append(p)
            prompts.append(c.prompt_ids)
        }
        let outcomes = try complete(s, params, prompts: prompts)
        for (i, outcome) in outcomes.enumerated() {
            let r = try result(outcome)
            let c = Self.cases[i % Self.cases.count]
            #expect(r.tokens == c.greedy_ids, "sequence \(i)")
            #expect(r.text == c.greedy_text, "sequence \(i)")
        }
        #expect(s.counters.engine.batchedSequences > s.counters.engine.decodeSteps, "decode steps were shared")
    }

    @Test func cachedPrefixGivesTheSameTokensAndSkipsThePrefill() throws {
        let s = scheduler()
        let c = Self.cases[2]
        var p = CompleteParams(tokens: c.prompt_ids, maxTokens: 8)
        let first = try result(complete(s, [p], prompts: [c.prompt_ids])[0])
        let again = try result(complete(s, [p], prompts: [c.prompt_ids])[0])
        #expect(first.usage.cachedTokens == 0)
        #expect(again.usage.cachedTokens == c.prompt_ids.count)
        #expect(again.tokens == first.tokens)
        // a longer prompt reuses the snapshot of the shorter one
        let longer = c.prompt_ids + Array(c.greedy_ids.prefix(3))
        p.tokens = longer
        p.maxTokens = 5
        let extended = try result(complete(s, [p], prompts: [longer])[0])
        #expect(extended.usage.cachedTokens == c.prompt_ids.count)
        #expect(extended.tokens == Array(c.greedy_ids[3..<8]))
        #expect(s.counters.cache.hits == 2)
    }

    @Test func sameSeedSameOutputEvenWhenBatched() throws {
        let s = scheduler()
        var p = CompleteParams(tokens: [3071, 10045], maxTokens: 12)
        p.temperature = 1
        p.topP = 0.9
        p.seed = 42
        p.cache = false
        let alone = try result(complete(s, [p], prompts: [[3071, 10045]])[0]).tokens
        var other = p
        other.seed = 7
        let together = try complete(s, [p, other, p], prompts: Array(repeating: [3071, 10045], count: 3)).map { try result($0).tokens }
        #expect(together[0] == alone && together[2] == alone)
    }

    @Test func cancellationStopsWithinAStep() throws {
        let s = scheduler(maxActive: 1, maxQueue: 1)
        let started = DispatchSemaphore(value: 0)
        let finished = DispatchSemaphore(value: 0)
        let outcome = Mutex<JobOutcome?>(nil)
        var p = CompleteParams(tokens: [1, 2, 3], maxTokens: 8000)
        p.stream = true
        let job = Job(work: .complete(CompletionRequest(prompt: [1, 2, 3], params: p, seed: 1)), label: "t/c",
                      onProgress: { _, _ in started.signal() },
                      onFinish: { _, o in outcome.withLock { $0 = o }; finished.signal() })
        try s.submit(job)
        #expect(started.wait(timeout: .now() + 30) == .success)
        // the queue holds one more; a third is refused with retryAfterMs
        let waiting = Job(work: .complete(CompletionRequest(prompt: [1], params: p, seed: 1)), label: "t/w",
                          onFinish: { _, _ in finished.signal() })
        try s.submit(waiting)
        #expect(throws: RPCError.self) {
            try s.submit(Job(work: .complete(CompletionRequest(prompt: [1], params: p, seed: 1)), label: "t/x", onFinish: { _, _ in }))
        }
        job.cancel(.request)
        waiting.cancel(.disconnected)
        #expect(finished.wait(timeout: .now() + 30) == .success)
        #expect(finished.wait(timeout: .now() + 30) == .success)
        guard case .failure(let error)? = outcome.withLock({ $0 }) else { Issue.record("not cancelled"); return }
        #expect(error.code == -32800)
        #expect((error.data?["tokens"]?.array?.count ?? 0) < 8000)
        #expect(s.counters.requests.cancelled == 2 && s.counters.requests.active == 0)
    }
}
