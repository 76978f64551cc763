import Testing
import Tokenizer

/// Very long inputs stay linear-ish: no timing is asserted, the suite simply has to finish.
@Suite struct LongInputTests {
    let tokenizer = Fixtures.falcon

    @Test func tenMegabytesOfMixedText() throws {
        // Vectors that round-trip (no dropped bytes), repeated to 10 MB.
        let unit = Fixtures.vectors.map(\.vector).filter { $0.decoded == $0.text }.map(\.text).joined(separator: "\n")
        var text = ""
        text.reserveCapacity(10_100_000)
        while text.utf8.count < 10_000_000 { text += unit + "\n" }
        let ids = tokenizer.encode(text, addSpecialTokens: false)
        #expect(ids.count > 2_000_000)
        #expect(try tokenizer.decode(ids) == text)
    }

    @Test func oneMegabyteLineWithoutSpaces() throws {
        // A deterministic mix of letters, digits, punctuation, CJK and emoji with no white space.
        let alphabet = "abcdefghijXYZ0123456789éü日本語한국ж!?.,;:-_()[]{}<>/|\"'#$%^&*+=~`🦙€".unicodeScalars
            .map { Array(String($0).utf8) }
        var state: UInt64 = 0x2545_F491_4F6C_DD1D
        var bytes: [UInt8] = []
        bytes.reserveCapacity(1_000_004)
        while bytes.count < 1_000_000 {
            state ^= state << 13; state ^= state >> 7; state ^= state << 17
            bytes += alphabet[Int(state % UInt64(alphabet.count))]
        }
        let text = String(decoding: bytes, as: UTF8.self)
        let ids = tokenizer.encode(text, addSpecialTokens: false)
        #expect(try tokenizer.decode(ids) == text)
    }

    @Test func oneMillionXs() throws {
        let text = String(repeating: "x", count: 1_000_000)
        let ids = tokenizer.encode(text, addSpecialTokens: false)
        // Python tokenizers gives 250,000 × "xxxx".
        #expect(ids.count == 250_000)
        #expect(Set(ids).count == 1)
        #expect(try tokenizer.decode(ids) == text)
    }

    @Test func longRunsOfWhiteSpaceAndDigits() throws {
        let spaces = String(repeating: " ", count: 200_000) + "a" + String(repeating: "\n", count: 100_000)
        #expect(try tokenizer.decode(tokenizer.encode(spaces, addSpecialTokens: false)) == spaces)
        let digits = String(repeating: "1234567890", count: 30_000)
        let ids = tokenizer.encode(digits, addSpecialTokens: false)
        #expect(ids.count == 100_000)  // numbers are split in threes
        #expect(try tokenizer.decode(ids) == digits)
    }
}
