@testable import MambaDaemon
import Testing
import Tokenizer

@Suite struct CompletionTextTests {
    static let tokenizer = try! Tokenizer.falcon()

    /// Feeds text as tokens one by one; returns the streamed deltas and the final text.
    func run(_ text: String, stop: [String] = [], singleLine: Bool = false) -> (deltas: [String], text: String, stopped: Bool) {
        var completion = CompletionText(tokenizer: Self.tokenizer, stop: stop, singleLine: singleLine)
        var deltas: [String] = []
        for id in Self.tokenizer.encode(text, addSpecialTokens: false) {
            completion.append(id)
            deltas.append(completion.takeDelta(final: false))
            if completion.stopped { break }
        }
        completion.finish()
        deltas.append(completion.takeDelta(final: true))
        return (deltas, completion.text, completion.stopped)
    }

    @Test func deltasConcatenateToTheText() {
        let r = run("Les élèves ont mangé 42 crêpes 🥞 à 12h30.")
        #expect(r.deltas.joined() == r.text)
        #expect(r.text == "Les élèves ont mangé 42 crêpes 🥞 à 12h30.")
        #expect(!r.stopped)
    }

    @Test func stopStringSplitAcrossTokensIsCutAndNeverStreamed() {
        // "END" is not one token here: held back while it may be a stop string
        let r = run("alpha beta ENDgamma", stop: ["END"])
        #expect(r.text == "alpha beta ")
        #expect(r.stopped)
        #expect(r.deltas.joined() == r.text)
        #expect(!r.deltas.contains { $0.contains("E") })
    }

    @Test func partialStopPrefixIsReleasedWhenItDoesNotMatch() {
        let r = run("one\n two\n\nthree", stop: ["\n\n"])
        #expect(r.text == "one\n two")
        #expect(r.deltas.joined() == "one\n two")
        let s = run("x ab ac", stop: ["abc"])
        #expect(s.text == "x ab ac" && !s.stopped && s.deltas.joined() == s.text)
    }

    @Test func earliestOfSeveralStopsWins() {
        #expect(run("a;b.c", stop: [".", ";"]).text == "a")
    }

    @Test func singleLineStopsAtTheFirstNewlineAfterText() {
        let r = run("\n\n    let x = 1\n    let y = 2\n", singleLine: true)
        #expect(r.text == "\n\n    let x = 1")
        #expect(r.stopped)
        #expect(r.deltas.joined() == r.text)
    }
}

@Suite struct StateCacheTests {
    @Test func longestPrefixWinsAndCountsHitsAndMisses() {
        var cache = StateCache(capacityBytes: 1 << 20)
        let s = SequenceStateBox.make()
        cache.store(tokens: [1, 2, 3][...], state: s, logits: [0.5][...])
        cache.store(tokens: [1, 2, 3, 4, 5][...], state: s, logits: [0.25][...])
        #expect(cache.lookup([1, 2, 3, 4, 5, 6])?.tokens == 5)
        #expect(cache.lookup([1, 2, 3, 4])?.tokens == 3)
        #expect(cache.lookup([1, 2, 3])?.logits == [0.5])
        #expect(cache.lookup([2, 3]) == nil)
        #expect(cache.statistics.hits == 3 && cache.statistics.misses == 1 && cache.statistics.entries == 2)
    }

    @Test func leastRecentlyUsedIsEvictedToStayUnderBudget() {
        let s = SequenceStateBox.make()
        let entryBytes = s.byteCount + 4 + 8 + 128
        var cache = StateCache(capacityBytes: entryBytes * 2 + 10)
        cache.store(tokens: [1][...], state: s, logits: [0][...])
        cache.store(tokens: [2][...], state: s, logits: [0][...])
        _ = cache.lookup([1])                       // 1 is now newer than 2
        cache.store(tokens: [3][...], state: s, logits: [0][...])
        #expect(cache.lookup([1]) != nil)
        #expect(cache.lookup([2]) == nil)
        #expect(cache.lookup([3]) != nil)
        #expect(cache.statistics.entries == 2)
        #expect(cache.statistics.bytes <= entryBytes * 2 + 10)
    }
}

import FalconMamba

enum SequenceStateBox {
    static func make() -> SequenceState { SequenceState(layers: 1, innerSize: 4, convKernel: 2, stateSize: 2) }
}

extension StateCache.Hit: Equatable {
    public static func == (a: Self, b: Self) -> Bool { a.tokens == b.tokens && a.logits == b.logits }
}
