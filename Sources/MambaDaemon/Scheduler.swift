import FalconMamba
import Foundation
import Logging
import MambaRPC
import Synchronization
import Tokenizer

/// The one owner of the model. Requests wait in a bounded queue; up to `maxActive` are
/// admitted at once. A dedicated thread loops: admit, drop what was cancelled or ran
/// out of time, prefill one slice of one admitted prompt (round robin), then advance
/// every decoding sequence by one token in a single `decodeBatch` pass over the weights
/// (continuous batching: sequences join and leave between steps).
final class Scheduler: @unchecked Sendable {
    struct Limits: Sendable {
        var maxActive = 8
        var maxQueue = 64
        var prefillChunk = 16
        var cacheBytes = 1 << 30
    }

    struct Counters: Sendable, Equatable {
        var requests = StatusResult.Requests()
        var cache = StatusResult.Cache()
        var engine = StatusResult.Engine()
    }

    private struct Shared {
        var waiting: [Job] = []
        var active = 0
        var draining = false
        var drainDeadline: ContinuousClock.Instant?
        var counters = Counters()
        var averageJobMs = 200.0
        /// Heartbeat probes waiting for the loop's next turn (see `heartbeat`).
        var probes: [DispatchSemaphore] = []
        /// The loop has returned (drained): nothing will answer a probe again.
        var stopped = false
    }

    /// The model the loop runs: the scheduler thread's own copy of `serving`, taken in
    /// each round right after admission (see `replaceModel`).
    private var model: FalconMambaModel
    /// The model that serves: set by `replaceModel`, read by other threads.
    private let serving: Mutex<FalconMambaModel>
    let tokenizer: Tokenizer?
    let limits: Limits
    let logger: Logger
    private let shared = Mutex(Shared())
    private let wake = DispatchSemaphore(value: 0)
    private let stopped = DispatchSemaphore(value: 0)

    // The scheduler thread's own state.
    private var cache: StateCache
    private var completions: [ActiveCompletion] = []
    private var embeddings: [ActiveEmbedding] = []
    private var prefillTurn = 0
    private let placeholder = SequenceState(layers: 0, innerSize: 0, convKernel: 0, stateSize: 0)
    /// The logits of the last decode step, reused by the next (scheduler thread only).
    private var decodeOutput = ForwardOutput()

    init(model: FalconMambaModel, tokenizer: Tokenizer?, limits: Limits, logger: Logger) {
        self.model = model
        serving = Mutex(model)
        self.tokenizer = tokenizer
        self.limits = limits
        self.logger = logger
        cache = StateCache(capacityBytes: limits.cacheBytes)
    }

    func start() {
        let thread = Thread { [self] in run() }
        thread.name = "mambad-scheduler"
        thread.stackSize = 16 << 20
        thread.start()
    }

    /// Queues a job, or refuses it: -32001 when the queue is full, -32003 when draining.
    func submit(_ job: Job) throws(RPCError) {
        try shared.withLock { (s: inout Shared) throws(RPCError) in
            if s.draining { throw RPCError.notReady("the daemon is shutting down") }
            guard s.active + s.waiting.count < limits.maxActive + limits.maxQueue else {
                let ahead = Double(s.waiting.count + 1) / Double(limits.maxActive)
                throw RPCError.overloaded(retryAfterMs: max(50, Int(s.averageJobMs * ahead)))
            }
            s.waiting.append(job)
            s.counters.requests.queued = s.waiting.count
        }
        wake.signal()
    }

    var counters: Counters { shared.withLock { $0.counters } }

    /// The model now serving (for other threads: configuration, vocabulary).
    var currentModel: FalconMambaModel { serving.withLock { $0 } }

    /// Serve with `next` from the loop's next round on (every job submitted after this
    /// returns runs on it): same configuration, other kernels (the packed weights, once a
    /// first start has made them). Sequences in progress and cached states carry over:
    /// the state has the same shape.
    func replaceModel(_ next: FalconMambaModel) {
        serving.withLock { $0 = next }
        wake.signal()
    }

