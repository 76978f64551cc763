import FalconMamba

/// Recurrent-state snapshots keyed by the prompt tokens that produced them, with the
/// logits that followed: a prompt that starts with a cached prefix prefills only the
/// rest, and one equal to a cached prefix prefills nothing. Byte-bounded LRU.
/// Used from the scheduler thread only.
struct StateCache {
    struct Entry {
        let tokens: [Int]
        let state: SequenceState
        let logits: [Float]
        var lastUse: UInt64
        var bytes: Int { state.byteCount + logits.count * 4 + tokens.count * 8 + 128 }
    }

    struct Hit {
        let tokens: Int
        let state: SequenceState
        let logits: [Float]
    }

    struct Statistics: Sendable, Equatable {
        var entries = 0, bytes = 0, hits = 0, misses = 0
    }

    let capacityBytes: Int
    private var entries: [PrefixKey: Entry] = [:]
    private var clock: UInt64 = 0
    private(set) var statistics = Statistics()

    init(capacityBytes: Int) { self.capacityBytes = capacityBytes }

    /// The longest cached prefix of `prompt` (possibly all of it); counts a hit or a miss.
    mutating func lookup(_ prompt: [Int]) -> Hit? {
        guard !entries.isEmpty, !prompt.isEmpty else { statistics.misses += 1; return nil }
        let hashes = PrefixKey.prefixHashes(prompt)
        for length in stride(from: prompt.count, through: 1, by: -1) {
            let key = PrefixKey(length: length, hash: hashes[length])
            guard var entry = entries[key], entry.tokens[...] == prompt[..<length] else { continue }
            clock += 1
            entry.lastUse = clock
            entries[key] = entry
            statistics.hits += 1
            return Hit(tokens: length, state: entry.state, logits: entry.logits)
        }
        statistics.misses += 1
        return nil
    }

    /// Keeps `state` (the context after `tokens`) and the logits that follow it,
    /// evicting the least recently used entries to stay under the byte budget.
    mutating func store(tokens: ArraySlice<Int>, state: SequenceState, logits: ArraySlice<Float>) {
        guard !tokens.isEmpty else { return }
        let tokens = Array(tokens)
        clock += 1
        let entry = Entry(tokens: tokens, state: state, logits: Array(logits), lastUse: clock)
        guard entry.bytes <= capacityBytes else { return }
        let key = PrefixKey(length: tokens.count, hash: PrefixKey.prefixHashes(tokens)[tokens.count])
        if let old = entries[key] { statistics.bytes -= old.bytes; statistics.entries -= 1 }
        while statistics.bytes + entry.bytes > capacityBytes, let victim = entries.min(by: { $0.value.lastUse < $1.value.lastUse }) {
            entries[victim.key] = nil
            statistics.bytes -= victim.value.bytes
            statistics.entries -= 1
        }
        entries[key] = entry
        statistics.bytes += entry.bytes
        statistics.entries += 1
    }
}

/// A token prefix named by its length and a rolling hash (FNV-1a over the ids).
struct PrefixKey: Hashable {
    let length: Int
    let hash: UInt64

    /// hashes[i] is the hash of tokens[..<i].
    static func prefixHashes(_ tokens: [Int]) -> [UInt64] {
        var hashes = [UInt64](repeating: 0, count: tokens.count + 1)
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        hashes[0] = h
        for (i, token) in tokens.enumerated() {
            h = (h ^ UInt64(bitPattern: Int64(token))) &* 0x0000_0100_0000_01B3
            hashes[i + 1] = h
        }
        return hashes
    }
}
