/// The `decoder` of a `tokenizer.json`, precomputed per id: the bytes each token contributes.
///
/// - `ByteLevel`: a token whose scalars are all in the byte-level alphabet stands for those bytes;
///   any other token (an added token with, say, a real space) contributes its own UTF-8, as in the
///   crate. The concatenation is then decoded as UTF-8 with U+FFFD for ill-formed parts
///   (`String::from_utf8_lossy`, which replaces each maximal ill-formed subpart by one U+FFFD).
/// - `null`: tokens are joined with a space, as the crate does without a decoder.
struct TokenTexts: Sendable {
    enum Kind: Sendable { case byteLevel, joinWithSpace }

    let kind: Kind
    /// Token `id` is `bytes[starts[id] ..< starts[id] + lengths[id]]`; a length of -1 marks an id
    /// with no token.
    private let starts: [Int32]
    private let lengths: [Int32]
    private let bytes: [UInt8]
    private let special: [Bool]

    init(_ spec: DecoderSpec?, tokens: [String?], special: [Bool]) throws(TokenizerError) {
        switch spec?.type {
        case nil: kind = .joinWithSpace
        case "ByteLevel": kind = .byteLevel
        case let other?: throw .unsupported(field: "decoder.type", kind: other)
        }
        var starts: [Int32] = []
        var lengths: [Int32] = []
        var bytes: [UInt8] = []
        starts.reserveCapacity(tokens.count)
        lengths.reserveCapacity(tokens.count)
        for token in tokens {
            starts.append(Int32(bytes.count))
            guard let token else {
                lengths.append(-1)
                continue
            }
            if kind == .byteLevel, let raw = ByteLevel.bytes(ofToken: token) {
                bytes += raw
            } else {
                bytes += token.utf8
            }
            lengths.append(Int32(bytes.count) - starts[starts.count - 1])
        }
        self.starts = starts
        self.lengths = lengths
        self.bytes = bytes
        self.special = special
    }

    var count: Int { starts.count }

    /// Appends the bytes of `id` to `out`, or returns false if `id` was skipped as special.
    @inline(__always)
    func append(_ id: Int, skipSpecial: Bool, to out: inout [UInt8]) throws(TokenizerError) -> Bool {
        guard id >= 0 && id < count, lengths[id] >= 0 else { throw .unknownTokenId(id) }
        if skipSpecial && special[id] { return false }
        let start = Int(starts[id])
        out.append(contentsOf: bytes[start..<(start + Int(lengths[id]))])
        return true
    }

    func decode(_ ids: [Int], skipSpecial: Bool) throws(TokenizerError) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(ids.count * 4)
        var first = true
        for id in ids {
            let mark = out.count
            if kind == .joinWithSpace && !first { out.append(0x20) }
            if try append(id, skipSpecial: skipSpecial, to: &out) {
                first = false
            } else {
                out.removeSubrange(mark...)
            }
        }
        return decodeUTF8Lossy(out[...])
    }
}

/// UTF-8 → String, each maximal ill-formed subpart replaced by one U+FFFD (what Rust's
/// `from_utf8_lossy` and Swift's `String(decoding:as:)` both do).
func decodeUTF8Lossy(_ bytes: ArraySlice<UInt8>) -> String {
    String(decoding: bytes, as: UTF8.self)
}

/// Where a trailing, still incomplete (but so far well-formed) UTF-8 sequence starts in `bytes`, or
/// `bytes.endIndex` if the bytes end on a boundary. Bytes before that index decode the same whatever
/// follows them.
func incompleteUTF8SuffixStart(_ bytes: [UInt8]) -> Int {
    let n = bytes.count
    var q = n - 1
    var continuations = 0
    while q >= 0 && continuations < 3 && bytes[q] & 0xC0 == 0x80 {
        q -= 1
        continuations += 1
    }
    guard q >= 0 else { return n }
    let lead = bytes[q]
    let needed: Int
    switch lead {
    case 0xC2...0xDF: needed = 2
    case 0xE0...0xEF: needed = 3
    case 0xF0...0xF4: needed = 4
    default: return n
    }
    let have = n - q
    guard have < needed else { return n }
    if have >= 2 {
        let second = bytes[q + 1]
        switch lead {
        case 0xE0: if second < 0xA0 { return n }
        case 0xED: if second > 0x9F { return n }
        case 0xF0: if second < 0x90 { return n }
        case 0xF4: if second > 0x8F { return n }
        default: break
        }
    }
    return q
}
