import Foundation
import MambaRPC
import Testing

@Suite struct CompleteResultTests {
    static let golden = #"{"finishReason":"length","logprobs":[{"logprob":-0.25,"text":"x","token":1,"top":[{"logprob":-0.25,"text":"x","token":1},{"logprob":-1.5,"text":"y","token":2}]}],"text":"x","timings":{"decodeMs":600.5,"firstTokenMs":95,"prefillMs":40.25,"queueMs":0.125,"tokensPerSecond":19.5},"tokens":[1],"usage":{"cachedTokens":805,"completionTokens":1,"promptTokens":812}}"#

    static let value = CompleteResult(
        text: "x", tokens: [1], finishReason: .length,
        usage: .init(promptTokens: 812, cachedTokens: 805, completionTokens: 1),
        timings: .init(queueMs: 0.125, prefillMs: 40.25, firstTokenMs: 95, decodeMs: 600.5, tokensPerSecond: 19.5),
        logprobs: [.init(token: 1, text: "x", logprob: -0.25,
                         top: [.init(token: 1, text: "x", logprob: -0.25), .init(token: 2, text: "y", logprob: -1.5)])])

    @Test func encodesToTheGoldenJSON() throws {
        #expect(String(decoding: try WireJSON.encode(Self.value), as: UTF8.self) == Self.golden)
    }

    @Test func decodesTheGoldenJSON() throws {
        #expect(try WireJSON.decode(CompleteResult.self, from: Data(Self.golden.utf8)) == Self.value)
    }

    @Test func handWrittenJSONIsTheGoldenJSON() throws {
        #expect(String(decoding: Self.value.json, as: UTF8.self) == Self.golden)
        var value = Self.value
        value.logprobs = nil
        value.text = "a\"\n\u{1}é"
        #expect(value.json == [UInt8](try WireJSON.encode(value)))
        value.logprobs = [.init(token: 3, text: "", logprob: -.infinity, top: [])]
        #expect(try WireJSON.decode(CompleteResult.self, from: Data(value.json)).logprobs?[0].logprob == -Float.greatestFiniteMagnitude)
    }

    @Test func logprobsAreOmittedWhenNotAsked() throws {
        var value = Self.value
        value.logprobs = nil
        value.finishReason = .stop
        let json = String(decoding: try WireJSON.encode(value), as: UTF8.self)
        #expect(!json.contains("logprobs"))
        #expect(json.contains(#""finishReason":"stop""#))
    }
}