    /// Stops admitting: queued jobs are cancelled now, running ones after `grace`.
    func drain(grace: Duration) {
        let waiting = shared.withLock { s in
            s.draining = true
            s.drainDeadline = .now + grace
            return s.waiting
        }
        for job in waiting { job.cancel(.shutdown) }
        wake.signal()
    }

    /// A no-op round trip through the scheduler thread: true when the loop came round
    /// within `timeout` (between two steps, so at most one prefill slice and one decode
    /// step late). A wedged or stopped loop answers false; the systemd watchdog pings
    /// only on true.
    func heartbeat(timeout: Duration) -> Bool {
        let answered = DispatchSemaphore(value: 0)
        let queued = shared.withLock { s in
            guard !s.stopped else { return false }
            s.probes.append(answered)
            return true
        }
        guard queued else { return false }
        wake.signal()
        return answered.wait(timeout: .now() + .milliseconds(Int(timeout.milliseconds))) == .success
    }

    /// Waits until a drained scheduler has finished its last job.
    func waitUntilStopped(timeout: Duration) -> Bool {
        stopped.wait(timeout: .now() + .milliseconds(Int(timeout.milliseconds))) == .success
    }

    // MARK: The loop

    private func run() {
        while true {
            let (admitted, dropped, drainExpired, draining, probes) = shared.withLock { s in
                var dropped: [Job] = []
                let now = ContinuousClock.now
                s.waiting.removeAll { job in
                    let dead = job.cancelReason != nil || job.deadline.map { now >= $0 } == true
                    if dead { dropped.append(job) }
                    return dead
                }
                var admitted: [Job] = []
                while s.active < limits.maxActive, !s.waiting.isEmpty {
                    admitted.append(s.waiting.removeFirst())
                    s.active += 1
                }
                s.counters.requests.queued = s.waiting.count
                s.counters.requests.active = s.active
                let probes = s.probes
                s.probes.removeAll()
                return (admitted, dropped, s.drainDeadline.map { now >= $0 } == true, s.draining, probes)
            }
            // after admission: a job submitted once replaceModel has returned runs on the new model
            model = serving.withLock { $0 }
            for probe in probes { probe.signal() }
            for job in dropped { finishWaiting(job) }
            if drainExpired {
                for seq in completions { seq.job.cancel(.shutdown) }
                for emb in embeddings { emb.job.cancel(.shutdown) }
            }
            for job in admitted { admit(job) }
            sweep()
            if completions.isEmpty && embeddings.isEmpty {
                let idle = shared.withLock { s in
                    if s.waiting.isEmpty && draining { s.stopped = true }
                    return s.waiting.isEmpty
                }
                if idle && draining { stopped.signal(); return }
                if idle { wake.wait() }
                continue
            }
            prefillSlice()
            decodeStep()
            completions.removeAll { $0.phase == .finished }
            embeddings.removeAll { $0.finished }
        }
    }

    private func admit(_ job: Job) {
        switch job.work {
        case .complete(let request):
            // a cache hit replaces the fresh state: allocate that (40 MiB on the 7B) only on a miss
            let hit = request.params.cache ? cache.lookup(request.prompt) : nil
            let seq = ActiveCompletion(job: job, request: request, state: hit?.state ?? model.newState(), tokenizer: tokenizer)
            if request.params.cache {
                if let hit {
                    seq.position = hit.tokens
                    seq.cachedTokens = hit.tokens
                    if hit.tokens == request.prompt.count { seq.promptLogits = hit.logits }
                }
                let tail = request.prompt.count - ActiveCompletion.snapshotTail
                if tail > seq.position { seq.snapshotPoint = tail }
                publishCacheStatistics()
            }
            logger.debug("admitted", metadata: ["req": "\(job.label)", "promptTokens": "\(request.prompt.count)",
                                               "cachedTokens": "\(seq.cachedTokens)"])
            completions.append(seq)
            if seq.position == request.prompt.count { promptDone(seq) }
        case .embed(let request):
            embeddings.append(ActiveEmbedding(job: job, request: request, state: model.newState(), hiddenSize: model.hiddenSize))
        }
    }

