import AllocationCounter
import CKernels
@testable import FalconMamba
import Testing

/// A decode step into a reused output allocates nothing: no malloc on the thread that
/// runs it. With one pool thread every product and epilogue runs on the counted thread;
/// with two, the caller hands work to the other (where a closure would need a heap thunk)
/// and runs its own share. Unoptimized builds allocate in generic code and closures, so
/// this suite counts only in an optimized build: CI runs it with `swift test -c release
/// -Xswiftc -enable-testing --filter DecodeAllocationTests` (see .ci/run).
@Suite struct DecodeAllocationTests {
    static let optimized: Bool = {
        #if DEBUG
        return false
        #else
        return true
        #endif
    }()

    @Test(.enabled(if: allocation_counter_available() != 0, "counting needs glibc"))
    func theCounterSeesThisThreadsAllocations() {
        let count = Int.random(in: 100...200)
        allocation_counter_start()
        let values = [Int](repeating: count, count: count)
        let calls = allocation_counter_stop()
        #expect(values.reduce(0, +) == count * count)
        #expect(calls >= 1)
    }

    @Test(.enabled(if: optimized, "counts allocations in an optimized build only"),
          .enabled(if: allocation_counter_available() != 0 && mk_q8_available() != 0,
                   "counting needs glibc; the fast path an int8 kernel"),
          arguments: [Precision.fast, .exact], [(batch: 1, threads: 1, phases: false), (batch: 4, threads: 1, phases: false),
                                                (batch: 4, threads: 2, phases: false), (batch: 4, threads: 2, phases: true)])
    func decodeStepsAllocateNothing(precision: Precision, shape: (batch: Int, threads: Int, phases: Bool)) throws {
        let batch = shape.batch
        let model = try FalconMambaModel(directory: Fixtures.modelPath("tiny-fp4-like-7b"), precision: precision,
                                         pool: ComputePool(threads: shape.threads), cache: nil)
        var states = (0..<batch).map { _ in model.newState() }
        var output = ForwardOutput()
        if shape.phases { output.phases = DecodePhases() }  // as `mambad bench --phases` measures
        var tokens = (0..<batch).map { 5 + 7 * $0 }
        func step() throws {
            try model.decodeBatch(tokens, states: &states, into: &output)
            for b in 0..<batch { tokens[b] = Sampler.argmax(output.logits[b * model.vocabSize..<(b + 1) * model.vocabSize]) }
        }
        // The first steps size the output and the workspaces, and start the prefetch race.
        for _ in 0..<3 { try step() }
        allocation_counter_start()
        for _ in 0..<8 { try step() }
        let calls = allocation_counter_stop()
        #expect(calls == 0, "\(calls) allocations in 8 steps of \(batch) sequences (\(precision), \(shape.threads) threads, phases \(shape.phases))")
        #expect(output.phases?.steps ?? 11 == 11)
        #expect(output.logitRows == batch && states.allSatisfy { $0.tokenCount == 11 })
    }
}
