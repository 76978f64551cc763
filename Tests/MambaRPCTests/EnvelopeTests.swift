import MambaRPC
import Testing

@Suite struct EnvelopeTests {
    func parse(_ text: String) -> RPCPayload { RPCPayload.parse(Array(text.utf8)) }
    func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

    @Test func requestsNotificationsAndInvalidMessages() {
        #expect(parse(#"{"jsonrpc":"2.0","id":7,"method":"status"}"#) == .single(.request(id: .number(7), method: "status", params: nil)))
        #expect(parse(#"{"jsonrpc":"2.0","id":"a","method":"tokenize","params":{"text":"x"}}"#)
            == .single(.request(id: .string("a"), method: "tokenize", params: .object(["text": .string("x")]))))
        #expect(parse(#"{"jsonrpc":"2.0","method":"initialized"}"#) == .single(.notification(method: "initialized", params: nil)))
        guard case .single(.invalid(.number(3), let e1)) = parse(#"{"id":3,"method":"status"}"#) else { Issue.record("no jsonrpc"); return }
        #expect(e1.code == -32600)
        guard case .single(.invalid(.null, let e2)) = parse(#"{"jsonrpc":"2.0","id":{"a":1},"method":"x"}"#) else { Issue.record("bad id"); return }
        #expect(e2.code == -32600)
        guard case .single(.invalid(.null, let e3)) = parse("42") else { Issue.record("not an object"); return }
        #expect(e3.code == -32600)
        guard case .failure(let e4) = parse("{oops") else { Issue.record("not JSON"); return }
        #expect(e4.code == -32700)
        guard case .failure(let e5) = parse("[]") else { Issue.record("empty batch"); return }
        #expect(e5.code == -32600)
    }

    @Test func batchesAreParsedElementByElement() {
        guard case .batch(let items) = parse(#"[{"jsonrpc":"2.0","id":1,"method":"status"},1,{"jsonrpc":"2.0","method":"n"}]"#) else {
            Issue.record("not a batch"); return
        }
        #expect(items.count == 3)
        #expect(items[0] == .request(id: .number(1), method: "status", params: nil))
        #expect(items[2] == .notification(method: "n", params: nil))
        guard case .failure(let e) = RPCPayload.parse(Array("[1,2,3]".utf8), maxBatch: 2) else { Issue.record("limit"); return }
        #expect(e.code == -32002)
    }

    @Test func outgoingMessagesHaveTheGoldenShape() {
        #expect(text(RPCOutbound.response(id: .number(1), result: DetokenizeResult(text: "a\"b\n")))
            == #"{"jsonrpc":"2.0","id":1,"result":{"text":"a\"b\n"}}"#)
        #expect(text(RPCOutbound.error(id: .string("x"), .invalidParams(field: "maxTokens", reason: "must be >= 0")))
            == #"{"jsonrpc":"2.0","id":"x","error":{"code":-32602,"data":{"field":"maxTokens","reason":"must be >= 0"},"message":"Invalid params: maxTokens must be >= 0"}}"#)
        #expect(text(RPCOutbound.error(id: .null, .overloaded(retryAfterMs: 250)))
            == #"{"jsonrpc":"2.0","id":null,"error":{"code":-32001,"data":{"retryAfterMs":250},"message":"Server overloaded: the queue is full"}}"#)
        let progress = CompleteProgress(id: .number(7), text: "delta", tokens: [42])
        #expect(text(RPCOutbound.notification(method: "complete/progress", params: Array(try! WireJSON.encode(progress))))
            == #"{"jsonrpc":"2.0","method":"complete/progress","params":{"id":7,"text":"delta","tokens":[42]}}"#)
        #expect(text(RPCOutbound.batch([Array("1".utf8), Array("2".utf8)])) == "[1,2]")
    }

    @Test func cancelledCarriesWhatWasProduced() throws {
        let e = RPCError.cancelled("by $/cancelRequest", text: "ab", tokens: [1, 2])
        #expect(e.code == -32800)
        #expect(text(Array(try WireJSON.encode(e))) == #"{"code":-32800,"data":{"text":"ab","tokens":[1,2]},"message":"Request cancelled: by $/cancelRequest"}"#)
    }

    @Test func writerNeverEmitsNaN() {
        var w = JSONWriter()
        w.floats([1, .nan, -.infinity, 0.5])
        #expect(text(w.bytes) == "[1,0,-3.4028235e+38,0.5]")
        var s = JSONWriter()
        s.string("\u{01}é\t")
        #expect(text(s.bytes) == "\"\\u0001é\\t\"")
    }
}
