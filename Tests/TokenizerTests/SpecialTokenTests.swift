import Testing
import Tokenizer

@Suite struct SpecialTokenTests {
    let tokenizer = Fixtures.falcon

    @Test func specialTokensAreMatchedBeforePreTokenization() {
        #expect(tokenizer.encode("<|endoftext|>", addSpecialTokens: false) == [11])
        #expect(tokenizer.encode(">>TITLE<<", addSpecialTokens: false) == [0])
        #expect(tokenizer.encode(">>MIDDLE<<", addSpecialTokens: false) == [10])
        #expect(tokenizer.encode("Hello<|endoftext|> world", addSpecialTokens: false) == [9856, 11, 1079])
        #expect(tokenizer.encode(">>TITLE<<>>ABSTRACT<<", addSpecialTokens: false) == [0, 1])
    }

    @Test(arguments: [">>title<<", "<|endoftext|", "|endoftext|>", ">>TITLE<", "<|end of text|>", ">> TITLE<<"])
    func nearMissesAreNotSpecial(text: String) {
        let ids = tokenizer.encode(text, addSpecialTokens: false)
        #expect(!ids.isEmpty)
        #expect(ids.allSatisfy { $0 > 11 }, "\(text) gave \(ids)")
    }

    @Test func vocabularyFacts() {
        #expect(tokenizer.vocabSize == 65024)
        #expect(tokenizer.eosTokenId == 11)
        #expect(tokenizer.id(forToken: "<|endoftext|>") == 11)
        #expect(tokenizer.id(forToken: ">>TITLE<<") == 0)
        #expect(tokenizer.id(forToken: "Hello") == 9856)
        #expect(tokenizer.id(forToken: "Ġworld") == 1079)
        #expect(tokenizer.id(forToken: "no such token here") == nil)
        #expect(tokenizer.token(forId: 1079) == "Ġworld")
        #expect(tokenizer.token(forId: 65024) == nil)
        #expect((0...11).allSatisfy { tokenizer.isSpecial($0) })
        #expect(!tokenizer.isSpecial(12))
        #expect(!tokenizer.isSpecial(9856))
        #expect(!tokenizer.isSpecial(-1))
        #expect(!tokenizer.isSpecial(1 << 40))
    }

    @Test func skipSpecialTokensWhenDecoding() throws {
        let ids = tokenizer.encode(">>QUESTION<<Hi<|endoftext|>", addSpecialTokens: false)
        #expect(ids.first == 6 && ids.last == 11)
        #expect(try tokenizer.decode(ids, skipSpecialTokens: false) == ">>QUESTION<<Hi<|endoftext|>")
        #expect(try tokenizer.decode(ids, skipSpecialTokens: true) == "Hi")
    }
}

@Suite struct PiecesTests {
    let tokenizer = Fixtures.falcon

    @Test func piecesOfKnownTexts() throws {
        #expect(try tokenizer.pieces(tokenizer.encode("Hello, world!", addSpecialTokens: false))
            == ["Hello", ",", " world", "!"])
        #expect(try tokenizer.pieces([10963, 27681, 34]) == ["123", "456", "7"])
        #expect(tokenizer.encode("1234567", addSpecialTokens: false) == [10963, 27681, 34])
        // "ü" is split over two byte tokens: each piece alone is part of a character.
        #expect(try tokenizer.pieces([28611, 132, 30042]) == ["F\u{FFFD}", "\u{FFFD}", "hrer"])
        #expect(try tokenizer.pieces([11, 0]) == ["<|endoftext|>", ">>TITLE<<"])
        #expect(try tokenizer.pieces([]) == [])
    }

    @Test(arguments: [65024, -1, 1_000_000, Int.max])
    func unknownIdIsATypedError(id: Int) throws {
        #expect(throws: TokenizerError.unknownTokenId(id)) { try tokenizer.decode([9856, id]) }
        #expect(throws: TokenizerError.unknownTokenId(id)) { try tokenizer.pieces([id]) }
        var stream = tokenizer.streamingDetokenizer()
        #expect(throws: TokenizerError.unknownTokenId(id)) { try stream.append(id) }
    }

    @Test func streamingHoldsBackPartialCharacters() throws {
        var stream = tokenizer.streamingDetokenizer()
        #expect(try stream.append(28611) == "F")  // "F" + first byte of "ü"
        #expect(try stream.append(132) == "ü")
        #expect(try stream.append(30042) == "hrer")
        #expect(stream.finish() == "")

        // An unknown id leaves the state as it was.
        #expect(try stream.append(28611) == "F")
        #expect(throws: TokenizerError.unknownTokenId(70000)) { try stream.append(70000) }
        // A character left incomplete at the end comes out as U+FFFD, as decode does.
        #expect(stream.finish() == "\u{FFFD}")
        #expect(try tokenizer.decode([28611]) == "F\u{FFFD}")
    }

    @Test func concurrentEncodesAgree() async {
        let tokenizer = self.tokenizer
        let vectors = Fixtures.vectors.map(\.vector)
        let results = await withTaskGroup(of: Bool.self) { group in
            for _ in 0..<8 {
                group.addTask {
                    vectors.allSatisfy { tokenizer.encode($0.text, addSpecialTokens: false) == $0.ids }
                }
            }
            return await group.reduce(into: [Bool]()) { $0.append($1) }
        }
        #expect(results == Array(repeating: true, count: 8))
    }
}
