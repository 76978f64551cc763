import Foundation
import MambaDaemon
import MambaRPC
import Testing

/// Every error code of PROTOCOL.md, provoked for real; the daemon keeps serving others.
@Suite struct ErrorEndToEndTests {
    @Test func protocolErrorsAndOthersUnharmed() throws {
        let daemon = try TestDaemon(["--max-prompt-tokens", "64", "--max-batch", "4"])
        let bystander = try daemon.client()

        // garbage first byte: one -32700 in NDJSON form, then the connection closes
        let garbage = try daemon.client()
        try garbage.sendRaw([0x00, 0xFF, 0x13, 0x37] + Array("GET / HTTP/1.1\r\n\r\n".utf8))
        #expect(try garbage.receiveJSON().errorCode == -32700)
        #expect(garbage.readToEnd().isEmpty)

        // a line that is not JSON: -32700 with id null, the connection stays usable
        let c = try daemon.client()
        try c.sendRaw("{not json\n")
        let parse = try c.receiveJSON()
        #expect(parse.errorCode == -32700 && parse["id"] == .null)
        // not JSON-RPC 2.0
        try c.send(json: #"{"id":1,"method":"status"}"#)
        #expect(try c.receiveJSON().errorCode == -32600)
        // unknown method
        try c.request("no/such/method", id: 2)
        #expect(try c.receiveReply(id: 2).reply.errorCode == -32601)
        // bad params name the field
        try c.request("complete", id: 3, params: #"{"prompt":"x","maxTokens":-1}"#)
        let negative = try c.receiveReply(id: 3).reply
        #expect(negative.errorCode == -32602)
        #expect(negative["error"]?["data"]?["field"] == .string("maxTokens"))
        try c.request("detokenize", id: 4, params: #"{"tokens":[70000]}"#)
        #expect(try c.receiveReply(id: 4).reply["error"]?["data"]?["field"] == .string("tokens[0]"))
        try c.request("complete", id: 5, params: #"{"tokens":[1,-2]}"#)
        #expect(try c.receiveReply(id: 5).reply["error"]?["data"]?["field"] == .string("tokens[1]"))
        // too large: a prompt over --max-prompt-tokens, a batch over --max-batch
        try c.request("complete", id: 6, params: #"{"tokens":\#(Array(repeating: 5, count: 65))}"#)
        let long = try c.receiveReply(id: 6).reply
        #expect(long.errorCode == -32002 && long["error"]?["data"]?["limit"]?.int == 64)
        try c.send(json: "[" + Array(repeating: #"{"jsonrpc":"2.0","id":9,"method":"status"}"#, count: 5).joined(separator: ",") + "]")
        #expect(try c.receiveJSON().errorCode == -32002)
        // notifications never get a reply, not even for an unknown method
        try c.notify("no/such/notification")
        try c.request("status", id: 7)
        #expect(try c.receiveJSON()["id"]?.int == 7)

        // the bystander was not disturbed
        try bystander.request("complete", id: 1, params: #"{"tokens":\#(ReferenceCase.all[0].prompt_ids),"maxTokens":16}"#)
        #expect(try bystander.receiveReply(id: 1).reply["result"]?["tokens"]?.ints == ReferenceCase.all[0].greedy_ids)
    }

    @Test func hugeContentLengthIsRefusedWithoutReadingIt() throws {
        let daemon = try TestDaemon()
        let c = try daemon.client(.lsp)
        try c.sendRaw("Content-Length: 100000000\r\n\r\n{\"jsonrpc\":")
        let reply = try c.receiveJSON()
        #expect(reply.errorCode == -32002)
        #expect(reply["error"]?["data"]?["limit"]?.int == 8 << 20)
        #expect(c.readToEnd().isEmpty)
        // an oversize NDJSON line is refused once it passes the limit, not buffered
        let line = try daemon.client()
        try? line.sendRaw("{\"x\":\"" + String(repeating: "a", count: 9 << 20))
        #expect(try line.receiveJSON().errorCode == -32002)
        // an endless header block
        let header = try daemon.client(.lsp)
        try? header.sendRaw("Content-Length: 5\r\nX-Pad: " + String(repeating: "b", count: 10_000))
        #expect(try header.receiveJSON().errorCode == -32002)
        #expect(try daemon.status()["state"] == .string("ready"))
    }

    @Test func fullQueueIsOverloaded() throws {
        let daemon = try TestDaemon(["--max-active", "1", "--max-queue", "1"])
        let c = try daemon.client()
        try c.request("complete", id: 1, params: #"{"tokens":[1,2],"maxTokens":8000,"stream":true,"cache":false}"#)
        _ = try c.receiveJSON()   // the first progress notification: it is running
        try c.request("complete", id: 2, params: #"{"tokens":[1],"maxTokens":1}"#)   // waits in the queue
        try c.request("complete", id: 3, params: #"{"tokens":[1],"maxTokens":1}"#)   // no room
        var overloaded: JSONValue?
        while overloaded == nil {
            let m = try c.receiveJSON()
            if m["id"]?.int == 3 { overloaded = m }
        }
        #expect(overloaded?.errorCode == -32001)
        #expect((overloaded?["error"]?["data"]?["retryAfterMs"]?.int ?? 0) > 0)
        try c.notify("$/cancelRequest", params: #"{"id":1}"#)
    }

    @Test func notReadyWhileLoading() throws {
        let daemon = try TestDaemon(["--debug-load-delay-ms", "60000"], until: "INFO listening")
        let status = try daemon.status()
        #expect(status["state"] == .string("loading"))
        for method in ["complete", "tokenize", "embed", "model/info"] {
            let reply = try daemon.call(method, #"{"prompt":"x","text":"x","input":"x"}"#)
            #expect(reply.errorCode == -32003, "\(method)")
        }
        #expect(daemon.terminate() == 0, "a loading daemon still stops cleanly")
    }

    @Test func internalErrorWhenTheTokenizerDoesNotFitTheModel() throws {
        // a model whose vocabulary is smaller than its tokenizer's: a text prompt yields ids
        // the model cannot embed, a server-side problem (-32603), logged with the request id
        let folder = URL(fileURLWithPath: "/tmp/mambad-e2e-mismatch-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let small = TestDaemon.fixtures.appendingPathComponent("models/tiny-bf16")
        for file in try FileManager.default.contentsOfDirectory(atPath: small.path) {
            try FileManager.default.createSymbolicLink(at: folder.appendingPathComponent(file), withDestinationURL: small.appendingPathComponent(file))
        }
        try FileManager.default.createSymbolicLink(at: folder.appendingPathComponent("tokenizer.json"),
                                                   withDestinationURL: URL(fileURLWithPath: TestDaemon.model).appendingPathComponent("tokenizer.json"))
        let daemon = try TestDaemon(model: folder.path)
        let reply = try daemon.call("complete", #"{"prompt":"Question: How many hours in one day?","maxTokens":2}"#)
        #expect(reply.errorCode == -32603)
        #expect(daemon.stderr.contains("req=1/1"))
        let fine = try daemon.call("complete", #"{"tokens":[1,2,3],"maxTokens":2}"#)
        #expect(fine["result"]?["tokens"]?.ints.count == 2)
        #expect(try daemon.status()["requests"]?["failed"]?.int == 1)
    }
}

/// A client that floods requests and never reads its replies is not read from any more
/// (bounded memory), and other clients are still served.
@Suite struct BackpressureEndToEndTests {
    @Test func aFloodingClientIsThrottledNotBuffered() throws {
        let daemon = try TestDaemon()
        let before = try daemon.status()["memory"]?["rssBytes"]?.int ?? 0
        let flood = try daemon.client()
        var timeout = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(flood.fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let text = String(repeating: "def f(x): return x * 2\n", count: 1 << 16)   // 1.5 MB per request
        let message = Array(#"{"jsonrpc":"2.0","id":1,"method":"tokenize","params":{"text":\#(json(text))}}"#.utf8) + [0x0A]
        var sent = 0
        let attempted = 200 * message.count
        sending: for _ in 0..<200 {
            var offset = 0
            while offset < message.count {
                let n = message[offset...].withUnsafeBytes { send(flood.fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                if n <= 0 { break sending }   // the send timed out: the daemon stopped reading
                offset += n
                sent += n
            }
        }
        #expect(sent < attempted / 4, "the daemon kept reading: \(sent) of \(attempted) bytes")
        let status = try daemon.status()   // another client is still served
        let growth = (status["memory"]?["rssBytes"]?.int ?? 0) - before
        #expect(growth < 200 << 20, "resident memory grew by \(growth) bytes")
    }
}
