@testable import FalconMamba
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The prefetch tuner on steps whose speed depends on the distance they run at (they
/// sleep longer at the slow one), so the race has a known winner.
@Suite(.serialized) struct PrefetchTunerTests {
    /// A step that takes `slow` seconds at `slowDistance` and a tenth of it otherwise.
    static func step(_ distance: Int, slowDistance: Int, slow: Double = 0.004) -> Int {
        usleep(useconds_t((distance == slowDistance ? slow : slow / 10) * 1e6))
        return distance
    }

    @Test func racesAlternateThenTheFasterDistanceRunsUntilTheNextRace() {
        let saved = ComputePool.fixedPrefetchDistance
        ComputePool.fixedPrefetchDistance = nil  // MAMBAD_PREFETCH may have fixed it
        defer { ComputePool.fixedPrefetchDistance = saved }
        let tuner = PrefetchTuner(candidates: [6144, 0], rounds: 2, exploitSteps: 5)
        var ran: [Int] = []
        for _ in 0..<(4 + 5 + 4 + 5) {
            ran.append(tuner.run(rows: 1, logits: true) { Self.step($0, slowDistance: 6144) })
        }
        // race: alternating; then the winner (0) for 5 steps; another race; the winner again
        #expect(ran == [6144, 0, 6144, 0, 0, 0, 0, 0, 0, 6144, 0, 6144, 0, 0, 0, 0, 0, 0])
        #expect(tuner.summary == ["rows 1+logits: 6144 won 0, 0 won 2"])
    }

    @Test func eachKindOfStepHasItsOwnRace() {
        let saved = ComputePool.fixedPrefetchDistance
        ComputePool.fixedPrefetchDistance = nil
        defer { ComputePool.fixedPrefetchDistance = saved }
        let tuner = PrefetchTuner(candidates: [6144, 0], rounds: 1, exploitSteps: 3)
        var one: [Int] = [], four: [Int] = []
        for _ in 0..<5 {
            one.append(tuner.run(rows: 1, logits: true) { Self.step($0, slowDistance: 6144) })
            four.append(tuner.run(rows: 4, logits: true) { Self.step($0, slowDistance: 0) })
        }
        #expect(one == [6144, 0, 0, 0, 0])
        #expect(four == [6144, 0, 6144, 6144, 6144])
        #expect(tuner.summary == ["rows 1+logits: 6144 won 0, 0 won 1", "rows 4+logits: 6144 won 1, 0 won 0"])
    }

    @Test func aFixedDistanceIsLeftAlone() {
        let tuner = PrefetchTuner(candidates: [6144, 0], rounds: 1, exploitSteps: 3)
        let saved = ComputePool.fixedPrefetchDistance
        ComputePool.fixedPrefetchDistance = 2048
        defer { ComputePool.fixedPrefetchDistance = saved }
        for _ in 0..<4 {
            #expect(tuner.run(rows: 1, logits: true) { Self.step($0, slowDistance: 2048) } == 2048)
        }
        #expect(ComputePool.fixedPrefetchDistance == 2048)
        #expect(tuner.summary.isEmpty)
    }
}
