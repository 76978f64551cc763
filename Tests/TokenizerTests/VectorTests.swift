import Testing
import Tokenizer

/// The reference vectors made with Python `tokenizers` 0.23.3 and llama.cpp's Falcon test cases.
@Suite struct VectorTests {
    let tokenizer = Fixtures.falcon

    @Test func all578VectorsEncodeExactly() {
        #expect(Fixtures.vectors.count == 578)
        var failures: [String] = []
        for (line, v) in Fixtures.vectors {
            let ids = tokenizer.encode(v.text, addSpecialTokens: false)
            if ids != v.ids { failures.append("line \(line) \(v.text.debugDescription): got \(ids), want \(v.ids)") }
        }
        #expect(failures.isEmpty, "\(failures.count) vectors differ:\n\(failures.prefix(20).joined(separator: "\n"))")
    }

    @Test func addSpecialTokensChangesNothingForFalcon() {
        for (_, v) in Fixtures.vectors.prefix(100) {
            #expect(tokenizer.encode(v.text, addSpecialTokens: true) == v.ids)
        }
    }

    @Test func all578VectorsDecodeExactly() throws {
        var failures: [String] = []
        for (line, v) in Fixtures.vectors {
            let text = try tokenizer.decode(v.ids, skipSpecialTokens: false)
            if text != v.decoded {
                failures.append("line \(line): got \(text.debugDescription), want \(v.decoded.debugDescription)")
            }
        }
        #expect(failures.isEmpty, "\(failures.count) vectors differ:\n\(failures.prefix(20).joined(separator: "\n"))")
    }

    @Test func llamaCpp46CasesEncodeExactly() {
        #expect(Fixtures.llamaCppCases.count == 46)
        for (i, c) in Fixtures.llamaCppCases.enumerated() {
            #expect(tokenizer.encode(c.text, addSpecialTokens: false) == c.ids, "case \(i): \(c.text.debugDescription)")
        }
    }

    @Test func llamaCppCasesAreTheFirst46Vectors() {
        for (i, c) in Fixtures.llamaCppCases.enumerated() {
            #expect(Fixtures.vectors[i].vector.text == c.text)
            #expect(Fixtures.vectors[i].vector.ids == c.ids)
        }
    }

    /// Concatenating the deltas gives `decode(all)`, and no delta ends inside a UTF-8 character.
    @Test func streamingDetokenizerMatchesDecodeOnAllVectors() throws {
        for skip in [false, true] {
            for (line, v) in Fixtures.vectors {
                var stream = tokenizer.streamingDetokenizer(skipSpecialTokens: skip)
                var joined = ""
                for id in v.ids {
                    let delta = try stream.append(id)
                    // A Swift String is always valid UTF-8; a delta cut inside a character would
                    // have turned into U+FFFD, which the joined text would then not match.
                    joined += delta
                }
                joined += stream.finish()
                #expect(joined == (try tokenizer.decode(v.ids, skipSpecialTokens: skip)), "line \(line), skip \(skip)")
            }
        }
    }

    /// Bytes emitted so far are always a prefix of the final decoded bytes when the text is valid:
    /// a delta never ends with a partial character.
    @Test func streamingDeltasEndOnCharacterBoundaries() throws {
        for (line, v) in Fixtures.vectors where v.decoded == v.text {
            var stream = tokenizer.streamingDetokenizer()
            var sofar: [UInt8] = []
            let full = Array(v.text.utf8)
            for id in v.ids {
                sofar += Array(try stream.append(id).utf8)
                #expect(full.starts(with: sofar), "line \(line)")
                if !sofar.isEmpty, sofar.count < full.count {
                    #expect(full[sofar.count] & 0xC0 != 0x80, "line \(line): delta ends inside a character")
                }
            }
            sofar += Array(stream.finish().utf8)
            #expect(sofar == full, "line \(line)")
        }
    }
}
