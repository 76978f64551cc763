import CKernels
@testable import FalconMamba
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The prefetch tuner: its races on given step times, and on real steps whose speed
/// depends on the distance they run at.
@Suite(.serialized) struct PrefetchTunerTests {
    /// The distances a race runs its steps at, fed `seconds(distance)` as each step's time.
    static func schedule(_ steps: Int, candidates: [Int], rounds: Int, exploit: Int,
                         seconds: (Int) -> Double) -> (ran: [Int], wins: [Int]) {
        var race = PrefetchTuner.Race(candidates: candidates.count), ran: [Int] = []
        for _ in 0..<steps {
            let distance = candidates[race.candidate]
            ran.append(distance)
            race.record(seconds(distance), rounds: rounds, exploitSteps: exploit)
        }
        return (ran, race.wins)
    }

    @Test func racesAlternateThenTheFasterDistanceRunsUntilTheNextRace() {
        // 6144 slow at first; after the first race the host changes and 0 becomes slow
        var step = 0
        let (ran, wins) = Self.schedule(18, candidates: [6144, 0], rounds: 2, exploit: 5) { distance in
            step += 1
            return (step <= 9) == (distance == 6144) ? 0.010 : 0.009
        }
        #expect(ran == [6144, 0, 6144, 0, 0, 0, 0, 0, 0, 6144, 0, 6144, 0, 6144, 6144, 6144, 6144, 6144])
        #expect(wins == [1, 1])
    }

    @Test func aTieKeepsTheFirstCandidate() {
        let (ran, _) = Self.schedule(6, candidates: [6144, 0, 2048], rounds: 1, exploit: 3) { _ in 0.01 }
        #expect(ran == [6144, 0, 2048, 6144, 6144, 6144])
    }

    /// Real steps through `run`: the slow distance sleeps 30 ms, the other not at all.
    @Test func eachKindOfStepHasItsOwnRace() {
        let saved = ComputePool.fixedPrefetchDistance
        ComputePool.fixedPrefetchDistance = nil  // MAMBAD_PREFETCH may have fixed it
        defer { ComputePool.fixedPrefetchDistance = saved }
        let tuner = PrefetchTuner(candidates: [6144, 0], rounds: 1, exploitSteps: 3)
        func step(_ distance: Int, slow: Int) -> Int {
            if distance == slow { usleep(30_000) }
            return distance
        }
        var one: [Int] = [], four: [Int] = []
        for _ in 0..<5 {
            one.append(tuner.run(rows: 1, logits: true) { step($0, slow: 6144) })
            four.append(tuner.run(rows: 4, logits: true) { step($0, slow: 0) })
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
            #expect(tuner.run(rows: 1, logits: true) { $0 } == 2048)
            #expect(mk_prefetch_distance() == 2048)
        }
        #expect(tuner.summary.isEmpty)
        // a fixed distance is clamped as any distance is; a tuner's setting keeps it fixed
        ComputePool.fixedPrefetchDistance = 2100
        #expect(ComputePool.fixedPrefetchDistance == 2048)
        mk_set_prefetch_distance(0)
        #expect(ComputePool.fixedPrefetchDistance == 0)
        ComputePool.fixedPrefetchDistance = nil
        #expect(ComputePool.fixedPrefetchDistance == nil)
    }
}
