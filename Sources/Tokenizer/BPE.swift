/// Merge ranks of a BPE model: `(left id, right id) → (rank, merged id)`, in an open-addressing hash
/// table keyed by the packed pair (SipHash on a Swift `Dictionary` costs more than the whole merge).
final class MergeTable: @unchecked Sendable {
    private let keys: UnsafeMutablePointer<UInt64>
    private let values: UnsafeMutablePointer<UInt64>
    private let mask: Int
    private static let empty = UInt64.max

    init(capacityFor count: Int) {
        var size = 16
        while size < count * 2 { size <<= 1 }
        keys = .allocate(capacity: size)
        keys.initialize(repeating: Self.empty, count: size)
        values = .allocate(capacity: size)
        values.initialize(repeating: 0, count: size)
        mask = size - 1
    }

    deinit {
        keys.deallocate()
        values.deallocate()
    }

    @inline(__always)
    private static func slot(_ key: UInt64) -> Int {
        Int(truncatingIfNeeded: (key &* 0x9E37_79B9_7F4A_7C15) >> 40)
    }

    /// Inserts or overwrites (a later duplicate merge wins, as in the tokenizers crate's HashMap).
    func set(_ left: Int32, _ right: Int32, rank: Int32, merged: Int32) {
        let key = UInt64(UInt32(bitPattern: left)) << 32 | UInt64(UInt32(bitPattern: right))
        var i = Self.slot(key) & mask
        while keys[i] != Self.empty && keys[i] != key { i = (i + 1) & mask }
        keys[i] = key
        values[i] = UInt64(UInt32(bitPattern: rank)) << 32 | UInt64(UInt32(bitPattern: merged))
    }

    /// Packed `rank << 32 | merged id`, or `UInt64.max` when the pair does not merge.
    @inline(__always)
    func lookup(_ left: Int32, _ right: Int32) -> UInt64 {
        let key = UInt64(UInt32(bitPattern: left)) << 32 | UInt64(UInt32(bitPattern: right))
        var i = Self.slot(key) & mask
        while true {
            let k = keys[i]
            if k == key { return values[i] }
            if k == Self.empty { return UInt64.max }
            i = (i + 1) & mask
        }
    }
}

/// Scratch space for merging one word: a doubly linked list of symbols and a min-heap of candidate
/// merges ordered by (rank, position), as `Word::merge_all` in the tokenizers crate. O(n log n) in the
/// number of symbols, so a megabyte-long word is fine.
struct MergeScratch {
    var ids: UnsafeMutablePointer<Int32>
    var prev: UnsafeMutablePointer<Int32>
    var next: UnsafeMutablePointer<Int32>
    var heap: UnsafeMutablePointer<UInt64>
    var capacity: Int
    var count = 0

    init() {
        capacity = 64
        ids = .allocate(capacity: capacity)
        prev = .allocate(capacity: capacity)
        next = .allocate(capacity: capacity)
        heap = .allocate(capacity: capacity * 2)
    }

    func deallocate() {
        ids.deallocate(); prev.deallocate(); next.deallocate(); heap.deallocate()
    }

    @inline(__always)
    mutating func append(_ id: Int32) {
        if count == capacity { grow() }
        ids[count] = id
        count += 1
    }

    private mutating func grow() {
        let newCapacity = capacity * 2
        func moved(_ p: UnsafeMutablePointer<Int32>) -> UnsafeMutablePointer<Int32> {
            let n = UnsafeMutablePointer<Int32>.allocate(capacity: newCapacity)
            n.update(from: p, count: capacity)
            p.deallocate()
            return n
        }
        ids = moved(ids)
        prev.deallocate(); next.deallocate(); heap.deallocate()
        prev = .allocate(capacity: newCapacity)
        next = .allocate(capacity: newCapacity)
        heap = .allocate(capacity: newCapacity * 2)
        capacity = newCapacity
    }

    /// Applies the merges to `ids[0..<count]` and appends the resulting ids to `out`.
    mutating func mergeAll(_ merges: MergeTable, into out: inout [Int]) {
        let n = count
        if n == 0 { return }
        if n == 1 { out.append(Int(ids[0])); return }
        if n == 2 {
            let m = merges.lookup(ids[0], ids[1])
            if m != UInt64.max {
                out.append(Int(Int32(truncatingIfNeeded: m)))
            } else {
                out.append(Int(ids[0])); out.append(Int(ids[1]))
            }
            return
        }
        var heapCount = 0
        for i in 0..<n {
            prev[i] = Int32(i - 1)
            next[i] = i + 1 < n ? Int32(i + 1) : -1
        }
        for i in 0..<(n - 1) {
            let m = merges.lookup(ids[i], ids[i + 1])
            if m != UInt64.max { push(&heapCount, (m >> 32) << 32 | UInt64(i)) }
        }
        // Heap keys are rank << 32 | position: the lowest rank first, the leftmost among equals.
        while heapCount > 0 {
            let top = pop(&heapCount)
            let rank = top >> 32
            let pos = Int(top & 0xFFFF_FFFF)
            if ids[pos] < 0 { continue }  // merged into its left neighbour
            let right = Int(next[pos])
            if right < 0 { continue }
            // A stale entry: the pair at `pos` changed since it was queued.
            let m = merges.lookup(ids[pos], ids[right])
            if m == UInt64.max || m >> 32 != rank { continue }
            ids[pos] = Int32(truncatingIfNeeded: m)
            ids[right] = -1
            let after = next[right]
            next[pos] = after
            if after >= 0 { prev[Int(after)] = Int32(pos) }
            let before = prev[pos]
            if before >= 0 {
                let mp = merges.lookup(ids[Int(before)], ids[pos])
                if mp != UInt64.max { push(&heapCount, (mp >> 32) << 32 | UInt64(before)) }
            }
            if after >= 0 {
                let mn = merges.lookup(ids[pos], ids[Int(after)])
                if mn != UInt64.max { push(&heapCount, (mn >> 32) << 32 | UInt64(pos)) }
            }
        }
        var i: Int32 = 0  // the first symbol is never merged away
        while i >= 0 {
            out.append(Int(ids[Int(i)]))
            i = next[Int(i)]
        }
    }

    // Each merge pushes at most two entries and removes one symbol, so the heap never holds more
    // than 2n entries: the heap buffer has 2 × capacity slots.
    @inline(__always)
    private func push(_ count: inout Int, _ key: UInt64) {
        var i = count
        count += 1
        while i > 0 {
            let parent = (i - 1) >> 1
            if heap[parent] <= key { break }
            heap[i] = heap[parent]
            i = parent
        }
        heap[i] = key
    }

    @inline(__always)
    private func pop(_ count: inout Int) -> UInt64 {
        let top = heap[0]
        count -= 1
        if count == 0 { return top }
        let last = heap[count]
        var i = 0
        while true {
            var child = 2 * i + 1
            if child >= count { break }
            if child + 1 < count && heap[child + 1] < heap[child] { child += 1 }
            if heap[child] >= last { break }
            heap[i] = heap[child]
            i = child
        }
        heap[i] = last
        return top
    }
}
