/// The `added_tokens` of a `tokenizer.json` (special tokens such as `<|endoftext|>`), matched in the
/// text before pre-tokenization, as `AddedVocabulary` in the tokenizers crate does:
///
/// - tokens with `normalized: false` are matched first, on the whole text; tokens with
///   `normalized: true` then on what is left between those matches (we implement no normalizer, so
///   both passes see the text as is);
/// - each pass finds leftmost-longest non-overlapping matches (the crate's Aho-Corasick
///   `LeftmostLongest`); a match rejected by `single_word` is skipped, and the search resumes after it;
/// - `lstrip` / `rstrip` widen a match over White_Space scalars on its left / right.
struct AddedTokens: Sendable {
    struct Token: Sendable {
        var id: Int
        var bytes: [UInt8]
        var singleWord: Bool
        var lstrip: Bool
        var rstrip: Bool
    }

    /// One pass: the tokens, indexed by first byte, longest first.
    struct MatchSet: Sendable {
        var tokens: [Token] = []
        var byFirstByte: [[Int]] = Array(repeating: [], count: 256)
        var isFirstByte: [Bool] = Array(repeating: false, count: 256)

        init(_ tokens: [Token]) {
            self.tokens = tokens
            for (i, t) in tokens.enumerated() {
                byFirstByte[Int(t.bytes[0])].append(i)
                isFirstByte[Int(t.bytes[0])] = true
            }
            for b in 0..<256 {
                byFirstByte[b].sort { tokens[$0].bytes.count > tokens[$1].bytes.count }
            }
        }

        var isEmpty: Bool { tokens.isEmpty }
    }

    /// A matched added token: the byte range it covers (with stripped spaces) and its id.
    struct Match {
        var start: Int
        var end: Int
        var id: Int
    }

    let nonNormalized: MatchSet
    let normalized: MatchSet
    var isEmpty: Bool { nonNormalized.isEmpty && normalized.isEmpty }

    init(_ tokens: [(token: Token, normalized: Bool)]) {
        nonNormalized = MatchSet(tokens.filter { !$0.normalized }.map(\.token))
        normalized = MatchSet(tokens.filter { $0.normalized }.map(\.token))
    }

    /// All matches in `buf[start..<end]`, in order, from both passes.
    func matches(_ buf: UnsafePointer<UInt8>, _ start: Int, _ end: Int) -> [Match] {
        if isEmpty { return [] }
        let first = Self.find(nonNormalized, buf, start, end)
        if normalized.isEmpty { return first }
        var all: [Match] = []
        var gapStart = start
        for m in first {
            all += Self.find(normalized, buf, gapStart, m.start)
            all.append(m)
            gapStart = m.end
        }
        all += Self.find(normalized, buf, gapStart, end)
        return all
    }

    private static func find(_ set: MatchSet, _ buf: UnsafePointer<UInt8>, _ start: Int, _ end: Int) -> [Match] {
        guard !set.isEmpty, start < end else { return [] }
        var out: [Match] = []
        var previousEnd = start
        var p = start
        while p < end {
            let b = Int(buf[p])
            guard set.isFirstByte[b] else { p += 1; continue }
            var found = -1
            for i in set.byFirstByte[b] {
                let t = set.tokens[i].bytes
                if p + t.count <= end, t.withUnsafeBufferPointer({ memoryEqual($0.baseAddress!, buf + p, t.count) }) {
                    found = i
                    break
                }
            }
            guard found >= 0 else { p += 1; continue }
            let token = set.tokens[found]
            var mStart = p
            var mEnd = p + token.bytes.count
            p = mEnd
            if token.singleWord {
                let wordBefore = mStart > start && isWordScalar(lastScalar(buf, start, mStart))
                let wordAfter = mEnd < end && isWordScalar(decodeScalar(buf, mEnd).value)
                if wordBefore || wordAfter { continue }
            }
            if token.lstrip {
                var s = mStart
                while s > start {
                    var q = s - 1
                    while q > start && buf[q] & 0xC0 == 0x80 { q -= 1 }
                    guard isWhiteSpace(decodeScalar(buf, q).value) else { break }
                    s = q
                }
                // Spaces an earlier match already took stay with it.
                mStart = max(s, previousEnd)
            }
            if token.rstrip {
                while mEnd < end {
                    let (v, l) = decodeScalar(buf, mEnd)
                    guard isWhiteSpace(v) else { break }
                    mEnd += l
                }
                p = mEnd
            }
            out.append(Match(start: mStart, end: mEnd, id: token.id))
            previousEnd = mEnd
        }
        return out
    }

    private static func lastScalar(_ buf: UnsafePointer<UInt8>, _ start: Int, _ end: Int) -> UInt32 {
        var q = end - 1
        while q > start && buf[q] & 0xC0 == 0x80 { q -= 1 }
        return decodeScalar(buf, q).value
    }

    private static func isWhiteSpace(_ v: UInt32) -> Bool {
        CharacterClassTable.shared.classOf(v) & CharacterClass.whitespace.rawValue != 0
    }

    /// Rust regex `\w`: Alphabetic, M*, Nd, Pc, Join_Control, with Unicode 16.0 tables like `\p{L}`
    /// (a scalar assigned later is not a word character for the crate).
    private static func isWordScalar(_ v: UInt32) -> Bool {
        guard let s = Unicode.Scalar(v) else { return false }
        let p = s.properties
        guard let age = p.age, (age.major, age.minor) <= CharacterClass.regexUnicodeVersion else { return false }
        if p.isAlphabetic || p.isJoinControl { return true }
        switch p.generalCategory {
        case .nonspacingMark, .spacingMark, .enclosingMark, .decimalNumber, .connectorPunctuation: return true
        default: return false
        }
    }
}