    /// Ends what was cancelled or is past its deadline, before any more work is spent on it.
    private func sweep() {
        let now = ContinuousClock.now
        for seq in completions where seq.phase != .finished {
            if let reason = seq.job.cancelReason {
                finishCancelled(seq, reason)
            } else if let deadline = seq.job.deadline, now >= deadline {
                finish(seq, .deadline)
            }
        }
        for emb in embeddings where !emb.finished {
            if let reason = emb.job.cancelReason {
                emb.finished = true
                release(emb.job, outcome: reason == .disconnected ? .dropped : .failure(.cancelled(reason.message, text: "", tokens: [])),
                        count: \.cancelled)
            }
        }
        completions.removeAll { $0.phase == .finished }
        embeddings.removeAll { $0.finished }
    }

    /// One slice of one prompt (completions and embeddings take turns). While others
    /// decode, slices are `prefillChunk` tokens so their steps keep coming.
    private func prefillSlice() {
        let prefilling = completions.filter { $0.phase == .prefill }
        let total = prefilling.count + embeddings.count
        guard total > 0 else { return }
        let decoding = completions.contains { $0.phase == .decode }
        prefillTurn = (prefillTurn + 1) % total
        if prefillTurn < prefilling.count {
            let seq = prefilling[prefillTurn]
            prefill(seq, chunk: sliceLength(decoding: decoding))
        } else {
            let emb = embeddings[prefillTurn - prefilling.count]
            embed(emb, chunk: sliceLength(decoding: decoding))
        }
    }

    /// Alone, a prompt goes in the engine's own chunks (matrix-matrix products get
    /// cheaper per token as they grow: 8 tokens 0.63 s, 64 tokens 1.6 s on the 7B here).
    func sliceLength(decoding: Bool) -> Int {
        decoding ? limits.prefillChunk : max(limits.prefillChunk, FalconMambaModel.prefillChunk)
    }

    private func prefill(_ seq: ActiveCompletion, chunk: Int) {
        let prompt = seq.request.prompt
        var end = min(prompt.count, seq.position + chunk)
        if let point = seq.snapshotPoint, seq.position < point, end > point { end = point }
        let output: ForwardOutput
        // Logits only where they are used: the prompt's end, or a snapshot the cache keeps.
        let cacheHere = seq.request.params.cache && end == seq.snapshotPoint
        do {
            output = try model.prefill(Array(prompt[seq.position..<end]), state: &seq.state,
                                       logits: end == prompt.count || cacheHere ? .last : .none)
        } catch {
            fail(seq.job, error)
            seq.phase = .finished
            return
        }
        let count = end - seq.position
        seq.position = end
        shared.withLock { $0.counters.engine.prefillTokens += count }
        if seq.request.params.cache, end == seq.snapshotPoint || end == prompt.count {
            cache.store(tokens: prompt[..<end], state: seq.state, logits: output.lastLogits)
            publishCacheStatistics()
        }
        if end == prompt.count {
            seq.promptLogits = Array(output.lastLogits)
            promptDone(seq)
        }
    }

    private func promptDone(_ seq: ActiveCompletion) {
        seq.prefillEnd = .now
        if seq.request.params.maxTokens == 0 {
            finish(seq, .length)
        } else {
            accept(seq, logits: seq.promptLogits[...])
            seq.promptLogits = []
        }
    }

    /// Every decoding sequence advances by one token in one pass over the weights.
    private func decodeStep() {
        let batch = completions.filter { $0.phase == .decode }
        guard !batch.isEmpty else { return }
        var states = batch.map { $0.takeState(placeholder: placeholder) }
        do {
            // one output for every step: its arrays keep their capacity
            try model.decodeBatch(batch.map(\.pendingToken), states: &states, into: &decodeOutput)
        } catch {
            for seq in batch { fail(seq.job, error); seq.phase = .finished }
            return
        }
        for (i, seq) in batch.enumerated() { seq.state = states[i] }
        states.removeAll()
        shared.withLock { s in
            s.counters.engine.decodeSteps += 1
            s.counters.engine.batchedSequences += batch.count
        }
        let v = decodeOutput.vocabSize
        for (i, seq) in batch.enumerated() {
            accept(seq, logits: decodeOutput.logits[(i * v)..<((i + 1) * v)])
        }
    }

