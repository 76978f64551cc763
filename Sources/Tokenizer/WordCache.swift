/// A cache of pre-token bytes → ids, so that frequent words skip the merge loop (the tokenizers
/// crate keeps a similar cache). Open addressing over a byte arena; when it fills up it is simply
/// cleared, which bounds its memory.
struct WordCache {
    static let maxKeyLength = 128
    private static let slotCount = 1 << 16
    private static let maxEntries = 1 << 15
    private static let keyArenaSize = 1 << 21
    private static let idArenaSize = 1 << 19

    private struct Slot {
        var hash: UInt64  // 0: empty
        var keyOffset: UInt32
        var keyLength: UInt32
        var idOffset: UInt32
        var idCount: UInt32
    }

    private let slots: UnsafeMutablePointer<Slot>
    private let keyArena: UnsafeMutablePointer<UInt8>
    private let idArena: UnsafeMutablePointer<Int32>
    private var keyUsed = 0
    private var idUsed = 0
    private var entries = 0

    init() {
        slots = .allocate(capacity: Self.slotCount)
        slots.initialize(repeating: Slot(hash: 0, keyOffset: 0, keyLength: 0, idOffset: 0, idCount: 0),
                         count: Self.slotCount)
        keyArena = .allocate(capacity: Self.keyArenaSize)
        idArena = .allocate(capacity: Self.idArenaSize)
    }

    func deallocate() {
        slots.deallocate(); keyArena.deallocate(); idArena.deallocate()
    }

    @inline(__always)
    static func hash(_ p: UnsafePointer<UInt8>, _ length: Int) -> UInt64 {
        var h: UInt64 = 0x9E37_79B9_7F4A_7C15 ^ UInt64(length)
        var i = 0
        let raw = UnsafeRawPointer(p)
        while i + 8 <= length {
            h = (h ^ raw.loadUnaligned(fromByteOffset: i, as: UInt64.self)) &* 0xBF58_476D_1CE4_E5B9
            h ^= h >> 31
            i += 8
        }
        if i < length {
            var w: UInt64 = 0
            var shift: UInt64 = 0
            while i < length {
                w |= UInt64(p[i]) << shift
                shift += 8
                i += 1
            }
            h = (h ^ w) &* 0x94D0_49BB_1331_11EB
            h ^= h >> 29
        }
        return h | 1
    }

    /// Appends the cached ids of `key` to `out`; false on a miss.
    @inline(__always)
    func lookup(_ key: UnsafePointer<UInt8>, _ length: Int, hash: UInt64, into out: inout [Int]) -> Bool {
        let mask = Self.slotCount - 1
        var i = Int(truncatingIfNeeded: hash >> 16) & mask
        while true {
            let s = slots[i]
            if s.hash == 0 { return false }
            if s.hash == hash && Int(s.keyLength) == length
                && memoryEqual(keyArena + Int(s.keyOffset), key, length) {
                let base = idArena + Int(s.idOffset)
                for k in 0..<Int(s.idCount) { out.append(Int(base[k])) }
                return true
            }
            i = (i + 1) & mask
        }
    }

    /// Remembers `ids` for `key` (the caller checked that the key is absent).
    mutating func insert(_ key: UnsafePointer<UInt8>, _ length: Int, hash: UInt64, ids: ArraySlice<Int>) {
        if entries >= Self.maxEntries || keyUsed + length > Self.keyArenaSize
            || idUsed + ids.count > Self.idArenaSize {
            clear()
        }
        let mask = Self.slotCount - 1
        var i = Int(truncatingIfNeeded: hash >> 16) & mask
        while slots[i].hash != 0 { i = (i + 1) & mask }
        (keyArena + keyUsed).update(from: key, count: length)
        var k = idUsed
        for id in ids {
            idArena[k] = Int32(truncatingIfNeeded: id)
            k += 1
        }
        slots[i] = Slot(hash: hash, keyOffset: UInt32(keyUsed), keyLength: UInt32(length),
                        idOffset: UInt32(idUsed), idCount: UInt32(ids.count))
        keyUsed += length
        idUsed = k
        entries += 1
    }

    private mutating func clear() {
        slots.update(repeating: Slot(hash: 0, keyOffset: 0, keyLength: 0, idOffset: 0, idCount: 0),
                     count: Self.slotCount)
        keyUsed = 0
        idUsed = 0
        entries = 0
    }
}

@inline(__always)
func memoryEqual(_ a: UnsafePointer<UInt8>, _ b: UnsafePointer<UInt8>, _ n: Int) -> Bool {
    var i = 0
    let ra = UnsafeRawPointer(a), rb = UnsafeRawPointer(b)
    while i + 8 <= n {
        if ra.loadUnaligned(fromByteOffset: i, as: UInt64.self) != rb.loadUnaligned(fromByteOffset: i, as: UInt64.self) {
            return false
        }
        i += 8
    }
    while i < n {
        if a[i] != b[i] { return false }
        i += 1
    }
    return true
}
