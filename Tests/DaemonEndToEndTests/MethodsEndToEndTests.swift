import Foundation
import MambaDaemon
import MambaRPC
import Testing

/// Every method over a real connection, in both framings.
@Suite struct MethodsEndToEndTests {
    @Test(arguments: [Framing.ndjson, Framing.lsp])
    func everyMethodAnswers(framing: Framing) throws {
        let daemon = try TestDaemon()
        let c = try daemon.client(framing)
        let reference = ReferenceCase.all[0]

        try c.request("initialize", id: 1, params: #"{"processId":1,"clientInfo":{"name":"test"},"capabilities":{}}"#)
        let initialize = try #require(try c.receiveReply(id: 1).reply["result"])
        #expect(initialize["serverInfo"]?["name"] == .string("mambad"))
        #expect(initialize["capabilities"]?["framing"]?.array?.count == 2)
        #expect(initialize["model"]?["vocabSize"]?.int == 65024)
        try c.notify("initialized")

        try c.request("model/info", id: 2)
        let info = try #require(try c.receiveReply(id: 2).reply["result"])
        #expect(info["architecture"] == .string("falcon_mamba"))
        #expect(info["quantization"] == .string("nf4"))
        #expect(info["hiddenSize"]?.int == 32 && info["layers"]?.int == 2 && info["stateSize"]?.int == 16)
        #expect(info["eosTokenId"]?.int == 11 && (info["mappedBytes"]?.int ?? 0) > 0 && (info["stateBytesPerSequence"]?.int ?? 0) > 0)

        try c.request("tokenize", id: 3, params: #"{"text":\#(json(reference.prompt)),"pieces":true}"#)
        let tokens = try #require(try c.receiveReply(id: 3).reply["result"])
        #expect(tokens["tokens"]?.ints == reference.prompt_ids)
        #expect(tokens["pieces"]?.array?.compactMap(\.string).joined() == reference.prompt)

        try c.request("detokenize", id: 4, params: #"{"tokens":\#(reference.greedy_ids)}"#)
        #expect(try c.receiveReply(id: 4).reply["result"]?["text"] == .string(reference.greedy_text))

        try c.request("complete", id: 5, params: #"{"prompt":\#(json(reference.prompt)),"maxTokens":16,"logprobs":2}"#)
        let complete = try #require(try c.receiveReply(id: 5).reply["result"])
        #expect(complete["text"] == .string(reference.greedy_text))
        #expect(complete["tokens"]?.ints == reference.greedy_ids)
        #expect(complete["finishReason"] == .string("length"))
        #expect(complete["usage"]?["promptTokens"]?.int == reference.prompt_ids.count)
        #expect(complete["logprobs"]?.array?.count == 16)
        #expect(complete["logprobs"]?.array?.first?["top"]?.array?.first?["token"]?.int == reference.greedy_ids[0])
        for key in ["queueMs", "prefillMs", "firstTokenMs", "decodeMs", "tokensPerSecond"] {
            #expect(complete["timings"]?[key]?.double != nil, "timings.\(key)")
        }

        try c.request("embed", id: 6, params: #"{"input":\#(json(reference.prompt))}"#)
        let embed = try #require(try c.receiveReply(id: 6).reply["result"])
        #expect(embed["dimensions"]?.int == 32)
        #expect(cosine(embed["embeddings"]?.array?.first?.floats ?? [], reference.embedding_mean_normalized) >= 0.9999)

        try c.request("status", id: 7)
        let status = try #require(try c.receiveReply(id: 7).reply["result"])
        #expect(status["state"] == .string("ready"))
        #expect(status["requests"]?["completed"]?.int == 2)
        #expect((status["memory"]?["rssBytes"]?.int ?? 0) > 0 && (status["memory"]?["mappedBytes"]?.int ?? 0) > 0)
        #expect(status["cache"]?["entries"]?.int ?? 0 >= 1)
        #expect((status["uptimeSeconds"]?.double ?? -1) >= 0)

        // a cancel for something finished is a notification: no reply; `shutdown` answers null
        try c.notify("$/cancelRequest", params: #"{"id":5}"#)
        try c.request("shutdown", id: 8)
        let shutdown = try c.receiveReply(id: 8)
        #expect(shutdown.reply["result"] == .null)
        #expect(shutdown.notifications.isEmpty)
        // `exit` closes this connection only
        try c.notify("exit")
        #expect(c.readToEnd().isEmpty)
        #expect(try daemon.status()["state"] == .string("ready"))
    }

    @Test(arguments: ReferenceCase.all.indices)
    func completeAndEmbedMatchTheReference(index: Int) throws {
        let daemon = try TestDaemon()
        let r = ReferenceCase.all[index]
        let complete = try daemon.call("complete", #"{"prompt":\#(json(r.prompt)),"maxTokens":16}"#)
        #expect(complete["result"]?["text"] == .string(r.greedy_text))
        let byTokens = try daemon.call("complete", #"{"tokens":\#(r.prompt_ids),"maxTokens":16,"cache":false}"#, framing: .lsp)
        #expect(byTokens["result"]?["tokens"]?.ints == r.greedy_ids)
        // both poolings, as an array input
        for (pooling, expected) in [("mean", r.embedding_mean_normalized), ("last", r.embedding_last_normalized)] {
            let embed = try daemon.call("embed", #"{"input":[\#(json(r.prompt)),"x"],"pooling":"\#(pooling)"}"#)
            let vectors = try #require(embed["result"]?["embeddings"]?.array)
            #expect(vectors.count == 2)
            #expect(cosine(vectors[0].floats, expected) >= 0.9999, "\(pooling)")
            let norm = vectors[0].floats.reduce(0) { $0 + Double($1) * Double($1) }
            #expect(abs(norm - 1) < 1e-4)
        }
        let raw = try daemon.call("embed", #"{"input":\#(json(r.prompt)),"normalize":false}"#)
        let norm = raw["result"]?["embeddings"]?.array?.first?.floats.reduce(0) { $0 + Double($1) * Double($1) } ?? 0
        #expect(abs(norm - 1) > 1e-3, "not normalized when asked not to")
    }

    @Test(arguments: [Framing.ndjson, Framing.lsp])
    func streamedDeltasConcatenateToTheFinalText(framing: Framing) throws {
        let daemon = try TestDaemon()
        let c = try daemon.client(framing)
        for (i, r) in ReferenceCase.all.enumerated() {
            try c.request("complete", id: i, params: #"{"prompt":\#(json(r.prompt)),"maxTokens":16,"stream":true}"#)
            let (reply, notifications) = try c.receiveReply(id: i)
            let result = try #require(reply["result"])
            #expect(!notifications.isEmpty)
            var text = "", tokens: [Int] = []
            for n in notifications {
                #expect(n["method"] == .string("complete/progress"))
                #expect(n["params"]?["id"]?.int == i)
                text += n["params"]?["text"]?.string ?? ""
                tokens += n["params"]?["tokens"]?.ints ?? []
            }
            #expect(text == result["text"]?.string)
            #expect(text == r.greedy_text)
            #expect(tokens == r.greedy_ids)
        }
    }

    @Test func stopStringsSingleLineSeedsAndCache() throws {
        let daemon = try TestDaemon()
        let r = ReferenceCase.all[0]   // greedy text: "担iraSO presume legitimately..."
        let stop = try daemon.call("complete", #"{"prompt":\#(json(r.prompt)),"maxTokens":16,"stop":[" pres"],"stream":true}"#)
        #expect(stop["result"]?["text"] == .string("担iraSO"))
        #expect(stop["result"]?["finishReason"] == .string("stop"))
        let code = ReferenceCase.all[1]   // greedy text starts with "\n\n\n    generational..."
        // its newlines all come before any text: singleLine keeps them and does not stop (the
        // cut after text is covered by CompletionTextTests); a "\n" stop string cuts at once
        let line = try daemon.call("complete", #"{"prompt":\#(json(code.prompt)),"maxTokens":16,"singleLine":true}"#)
        #expect(line["result"]?["text"] == .string(code.greedy_text))
        #expect(line["result"]?["finishReason"] == .string("length"))
        let newline = try daemon.call("complete", #"{"prompt":\#(json(code.prompt)),"maxTokens":16,"stop":["\n"]}"#)
        #expect(newline["result"]?["text"] == .string(""))
        #expect(newline["result"]?["finishReason"] == .string("stop"))

        let sampled = #"{"tokens":[1,2,3],"maxTokens":12,"temperature":1.0,"topK":50,"topP":0.9,"seed":1234,"cache":false}"#
        let a = try daemon.call("complete", sampled)["result"]?["tokens"]?.ints
        let b = try daemon.call("complete", sampled)["result"]?["tokens"]?.ints
        #expect(a == b && (a?.count ?? 0) == 12)

        // maxTokens 0 warms the cache; the same prompt then prefills nothing
        let warm = try daemon.call("complete", #"{"prompt":\#(json(code.prompt)),"maxTokens":0}"#)
        #expect(warm["result"]?["tokens"]?.ints == [])
        let hit = try daemon.call("complete", #"{"prompt":\#(json(code.prompt)),"maxTokens":4}"#)
        #expect(hit["result"]?["usage"]?["cachedTokens"]?.int == code.prompt_ids.count)
        #expect(hit["result"]?["tokens"]?.ints == Array(code.greedy_ids.prefix(4)))
        let longer = try daemon.call("complete", #"{"prompt":\#(json(code.prompt + "return")),"maxTokens":4}"#)
        #expect((longer["result"]?["usage"]?["cachedTokens"]?.int ?? 0) >= code.prompt_ids.count - 8)
        let status = try daemon.status()
        #expect((status["cache"]?["hits"]?.int ?? 0) >= 2)
    }

    @Test(arguments: [Framing.ndjson, Framing.lsp])
    func batchesPipeliningAndHalfClose(framing: Framing) throws {
        let daemon = try TestDaemon()
        let c = try daemon.client(framing)
        // a batch: two requests and a notification give one array of two replies
        try c.send(json: #"[{"jsonrpc":"2.0","id":1,"method":"tokenize","params":{"text":"hi"}},{"jsonrpc":"2.0","method":"initialized"},{"jsonrpc":"2.0","id":2,"method":"complete","params":{"tokens":[5],"maxTokens":2}}]"#)
        let batch = try #require(try c.receiveJSON().array)
        #expect(Set(batch.compactMap { $0["id"]?.int }) == [1, 2])
        // pipelined: a long completion, then status; status answers first (out of order)
        var wire: [UInt8] = []
        wire += framing.frame(Array(#"{"jsonrpc":"2.0","id":10,"method":"complete","params":{"tokens":[1,2],"maxTokens":400,"cache":false}}"#.utf8))
        wire += framing.frame(Array(#"{"jsonrpc":"2.0","id":11,"method":"status"}"#.utf8))
        wire += framing.frame(Array(#"{"jsonrpc":"2.0","id":12,"method":"tokenize","params":{"text":"a"}}"#.utf8))
        try c.sendRaw(wire)
        c.finishSending()   // half-close: all replies must still come
        var ids: [Int] = []
        while let message = try? c.receiveJSON() { ids.append(message["id"]?.int ?? -1) }
        #expect(Set(ids) == [10, 11, 12])
        #expect(ids.last == 10, "the long completion answers last: \(ids)")
    }
}
