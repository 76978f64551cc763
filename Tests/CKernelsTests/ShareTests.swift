import CKernels
import Foundation
import Testing

/// mk_share: a thread's run of work items, taken by its owner from the front and by
/// helpers from the back.
@Suite struct ShareTests {
    @Test func theOwnerTakesQuartersFromTheFrontAndHelpersEighthsFromTheBack() {
        var share = mk_share(ends: 0)
        mk_share_init(&share, 100, 200)
        var first: Int64 = -1
        #expect(mk_share_take(&share, 0, &first) == 25 && first == 100)   // [100, 125)
        #expect(mk_share_take(&share, 1, &first) == 10 && first == 190)   // 75 left: [190, 200)
        #expect(mk_share_take(&share, 0, &first) == 17 && first == 125)   // 65 left: [125, 142)
        var left: Int64 = 48, next = Int64(142), last = Int64(190)
        while left > 0 {
            let helper: Int32 = left % 2 == 0 ? 1 : 0
            let n = mk_share_take(&share, helper, &first)
            #expect(n >= 1)
            if helper == 0 {
                #expect(first == next)
                next += n
            } else {
                #expect(first + n == last)
                last = first
            }
            left -= n
        }
        #expect(next == last)
        #expect(mk_share_take(&share, 0, &first) == 0)
        #expect(mk_share_take(&share, 1, &first) == 0)
    }

    /// Pieces of whole multiples (decode products hand out 4 panels at a time, so that
    /// their epilogues see whole blocks of 64 channels): every cut stays on a multiple.
    @Test func piecesOfAMultipleKeepEveryCutOnAMultiple() {
        var share = mk_share(ends: 0)
        mk_share_init(&share, 64, 320)
        var first: Int64 = -1, taken = Set<Int64>()
        var helper: Int32 = 0
        while case let n = mk_share_take_multiple(&share, helper, 4, &first), n > 0 {
            #expect(n % 4 == 0 && first % 4 == 0, "\(n) from \(first)")
            for item in first..<(first + n) { #expect(taken.insert(item).inserted) }
            helper ^= 1
        }
        #expect(taken == Set(64..<320))
        // a length that is not a multiple: the last piece is what is left
        mk_share_init(&share, 0, 6)
        #expect(mk_share_take_multiple(&share, 0, 4, &first) == 4 && first == 0)
        #expect(mk_share_take_multiple(&share, 0, 4, &first) == 2 && first == 4)
        #expect(mk_share_take_multiple(&share, 1, 4, &first) == 0)
    }

    @Test func anEmptyOrBackwardShareGivesNothing() {
        var share = mk_share(ends: 0)
        var first: Int64 = 0
        mk_share_init(&share, 7, 7)
        #expect(mk_share_take(&share, 0, &first) == 0)
        mk_share_init(&share, 9, 3)
        #expect(mk_share_take(&share, 1, &first) == 0)
    }

    /// Four threads at once, one owner and three helpers: every item is taken exactly
    /// once, and each take is a contiguous run.
    /// The share and a count per item, shared by the threads (each writes only the
    /// counts of the items it took).
    struct Shared: @unchecked Sendable {
        let share = UnsafeMutablePointer<mk_share>.allocate(capacity: 1)
        let counts = UnsafeMutablePointer<Int32>.allocate(capacity: 5003)
    }

    @Test func concurrentTakesPartitionTheShare() {
        for _ in 0..<50 {
            let shared = Shared()
            let (share, counts) = (shared.share, shared.counts)
            defer { share.deallocate(); counts.deallocate() }
            mk_share_init(share, 3, 5003)
            counts.initialize(repeating: 0, count: 5003)
            DispatchQueue.concurrentPerform(iterations: 4) { thread in
                var first: Int64 = 0
                while case let n = mk_share_take(shared.share, thread == 0 ? 0 : 1, &first), n > 0 {
                    for i in Int(first)..<Int(first + n) { shared.counts[i] += 1 }
                }
            }
            #expect((0..<3).allSatisfy { counts[$0] == 0 })
            #expect((3..<5003).allSatisfy { counts[$0] == 1 })
        }
    }
}
