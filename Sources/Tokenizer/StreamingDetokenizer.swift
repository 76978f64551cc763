/// Turns ids into text one id at a time, for printing tokens as a model generates them.
///
/// Each `append` returns the text that is now certain: it never ends inside a UTF-8 character, so a
/// character split over several byte tokens (Falcon has such tokens for most non-ASCII text) comes
/// out whole once its last byte arrives. Joining every delta and `finish()` gives exactly
/// `tokenizer.decode(ids, skipSpecialTokens:)`.
public struct StreamingDetokenizer: Sendable {
    public let tokenizer: Tokenizer
    public let skipSpecialTokens: Bool
    private var pending: [UInt8] = []
    private var emittedAny = false

    public init(tokenizer: Tokenizer, skipSpecialTokens: Bool = false) {
        self.tokenizer = tokenizer
        self.skipSpecialTokens = skipSpecialTokens
    }

    /// Adds one id; returns the new text (possibly empty). Throws `unknownTokenId` for an id with no
    /// token, leaving the state as it was.
    public mutating func append(_ id: Int) throws(TokenizerError) -> String {
        let texts = tokenizer.tokenTexts
        let mark = pending.count
        if texts.kind == .joinWithSpace && emittedAny { pending.append(0x20) }
        do {
            if try !texts.append(id, skipSpecial: skipSpecialTokens, to: &pending) {
                pending.removeSubrange(mark...)
                return ""
            }
        } catch {
            pending.removeSubrange(mark...)
            throw error
        }
        emittedAny = true
        let cut = incompleteUTF8SuffixStart(pending)
        if cut == 0 { return "" }
        let text = decodeUTF8Lossy(pending[..<cut])
        pending.removeSubrange(..<cut)
        return text
    }

    /// Flushes bytes still held back (an incomplete character at the end becomes U+FFFD, as in
    /// `decode`) and resets the detokenizer.
    public mutating func finish() -> String {
        defer {
            pending.removeAll()
            emittedAny = false
        }
        return pending.isEmpty ? "" : decodeUTF8Lossy(pending[...])
    }
}
