#if canImport(Glibc)
import Glibc
#endif
import CKernels
import Synchronization

/// Chooses, on live decode steps, how the decode products prefetch their weights
/// (`PrefetchPlan`: how far ahead, into which cache level).
///
/// No one plan is best everywhere. On the host sessions 3-5 measured, prefetching 6 KiB
/// ahead non-temporal made batch-1 decode 8% faster in the host's fast bandwidth state
/// than the hardware prefetchers alone; on session 6's host (same machine kind) the
/// hardware prefetchers alone were 8-12% faster at batch 1 in its fast state and 0-8% in
/// its slow one, while at batch 4, whose product computes more per byte, they were
/// 15-20% slower; on session 7's host, prefetching 6 KiB into L2 instead of non-temporal
/// made batch 4 another ~21% faster, batch 2 ~8% and batch 8 ~3%, and batch 1 0-10%
/// slower (steps alternating in one process, `mambad bench --prefetch l2:6144,nta:6144,0`).
/// So each kind of step (rows, with or without logits) races the candidates: a few steps
/// of each, alternating so that all see the same bandwidth state, then the fastest for
/// the next `exploitSteps` steps, then another race, since the host's state drifts. A
/// race costs at most `rounds` steps of each slower candidate in
/// `rounds * candidates + exploitSteps` (6 in 69 by default: at batch 4 on session 7's
/// host, where none is ~35% slower than L2 and non-temporal ~20%, 2.4% of decode speed).
/// While the same candidate keeps winning, the run after a race doubles, up to
/// `exploitSteps << maxDoublings` (480 steps by default, so a settled race costs ~0.3%);
/// a different winner starts over at `exploitSteps`.
///
/// The plan only changes when lines are asked for, never what is computed. With
/// `ComputePool.fixedPrefetch` set (MAMBAD_PREFETCH, `bench --prefetch`) the tuner
/// leaves the plan alone.
final class PrefetchTuner: Sendable {
    let candidates: [PrefetchPlan]
    let rounds: Int
    let exploitSteps: Int
    let maxDoublings: Int

    init(candidates: [PrefetchPlan] = [.l2, .off, .nonTemporal], rounds: Int = 3, exploitSteps: Int = 60,
         maxDoublings: Int = 3) {
        precondition(!candidates.isEmpty && rounds > 0 && exploitSteps > 0 && maxDoublings >= 0)
        self.candidates = candidates
        self.rounds = rounds
        self.exploitSteps = exploitSteps
        self.maxDoublings = maxDoublings
    }

    /// One kind of step's race: `rounds` steps of each candidate, alternating, then
    /// `exploitSteps` steps of the fastest, doubled for each race in a row it won before
    /// (at most `maxDoublings` times).
    struct Race {
        var choice = 0                  // index into candidates while exploiting
        var step = 0                    // steps into the current race or run
        var racing = true
        var streak = 0                  // races in a row that `choice` won, less one
        var seconds: [Double]
        var wins: [Int]

        init(candidates: Int) {
            seconds = [Double](repeating: 0, count: candidates)
            wins = [Int](repeating: 0, count: candidates)
        }

        var candidate: Int { racing ? step % seconds.count : choice }

        /// Steps the current run lasts.
        func runLength(exploitSteps: Int, maxDoublings: Int) -> Int { exploitSteps << min(streak, maxDoublings) }

        mutating func record(_ elapsed: Double, rounds: Int, exploitSteps: Int, maxDoublings: Int) {
            step += 1
            if racing {
                seconds[(step - 1) % seconds.count] += elapsed
                if step == rounds * seconds.count {
                    let winner = seconds.indices.min { seconds[$0] < seconds[$1] }!
                    streak = wins.reduce(0, +) > 0 && winner == choice ? streak + 1 : 0
                    choice = winner
                    wins[choice] += 1
                    racing = false
                    step = 0
                }
            } else if step == runLength(exploitSteps: exploitSteps, maxDoublings: maxDoublings) {
                racing = true
                step = 0
                for i in seconds.indices { seconds[i] = 0 }
            }
        }
    }

    private let races = Mutex<[Int: Race]>([:])

    /// Runs `step` (a forward of `rows` rows; `logits`: it ends in the lm_head) with the
    /// decode products prefetching by the plan this kind of step races or has chosen
    /// (also passed to `step`), and records how long it took.
    func run<T>(rows: Int, logits: Bool, _ step: (PrefetchPlan) -> T) -> T {
        if let fixed = ComputePool.fixedPrefetch { return step(fixed) }
        // (A new race only for a new kind of step: steps allocate nothing.)
        let key = rows * 2 + (logits ? 1 : 0), count = candidates.count
        let candidate = races.withLock { races in
            if races[key] == nil { races[key] = Race(candidates: count) }
            return races[key]!.candidate
        }
        let plan = candidates[candidate]
        plan.apply()
        let start = ContinuousClock.now
        let result = step(plan)
        let elapsed = (ContinuousClock.now - start).seconds
        races.withLock { races in
            // Another thread may have moved this race on meanwhile: count the step only
            // where it ran by the plan the race is at.
            if races[key]?.candidate == candidate {
                races[key]!.record(elapsed, rounds: rounds, exploitSteps: exploitSteps, maxDoublings: maxDoublings)
            }
        }
        return result
    }

    /// For each kind of step seen, how many races each candidate won, as
    /// "rows 1+logits: l2:6144 won 3, 0 won 9, nta:6144 won 0".
    var summary: [String] {
        races.withLock { races in
            races.keys.sorted().map { key in
                let wins = zip(candidates, races[key]!.wins).map { "\($0) won \($1)" }.joined(separator: ", ")
                return "rows \(key / 2)\(key % 2 == 1 ? "+logits" : ""): " + wins
            }
        }
    }
}