    /// Samples the next token from `logits` and hands it on: text, stop checks,
    /// streaming; then either ends the sequence or queues the token for the next step.
    private func accept(_ seq: ActiveCompletion, logits: ArraySlice<Float>) {
        let params = seq.request.params
        let id = seq.sampler.sample(logits, history: seq.history)
        if let eos = model.config.eosTokenId, id == eos {
            finish(seq, .stop)
            return
        }
        if params.logprobs > 0 {
            let distribution = LogProbabilities(logits)
            seq.logprobs.append(.init(token: id, text: piece(id), logprob: Self.finite(distribution.logprob(of: id)),
                                      top: distribution.top(params.logprobs).map {
                                          .init(token: $0.token, text: piece($0.token), logprob: Self.finite($0.logprob))
                                      }))
        }
        seq.generated.append(id)
        seq.history.append(id)
        if seq.firstToken == nil { seq.firstToken = .now }
        shared.withLock { $0.counters.engine.generatedTokens += 1 }
        seq.text.append(id)
        if seq.text.stopped {
            finish(seq, .stop)
            return
        }
        if params.stream {
            seq.unsentTokens.append(id)
            let delta = seq.text.takeDelta(final: false)
            if !delta.isEmpty {
                seq.job.onProgress(delta, seq.unsentTokens)
                seq.unsentTokens = []
            }
        }
        if seq.generated.count >= params.maxTokens {
            finish(seq, .length)
            return
        }
        seq.pendingToken = id
        seq.phase = .decode
    }

    private func piece(_ id: Int) -> String { (try? tokenizer?.pieces([id]).first) ?? "" }

    static func finite(_ x: Float) -> Float { x.isFinite ? x : (x < 0 ? -Float.greatestFiniteMagnitude : 0) }

    // MARK: Endings

    private func finish(_ seq: ActiveCompletion, _ reason: CompleteResult.FinishReason) {
        let now = ContinuousClock.now
        seq.text.finish()
        if seq.request.params.stream {
            let delta = seq.text.takeDelta(final: true)
            if !delta.isEmpty || !seq.unsentTokens.isEmpty { seq.job.onProgress(delta, seq.unsentTokens) }
        }
        let prefillEnd = seq.prefillEnd ?? now
        let decodeSeconds = (now - prefillEnd).seconds
        let result = CompleteResult(
            text: seq.text.text, tokens: seq.generated, finishReason: reason,
            usage: .init(promptTokens: seq.request.prompt.count, cachedTokens: seq.cachedTokens,
                         completionTokens: seq.generated.count),
            timings: .init(queueMs: (seq.admitted - seq.job.received).milliseconds,
                           prefillMs: (prefillEnd - seq.admitted).milliseconds,
                           firstTokenMs: ((seq.firstToken ?? prefillEnd) - seq.job.received).milliseconds,
                           decodeMs: decodeSeconds * 1e3,
                           tokensPerSecond: decodeSeconds > 0 ? Double(seq.generated.count) / decodeSeconds : 0),
            logprobs: seq.request.params.logprobs > 0 ? seq.logprobs : nil)
        seq.phase = .finished
        logger.info("complete finished", metadata: [
            "req": "\(seq.job.label)", "finish": "\(reason.rawValue)", "promptTokens": "\(seq.request.prompt.count)",
            "cachedTokens": "\(seq.cachedTokens)", "tokens": "\(seq.generated.count)",
            "ms": "\(Int((now - seq.job.received).milliseconds))"])
        release(seq.job, outcome: .completion(result), count: \.completed)
    }

    private func finishCancelled(_ seq: ActiveCompletion, _ reason: CancelReason) {
        seq.phase = .finished
        logger.info("complete cancelled", metadata: ["req": "\(seq.job.label)", "reason": "\(reason)",
                                                     "tokens": "\(seq.generated.count)"])
        let outcome: JobOutcome = reason == .disconnected ? .dropped
            : .failure(.cancelled(reason.message, text: seq.text.text, tokens: seq.generated))
        release(seq.job, outcome: outcome, count: \.cancelled)
    }

