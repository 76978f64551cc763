import MambaRPC
import Testing

@Suite struct FramingTests {
    func messages(_ events: [FrameEvent]) -> [String] {
        events.compactMap { if case .message(let m) = $0 { String(decoding: m, as: UTF8.self) } else { nil } }
    }

    @Test func ndjsonSplitsLinesAcrossReads() {
        var decoder = FrameDecoder()
        var events = decoder.feed(Array(#"{"a":1}"#.utf8) + [0x0A] + Array(#"{"b""#.utf8))
        #expect(events.first == .detected(.ndjson))
        #expect(messages(events) == [#"{"a":1}"#])
        events = decoder.feed(Array(":2}\r\n\n[1]\n".utf8))
        #expect(messages(events) == [#"{"b":2}"#, "[1]"])
    }

    @Test func ndjsonLastLineWithoutNewlineCountsAtEnd() {
        var decoder = FrameDecoder()
        #expect(messages(decoder.feed(Array(#"{"a":1}"#.utf8))).isEmpty)
        #expect(messages(decoder.finish()) == [#"{"a":1}"#])
    }

    @Test func lspReadsContentLengthAndIgnoresOtherHeaders() {
        var decoder = FrameDecoder()
        let body = #"{"x":"é"}"#
        let wire = "Content-Length: \(body.utf8.count)\r\nContent-Type: application/vscode-jsonrpc; charset=utf-8\r\n\r\n" + body
        var all: [FrameEvent] = []
        for byte in Array(wire.utf8) + Array(wire.utf8) { all += decoder.feed([byte]) }   // one byte at a time
        #expect(all.first == .detected(.lsp))
        #expect(messages(all) == [body, body])
    }

    @Test func garbageFirstByteIsAParseErrorInNDJSON() {
        var decoder = FrameDecoder()
        let events = decoder.feed(Array("hello\n".utf8))
        guard case .fatal(let error, let framing)? = events.last else { Issue.record("no fatal event"); return }
        #expect(error.code == -32700)
        #expect(framing == .ndjson)
        #expect(decoder.feed(Array("{}\n".utf8)).isEmpty)
    }

    @Test func hugeContentLengthIsRefusedBeforeTheBody() {
        var decoder = FrameDecoder(limits: FrameLimits(maxMessageBytes: 1000, maxHeaderBytes: 100))
        let events = decoder.feed(Array("Content-Length: 100000000\r\n\r\n{".utf8))
        guard case .fatal(let error, .lsp)? = events.last else { Issue.record("no fatal event"); return }
        #expect(error.code == -32002)
        #expect(error.data?["limit"] == .integer(1000))
    }

    @Test func badContentLengthIsAnError() {
        for header in ["Content-Length: -5\r\n\r\n", "Content-Length: x\r\n\r\n", "Content-Type: a\r\n\r\n", "Cxx\r\n\r\n"] {
            var decoder = FrameDecoder()
            guard case .fatal(let error, .lsp)? = decoder.feed(Array(header.utf8)).last else {
                Issue.record("no fatal event for \(header)"); continue
            }
            #expect(error.code == -32700)
        }
    }

    @Test func oversizeHeaderBlockAndLineAreRefused() {
        var lsp = FrameDecoder(limits: FrameLimits(maxMessageBytes: 1000, maxHeaderBytes: 64))
        guard case .fatal(let e1, _)? = lsp.feed(Array(("Content-Length: 1\r\nX: " + String(repeating: "a", count: 100)).utf8)).last
        else { Issue.record("header"); return }
        #expect(e1.code == -32002)
        var ndjson = FrameDecoder(limits: FrameLimits(maxMessageBytes: 1000, maxHeaderBytes: 64))
        #expect(ndjson.feed(Array(("{\"a\":\"" + String(repeating: "a", count: 500)).utf8)).count == 1)  // detected only
        guard case .fatal(let e2, .ndjson)? = ndjson.feed(Array(String(repeating: "a", count: 600).utf8)).last
        else { Issue.record("line"); return }
        #expect(e2.code == -32002)
    }

    @Test func framingWrapsBodies() {
        #expect(String(decoding: Framing.lsp.frame(Array("{}".utf8)), as: UTF8.self) == "Content-Length: 2\r\n\r\n{}")
        #expect(String(decoding: Framing.ndjson.frame(Array("{}".utf8)), as: UTF8.self) == "{}\n")
    }
}
