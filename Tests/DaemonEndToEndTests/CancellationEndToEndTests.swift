import Foundation
import MambaDaemon
import MambaRPC
import Testing

/// Cancel, supersede, deadline and disconnect each stop the work, as `status` shows.
@Suite struct CancellationEndToEndTests {
    static let long = #""tokens":[1,2,3],"maxTokens":8000,"stream":true,"cache":false"#

    @Test(arguments: [Framing.ndjson, Framing.lsp])
    func cancelRequestStopsTheWork(framing: Framing) throws {
        let daemon = try TestDaemon()
        let c = try daemon.client(framing)
        try c.request("complete", id: 1, params: "{\(Self.long)}")
        _ = try c.receiveJSON()   // first progress: it runs
        try c.notify("$/cancelRequest", params: #"{"id":1}"#)
        let (reply, _) = try c.receiveReply(id: 1)
        #expect(reply.errorCode == -32800)
        let produced = reply["error"]?["data"]?["tokens"]?.ints ?? []
        #expect(!produced.isEmpty && produced.count < 8000)
        #expect(reply["error"]?["data"]?["text"]?.string != nil)
        let status = try daemon.status()
        #expect(status["requests"]?["cancelled"]?.int == 1)
        #expect(status["requests"]?["active"]?.int == 0)
    }

    @Test func aNewRequestOfTheSameSessionSupersedesTheOld() throws {
        let daemon = try TestDaemon()
        let editor = try daemon.client()
        try editor.request("complete", id: 1, params: #"{\#(Self.long),"session":"file:///a.swift"}"#)
        _ = try editor.receiveJSON()
        // from another connection, as an editor reconnecting would
        let again = try daemon.client()
        try again.request("complete", id: 2, params: #"{"tokens":[1,2,3,4],"maxTokens":3,"session":"file:///a.swift"}"#)
        let (old, _) = try editor.receiveReply(id: 1)
        #expect(old.errorCode == -32800)
        #expect(old["error"]?["message"]?.string?.contains("superseded") == true)
        #expect(try again.receiveReply(id: 2).reply["result"]?["tokens"]?.ints.count == 3)
        // another session is not touched
        try editor.request("complete", id: 3, params: #"{"tokens":[1],"maxTokens":2,"session":"file:///b.swift"}"#)
        #expect(try editor.receiveReply(id: 3).reply["result"] != nil)
        let status = try daemon.status()
        #expect(status["requests"]?["cancelled"]?.int == 1)
        #expect(status["requests"]?["active"]?.int == 0)
    }

    @Test func deadlineEndsTheCompletionWithWhatItHas() throws {
        let daemon = try TestDaemon()
        let start = Date()
        let reply = try daemon.call("complete", #"{"tokens":[1,2,3],"maxTokens":8000,"deadlineMs":1000,"cache":false}"#)
        let elapsed = Date().timeIntervalSince(start)
        let result = try #require(reply["result"])
        #expect(result["finishReason"] == .string("deadline"))
        let n = result["usage"]?["completionTokens"]?.int ?? -1
        #expect(n > 0 && n < 8000)
        #expect(elapsed < 15)
        #expect(try daemon.status()["requests"]?["active"]?.int == 0)
    }

    @Test func aClientThatDisconnectsStopsItsWork() throws {
        let daemon = try TestDaemon()
        do {
            let c = try daemon.client()
            try c.request("complete", id: 1, params: "{\(Self.long)}")
            _ = try c.receiveJSON()
        }   // closed here
        let status = try daemon.waitForStatus { $0["requests"]?["cancelled"]?.int == 1 && $0["requests"]?["active"]?.int == 0 }
        let generated = status["engine"]?["generatedTokens"]?.int ?? 0
        #expect(generated < 8000)
        // no more tokens are produced for it
        let later = try daemon.call("status")
        #expect(later["result"]?["engine"]?["generatedTokens"]?.int == generated)
        #expect(daemon.stderr.contains("client disconnected"))
    }
}

/// Many clients at once: continuous batching must give each its own correct answer.
@Suite struct ConcurrencyEndToEndTests {
    @Test func thirtyTwoConcurrentClientsAllGetCorrectAnswers() throws {
        let daemon = try TestDaemon()
        let failures = Mutex<[String]>([])
        // one thread per client (concurrentPerform would run only as many as there are cores)
        let group = DispatchGroup()
        for i in 0..<32 {
            group.enter()
            Thread { defer { group.leave() }
            let r = ReferenceCase.all[i % ReferenceCase.all.count]
            do {
                let c = try daemon.client(i % 2 == 0 ? .ndjson : .lsp)
                let stream = i % 3 == 0
                try c.request("complete", id: i, params: #"{"prompt":\#(json(r.prompt)),"maxTokens":16,"stream":\#(stream)}"#)
                let (reply, notes) = try c.receiveReply(id: i)
                let text = reply["result"]?["text"]?.string
                if text != r.greedy_text { failures.withLock { $0.append("client \(i): \(reply)") } }
                if stream, notes.compactMap({ $0["params"]?["text"]?.string }).joined() != r.greedy_text {
                    failures.withLock { $0.append("client \(i): stream") }
                }
            } catch {
                failures.withLock { $0.append("client \(i): \(error)") }
            }
            }.start()
        }
        #expect(group.wait(timeout: .now() + 120) == .success)
        #expect(failures.withLock { $0 } == [])
        let status = try daemon.status()
        #expect(status["requests"]?["completed"]?.int == 32)
        let engine = try #require(status["engine"])
        // decode passes were shared between sequences
        #expect((engine["batchedSequences"]?.int ?? 0) > (engine["decodeSteps"]?.int ?? 0) * 2)
    }
}

import Synchronization
