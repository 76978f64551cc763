import CKernels
@testable import FalconMamba
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The prefetch tuner: its races on given step times, and on real steps whose speed
/// depends on the plan they run by; and the plans as the settings write them.
@Suite(.serialized) struct PrefetchTunerTests {
    static let l2 = PrefetchPlan.l2, off = PrefetchPlan.off, nta = PrefetchPlan.nonTemporal

    /// The plans a race runs its steps by, fed `seconds(plan)` as each step's time.
    static func schedule(_ steps: Int, candidates: [PrefetchPlan], rounds: Int, exploit: Int, doublings: Int = 0,
                         seconds: (PrefetchPlan) -> Double) -> (ran: [PrefetchPlan], wins: [Int]) {
        var race = PrefetchTuner.Race(candidates: candidates.count), ran: [PrefetchPlan] = []
        for _ in 0..<steps {
            let plan = candidates[race.candidate]
            ran.append(plan)
            race.record(seconds(plan), rounds: rounds, exploitSteps: exploit, maxDoublings: doublings)
        }
        return (ran, race.wins)
    }

    @Test func racesAlternateThenTheFasterPlanRunsUntilTheNextRace() {
        // l2 slow at first; after the first race the host changes and off becomes slow
        var step = 0
        let (ran, wins) = Self.schedule(18, candidates: [Self.l2, Self.off], rounds: 2, exploit: 5) { plan in
            step += 1
            return (step <= 9) == (plan == Self.l2) ? 0.010 : 0.009
        }
        let (l2, off) = (Self.l2, Self.off)
        #expect(ran == [l2, off, l2, off, off, off, off, off, off, l2, off, l2, off, l2, l2, l2, l2, l2])
        #expect(wins == [1, 1])
    }

    /// A plan that keeps winning runs twice as long after each race it wins again (up to
    /// the cap); another winner starts over at the shortest run.
    @Test func runsDoubleWhileTheSameWinnerHolds() {
        var step = 0
        let (ran, wins) = Self.schedule(25, candidates: [Self.l2, Self.off], rounds: 1, exploit: 2, doublings: 2) { plan in
            step += 1
            return (step <= 20) == (plan == Self.l2) ? 0.009 : 0.010
        }
        let (l2, off) = (Self.l2, Self.off)
        #expect(ran == [l2, off, l2, l2,                      // race, run of 2
                        l2, off, l2, l2, l2, l2,              // won again: 4
                        l2, off] + Array(repeating: l2, count: 8)  // and again: 8 (capped at 2 doublings)
                     + [l2, off, off, off, l2])               // off wins: back to 2
        #expect(wins == [3, 1])
    }

    @Test func aTieKeepsTheFirstCandidate() {
        let (ran, _) = Self.schedule(6, candidates: [Self.l2, Self.off, Self.nta], rounds: 1, exploit: 3) { _ in 0.01 }
        #expect(ran == [Self.l2, Self.off, Self.nta, Self.l2, Self.l2, Self.l2])
    }

    @Test func theDefaultRaceHasNoneAndBothLevels() {
        #expect(PrefetchTuner().candidates == [Self.l2, Self.off, Self.nta])
    }

    /// Real steps through `run`: each plan's steps sleep a different time (the kernels are
    /// told the plan, read back from them), so the race's outcome is certain.
    @Test func eachKindOfStepHasItsOwnRace() {
        let saved = ComputePool.fixedPrefetch
        ComputePool.fixedPrefetch = nil  // MAMBAD_PREFETCH may have fixed it
        defer { ComputePool.fixedPrefetch = saved }
        let tuner = PrefetchTuner(candidates: [Self.l2, Self.off, Self.nta], rounds: 1, exploitSteps: 3)
        func step(_ plan: PrefetchPlan, slowest: PrefetchPlan, slower: PrefetchPlan) -> PrefetchPlan {
            #expect(PrefetchPlan.current == plan, "the kernels prefetch by the plan the step is told")
            if plan == slowest { usleep(30_000) }
            if plan == slower { usleep(15_000) }
            return plan
        }
        var one: [PrefetchPlan] = [], four: [PrefetchPlan] = []
        for _ in 0..<6 {
            one.append(tuner.run(rows: 1, logits: true) { step($0, slowest: Self.l2, slower: Self.nta) })
            four.append(tuner.run(rows: 4, logits: true) { step($0, slowest: Self.off, slower: Self.nta) })
        }
        #expect(one == [Self.l2, Self.off, Self.nta, Self.off, Self.off, Self.off])
        #expect(four == [Self.l2, Self.off, Self.nta, Self.l2, Self.l2, Self.l2])
        #expect(tuner.summary == ["rows 1+logits: l2:6144 won 0, 0 won 1, nta:6144 won 0",
                                  "rows 4+logits: l2:6144 won 1, 0 won 0, nta:6144 won 0"])
    }

    @Test func aFixedPlanIsLeftAlone() {
        let tuner = PrefetchTuner(candidates: [Self.l2, Self.off], rounds: 1, exploitSteps: 3)
        let saved = ComputePool.fixedPrefetch
        let fixed = PrefetchPlan(distance: 2048, level: .nonTemporal)
        ComputePool.fixedPrefetch = fixed
        defer { ComputePool.fixedPrefetch = saved }
        for _ in 0..<4 {
            #expect(tuner.run(rows: 1, logits: true) { $0 } == fixed)
            #expect(mk_prefetch_distance() == 2048)
            #expect(mk_prefetch_level() == Int32(MK_PREFETCH_NONTEMPORAL))
        }
        #expect(tuner.summary.isEmpty)
        // a fixed distance is clamped as any distance is; a tuner's setting keeps it fixed
        ComputePool.fixedPrefetch = PrefetchPlan(distance: 2100)
        #expect(ComputePool.fixedPrefetch == PrefetchPlan(distance: 2048, level: .l2))
        mk_set_prefetch(0, Int32(MK_PREFETCH_L2))
        #expect(ComputePool.fixedPrefetch == .off)
        ComputePool.fixedPrefetch = nil
        #expect(ComputePool.fixedPrefetch == nil)
    }

    @Test func plansAsTheSettingsWriteThem() {
        #expect(PrefetchPlan("0") == .off)
        #expect(PrefetchPlan("6144") == .l2)
        #expect(PrefetchPlan("l2:6K") == .l2)
        #expect(PrefetchPlan("nta:6144") == .nonTemporal)
        #expect(PrefetchPlan("nta:0") == .off)
        #expect(PrefetchPlan("nta:32") == .off)
        #expect(PrefetchPlan("4100") == PrefetchPlan(distance: 4096))
        #expect(PrefetchPlan("64K") == PrefetchPlan(distance: 65536))
        for bad in ["", "l2:", "nta", "-64", "65600", "1M", "t0:64", "6144 ", "６"] {
            #expect(PrefetchPlan(bad) == nil, "\(bad)")
        }
        for plan in [PrefetchPlan.off, .l2, .nonTemporal, PrefetchPlan(distance: 128, level: .nonTemporal)] {
            #expect(PrefetchPlan(plan.description) == plan)
        }
    }
}
