import FalconMamba
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite struct SequenceStateTests {
    let model: FalconMambaModel
    let prompt: [Int]

    init() throws {
        model = try FalconMambaModel(directory: Fixtures.modelPath("tiny-nf4"))
        prompt = try #require(Fixtures.reference("tiny-nf4").tensors["seq3.input_ids"]).integers()
    }

    @Test(arguments: [[1], [5, 7], [64, 64, 1], [100, 57, 100], [256, 1]])
    func chunkedPrefillGivesTheSameState(chunks: [Int]) throws {
        var whole = model.newState()
        let expected = try model.prefill(prompt, state: &whole, logits: .last)

        var chunked = model.newState()
        var start = 0, last: ForwardOutput?
        for size in chunks where start < prompt.count {
            let end = min(prompt.count, start + size)
            // a slice that is not the prompt's end needs no logits
            let output = try model.prefill(Array(prompt[start..<end]), state: &chunked, logits: end == prompt.count ? .last : .none)
            if end < prompt.count { #expect(output.logits.isEmpty && output.logitRows == 0) }
            #expect(output.hidden.count == (end - start) * model.hiddenSize)
            last = output
            start = end
        }
        if start < prompt.count { last = try model.prefill(Array(prompt[start...]), state: &chunked) }

        #expect(chunked.tokenCount == whole.tokenCount)
        #expect(relativeError(chunked.conv, whole.conv) <= 1e-5)
        #expect(relativeError(chunked.ssm, whole.ssm) <= 1e-5)
        #expect(relativeError(try #require(last).lastLogits, expected.lastLogits) <= 1e-5)
    }

    @Test func snapshotAndRestore() throws {
        var state = model.newState()
        _ = try model.prefill(Array(prompt[0..<40]), state: &state)
        let snapshot = state  // a value copy is a snapshot
        let first = try model.prefill(Array(prompt[40..<50]), state: &state).lastLogits
        #expect(state != snapshot)
        #expect(snapshot.tokenCount == 40)

        var restored = snapshot
        let again = try model.prefill(Array(prompt[40..<50]), state: &restored).lastLogits
        #expect(Array(again) == Array(first))
        #expect(restored == state)
    }

    @Test func stateSizeMatchesTheConfig() {
        let state = model.newState()
        #expect(state.byteCount == model.config.stateBytesPerSequence)
        #expect(state.byteCount == 3 * 128 * (4 + 16) * 4)
    }

    @Test func resetEmptiesTheContext() throws {
        var state = model.newState()
        _ = try model.prefill([1, 2, 3], state: &state)
        state.reset()
        #expect(state == model.newState())
    }

    @Test func badInputIsATypedError() throws {
        var state = model.newState()
        #expect(throws: ModelError.emptyInput) { try model.prefill([], state: &state) }
        #expect(throws: ModelError.tokenOutOfRange(token: 1024, vocabSize: 1024)) { try model.prefill([1, 1024], state: &state) }
        #expect(throws: ModelError.tokenOutOfRange(token: -1, vocabSize: 1024)) { try model.decodeStep(-1, state: &state) }
        #expect(state.tokenCount == 0, "a rejected request leaves the state alone")
        let other = try FalconMambaModel(directory: Fixtures.modelPath("tiny-falcon-vocab-nf4"))
        var foreign = other.newState()
        #expect(throws: ModelError.self) { try model.decodeStep(1, state: &foreign) }
    }
}

@Suite struct BatchTests {
    /// A batch of sequences decodes exactly like each sequence alone (the batch shares
    /// each pass over the weights, not any state).
    @Test(arguments: ["tiny-fp4-like-7b", "tiny-bf16", "tiny-fp32-tied"])
    func decodeBatchEqualsSeparateSteps(fixture: String) throws {
        let model = try FalconMambaModel(directory: Fixtures.modelPath(fixture))
        let prompts = [[1, 2, 3], [400, 5], [7, 8, 9, 10, 11], [12], [13, 14], [15], [16, 17], [18], [19, 20], [21]]
        var single: [SequenceState] = [], batched: [SequenceState] = []
        for prompt in prompts {
            var state = model.newState()
            _ = try model.prefill(prompt, state: &state)
            single.append(state)
            batched.append(state)
        }
        let next = prompts.indices.map { 100 + $0 }
        let batch = try model.decodeBatch(next, states: &batched)  // 10 sequences: more than one group of 8
        #expect(batch.logitRows == prompts.count)
        for i in prompts.indices {
            let alone = try model.decodeStep(next[i], state: &single[i])
            let row = Array(batch.logits[i * model.vocabSize..<(i + 1) * model.vocabSize])
            #expect(relativeError(row, alone.lastLogits) <= 1e-5, "sequence \(i)")
            #expect(relativeError(batched[i].ssm, single[i].ssm) <= 1e-5)
            #expect(batched[i].tokenCount == single[i].tokenCount)
        }
    }

    @Test func snapshotsAreNotDisturbedByBatching() throws {
        let model = try FalconMambaModel(directory: Fixtures.modelPath("tiny-nf4"))
        var state = model.newState()
        _ = try model.prefill([1, 2, 3], state: &state)
        let snapshot = state
        var states = [state, state]
        _ = try model.decodeBatch([4, 5], states: &states)
        #expect(snapshot == state)
        #expect(states[0] != snapshot && states[1] != snapshot && states[0] != states[1])
    }

    @Test func poolRunsEveryTaskOnce() {
        let pool = ComputePool(threads: 3)
        var hits = [Int](repeating: 0, count: 1000)
        hits.withUnsafeMutableBufferPointer { buffer in
            let base = buffer.baseAddress!
            for _ in 0..<50 { pool.parallelFor(1000) { base[$0] += 1 } }
        }
        #expect(hits.allSatisfy { $0 == 50 })
    }

    /// Decode relies on thread i always running share i: every index once per call,
    /// each on its own thread, the same thread for the same index every time.
    @Test func poolRunsOneTaskOnEachThread() {
        let pool = ComputePool(threads: 3)
        #expect(pool.threads == 3)
        var seen = [[pthread_t]](repeating: [], count: 3)
        seen.withUnsafeMutableBufferPointer { buffer in
            let base = buffer.baseAddress!
            for _ in 0..<200 { pool.forEachThread { base[$0].append(pthread_self()) } }
        }
        #expect(seen.allSatisfy { $0.count == 200 })
        let firsts = seen.map { $0[0] }
        #expect(Set(firsts).count == 3)
        #expect(seen.allSatisfy { calls in calls.allSatisfy { pthread_equal($0, calls[0]) != 0 } })
        #expect(pthread_equal(firsts[0], pthread_self()) != 0)  // the caller is thread 0
    }
}
