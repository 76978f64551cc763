import Tokenizer

/// The text side of one completion: turns token ids into UTF-8, finds stop strings and
/// the single-line end, and decides how much text is safe to stream. A streamed delta
/// never ends inside a UTF-8 character (the detokenizer holds partial characters back)
/// nor inside what may turn out to be a stop string (held back until it is known).
struct CompletionText {
    private var detokenizer: StreamingDetokenizer?
    private let stops: [[UInt8]]
    private let longestStop: Int
    private let singleLine: Bool
    private var sawText = false
    /// The text so far (cut at a stop once one is found).
    private(set) var bytes: [UInt8] = []
    /// How much of `bytes` was handed out as deltas.
    private var emitted = 0
    /// A stop string or the end of the line was found: generation must end.
    private(set) var stopped = false

    init(tokenizer: Tokenizer?, stop: [String], singleLine: Bool) {
        detokenizer = tokenizer?.streamingDetokenizer()
        stops = stop.map { Array($0.utf8) }
        longestStop = stops.map(\.count).max() ?? 0
        self.singleLine = singleLine
    }

    var text: String { String(decoding: bytes, as: UTF8.self) }

    /// Adds one generated token's text.
    mutating func append(_ token: Int) {
        guard !stopped, detokenizer != nil else { return }
        let delta = (try? detokenizer!.append(token)) ?? ""
        add(Array(delta.utf8))
    }

    /// End of generation: flushes a partial character (as U+FFFD, like `decode`).
    mutating func finish() {
        guard !stopped, detokenizer != nil else { return }
        add(Array(detokenizer!.finish().utf8))
    }

    private mutating func add(_ new: [UInt8]) {
        guard !new.isEmpty else { return }
        let old = bytes.count
        bytes.append(contentsOf: new)
        var cut: Int?
        if singleLine {
            for i in old..<bytes.count {
                let b = bytes[i]
                if b == 0x0A, sawText { cut = i; break }
                if b != 0x20, b != 0x09, b != 0x0A, b != 0x0D { sawText = true }
            }
        }
        if !stops.isEmpty {
            let from = max(0, old - longestStop + 1)
            for stop in stops {
                if let at = Self.find(stop, in: bytes, from: from, before: cut ?? bytes.count) { cut = min(cut ?? at, at) }
            }
        }
        if let cut {
            bytes.removeSubrange(cut...)
            stopped = true
        }
    }

    /// The text not yet handed out that is certain now (all of it once `final` or stopped).
    mutating func takeDelta(final: Bool) -> String {
        let end = final || stopped ? bytes.count : bytes.count - heldBack()
        guard end > emitted else { return "" }
        defer { emitted = end }
        return String(decoding: bytes[emitted..<end], as: UTF8.self)
    }

    /// Length of the longest end of the text that is the start of a stop string.
    private func heldBack() -> Int {
        var held = 0
        for stop in stops {
            var k = min(stop.count - 1, bytes.count)
            while k > held {
                if bytes[(bytes.count - k)...].elementsEqual(stop[..<k]) { held = k; break }
                k -= 1
            }
        }
        return held
    }

    static func find(_ needle: [UInt8], in haystack: [UInt8], from: Int, before limit: Int) -> Int? {
        guard !needle.isEmpty, haystack.count >= needle.count else { return nil }
        var i = from
        while i + needle.count <= haystack.count, i < limit {
            if haystack[i] == needle[0], haystack[i..<(i + needle.count)].elementsEqual(needle) { return i }
            i += 1
        }
        return nil
    }
}
