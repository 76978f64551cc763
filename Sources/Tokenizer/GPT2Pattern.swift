/// A hand-written matcher for the GPT-2 split regex used by the `ByteLevel` pre-tokenizer:
///
///     's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
///
/// Oniguruma (which the tokenizers crate uses) tries the alternatives in order at each position and
/// takes the first that matches. Every scalar is covered by some alternative, so the matches tile the
/// piece with no gaps: `matchEnd` returns where the match starting at `p` ends.
///
/// `(?!\S)` looks at the end of the *piece*, not of the whole text: pieces are matched independently.
enum GPT2Pattern {
    private static let letter = CharacterClass.letter.rawValue
    private static let number = CharacterClass.number.rawValue
    private static let whitespace = CharacterClass.whitespace.rawValue
    private static let space = CharacterClass.space.rawValue
    private static let letterNumberSpace = letter | number | whitespace

    @inline(__always)
    static func matchEnd<S: ScalarSource>(_ s: S, _ p: Int, _ end: Int) -> Int {
        let buf = s.buf
        // Contractions, case-sensitive ASCII. (After ByteLevel the bytes ' s t … map to themselves.)
        if buf[p] == 0x27, p + 1 < end {
            switch buf[p + 1] {
            case 0x73, 0x74, 0x6D, 0x64:  // s t m d
                return p + 2
            case 0x72, 0x76:  // r v → 're 've
                if p + 2 < end, buf[p + 2] == 0x65 { return p + 3 }
            case 0x6C:  // l → 'll
                if p + 2 < end, buf[p + 2] == 0x6C { return p + 3 }
            default:
                break
            }
        }
        let (c0, l0) = s.classAt(p)
        var q = p + l0
        // " ?X+" with the optional space taken.
        if c0 & space != 0, q < end {
            let (c1, l1) = s.classAt(q)
            if c1 & letter != 0 { return run(s, q + l1, end) { $0 & letter != 0 } }
            if c1 & number != 0 { return run(s, q + l1, end) { $0 & number != 0 } }
            if c1 & letterNumberSpace == 0 { return run(s, q + l1, end) { $0 & letterNumberSpace == 0 } }
        }
        if c0 & letter != 0 { return run(s, q, end) { $0 & letter != 0 } }
        if c0 & number != 0 { return run(s, q, end) { $0 & number != 0 } }
        if c0 & whitespace == 0 { return run(s, q, end) { $0 & letterNumberSpace == 0 } }
        // \s+(?!\S) backs off one scalar when the run is followed by a non-space; \s+ takes a lone one.
        var lastStart = p
        while q < end {
            let (c, l) = s.classAt(q)
            if c & whitespace == 0 { break }
            lastStart = q
            q += l
        }
        if q == end || lastStart == p { return q }
        return lastStart
    }

    @inline(__always)
    private static func run<S: ScalarSource>(_ s: S, _ from: Int, _ end: Int, _ accept: (UInt8) -> Bool) -> Int {
        var q = from
        while q < end {
            let (c, l) = s.classAt(q)
            if !accept(c) { break }
            q += l
        }
        return q
    }
}

/// How a pre-tokenizer step sees the bytes of a piece: as Unicode scalars, or (after `ByteLevel`)
/// as one mapped scalar per byte.
protocol ScalarSource {
    var buf: UnsafePointer<UInt8> { get }
    /// Class bits and byte length of the "character" starting at `p`.
    func classAt(_ p: Int) -> (UInt8, Int)
}

struct RawScalars: ScalarSource {
    let buf: UnsafePointer<UInt8>
    let table: UnsafeMutablePointer<UInt8>

    @inline(__always)
    func classAt(_ p: Int) -> (UInt8, Int) {
        let b = buf[p]
        if b < 0x80 { return (table[Int(b)], 1) }
        let (v, l) = decodeScalar(buf, p)
        if v < 0x10000 { return (table[Int(v)], l) }
        return (CharacterClassTable.shared.classOf(v), l)
    }
}

struct MappedBytes: ScalarSource {
    let buf: UnsafePointer<UInt8>
    let classes: UnsafePointer<UInt8>

    @inline(__always)
    func classAt(_ p: Int) -> (UInt8, Int) { (classes[Int(buf[p])], 1) }
}