    /// A job that never left the queue: cancelled, or its deadline passed while waiting.
    private func finishWaiting(_ job: Job) {
        if let reason = job.cancelReason {
            shared.withLock { $0.counters.requests.cancelled += 1 }
            job.finish(reason == .disconnected ? .dropped : .failure(.cancelled(reason.message, text: "", tokens: [])))
        } else {
            let now = ContinuousClock.now
            let queued = (now - job.received).milliseconds
            shared.withLock { $0.counters.requests.completed += 1 }
            job.finish(.completion(CompleteResult(
                text: "", tokens: [], finishReason: .deadline, usage: .init(promptTokens: job.promptTokens, cachedTokens: 0, completionTokens: 0),
                timings: .init(queueMs: queued, prefillMs: 0, firstTokenMs: queued, decodeMs: 0, tokensPerSecond: 0))))
        }
    }

    private func fail(_ job: Job, _ error: any Error) {
        logger.error("model error", metadata: ["req": "\(job.label)", "error": "\(error)"])
        release(job, outcome: .failure(.internalError("\(error)")), count: \.failed)
    }

    /// The counters change before the reply leaves, so a client that reads `status`
    /// after its reply sees its request counted.
    private func release(_ job: Job, outcome: JobOutcome, count: WritableKeyPath<StatusResult.Requests, Int>) {
        let ms = (ContinuousClock.now - job.received).milliseconds
        shared.withLock { s in
            s.active -= 1
            s.counters.requests.active = s.active
            s.counters.requests[keyPath: count] += 1
            s.averageJobMs = 0.8 * s.averageJobMs + 0.2 * ms
        }
        job.finish(outcome)
    }

    private func publishCacheStatistics() {
        let stats = cache.statistics
        shared.withLock { $0.counters.cache = .init(entries: stats.entries, bytes: stats.bytes, hits: stats.hits, misses: stats.misses) }
    }

    // MARK: Embeddings

    private func embed(_ emb: ActiveEmbedding, chunk: Int) {
        let tokens = emb.request.inputs[emb.input]
        let end = min(tokens.count, emb.position + chunk)
        do {
            let output = try model.prefill(Array(tokens[emb.position..<end]), state: &emb.state, logits: .none)
            emb.accumulate(output.hidden, hiddenSize: model.hiddenSize)
        } catch {
            emb.finished = true
            fail(emb.job, error)
            return
        }
        shared.withLock { $0.counters.engine.prefillTokens += end - emb.position }
        emb.position = end
        guard end == tokens.count else { return }
        emb.vectors.append(emb.pooled(tokens: tokens.count))
        emb.input += 1
        emb.position = 0
        guard emb.input == emb.request.inputs.count else {
            emb.state = model.newState()
            emb.sum = [Double](repeating: 0, count: model.hiddenSize)
            return
        }
        emb.finished = true
        logger.info("embed finished", metadata: ["req": "\(emb.job.label)", "inputs": "\(emb.request.inputs.count)",
                                                  "promptTokens": "\(emb.promptTokens)"])
        release(emb.job, outcome: .embedding(EmbedResult(embeddings: emb.vectors, dimensions: model.hiddenSize,
                                                         usage: .init(promptTokens: emb.promptTokens))), count: \.completed)
    }
}

extension Job {
    var promptTokens: Int {
        switch work {
        case .complete(let r): r.prompt.count
        case .embed(let r): r.inputs.reduce(0) { $0 + $1.count }
        }
    }
}

extension StatusResult.Cache {
    init(entries: Int, bytes: Int, hits: Int, misses: Int) {
        self.init()
        self.entries = entries
        self.bytes = bytes
        self.hits = hits
        self.misses = misses
    }
}

extension Duration {
    var seconds: Double {
        let (s, attoseconds) = components
        return Double(s) + Double(attoseconds) * 1e-18
    }

    var milliseconds: Double { seconds * 1e3 }
}
