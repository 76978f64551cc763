import Foundation
import MambaDaemon
import MambaRPC
import Testing

/// `clients/mambactl` against a real daemon: each command's output is compared with the
/// same request sent over the socket by the test itself.
@Suite(.enabled(if: ClientTool.enabled("python3"), "python3 is not on PATH"))
struct MambactlTests {
    static let script = ClientTool.clients.appendingPathComponent("mambactl").path

    /// Runs mambactl (through its `#!/usr/bin/env python3` line) on `daemon`'s socket.
    func mambactl(_ arguments: [String], _ daemon: TestDaemon?, stdin: String? = nil,
                  environment: [String: String] = [:]) throws -> ToolRun {
        _ = try ClientTool.require("python3")
        var env = environment
        if let daemon { env["MAMBAD_SOCKET"] = daemon.socket }
        return try runTool(Self.script, arguments, environment: env, stdin: stdin, timeout: 60)
    }

    @Test func completePrintsTheDaemonsTextStreamedOrNot() throws {
        let daemon = try TestDaemon()
        for (i, r) in ReferenceCase.all.enumerated() {
            let expected = try daemon.call("complete", #"{"prompt":\#(json(r.prompt)),"maxTokens":16}"#)["result"]
            let text = try #require(expected?["text"]?.string)
            #expect(text == r.greedy_text)
            // each case through another way in: argument (streamed), stdin, --no-stream, --json
            switch i % 4 {
            case 0:
                let run = try mambactl(["complete", "--max-tokens", "16", r.prompt], daemon)
                #expect(run.status == 0 && run.stdout == text + "\n", "\(run)")
            case 1:
                let run = try mambactl(["complete", "-m", "16", "-n", "-"], daemon, stdin: r.prompt)
                #expect(run.status == 0 && run.stdout == text, "\(run)")
            case 2:
                let run = try mambactl(["complete", "-m", "16", "--no-stream", r.prompt], daemon)
                #expect(run.status == 0 && run.stdout == text + "\n", "\(run)")
            default:
                let run = try mambactl(["complete", "-m", "16", "--json", r.prompt], daemon)
                let result = try JSONValue.parse(run.stdout)
                #expect(run.status == 0, "\(run)")
                for key in ["text", "tokens", "finishReason"] { #expect(result[key] == expected?[key], "\(key): \(run)") }
                #expect(result["usage"]?["promptTokens"] == expected?["usage"]?["promptTokens"])
            }
        }
    }

    @Test func completeOptionsAreTheProtocolsParameters() throws {
        let daemon = try TestDaemon()
        let prompt = ReferenceCase.all[0].prompt
        let full = try #require(try daemon.call("complete", #"{"prompt":\#(json(prompt)),"maxTokens":16}"#)["result"]?["text"]?.string)
        // a stop string from the middle of the greedy text
        let words = full.split(separator: " ")
        let stop = " " + String(words[words.count / 2])
        let cases: [([String], String)] = [
            (["--stop", stop], #""stop":[\#(json(stop))]"#),
            (["--temperature", "0.9", "--seed", "7"], #""temperature":0.9,"seed":7"#),
            (["--top-k", "5", "--top-p", "0.5", "-t", "1.5", "--seed", "3"], #""topK":5,"topP":0.5,"temperature":1.5,"seed":3"#),
            (["--single-line"], #""singleLine":true"#),
        ]
        for (arguments, params) in cases {
            let expected = try #require(try daemon.call("complete", #"{"prompt":\#(json(prompt)),"maxTokens":16,\#(params)}"#)["result"])
            let run = try mambactl(["complete", "-m", "16", "--json"] + arguments + [prompt], daemon)
            #expect(run.status == 0, "\(run)")
            let result = try JSONValue.parse(run.stdout)
            #expect(result["text"] == expected["text"] && result["tokens"] == expected["tokens"], "\(arguments): \(run)")
            #expect(result["finishReason"] == expected["finishReason"])
        }
        let stopped = try mambactl(["complete", "-m", "16", "--stop", stop, prompt], daemon)
        #expect(stopped.stdout == String(full[..<full.range(of: stop)!.lowerBound]) + "\n", "\(stopped)")
    }

    @Test func tokenizeDetokenizeEmbedStatusAndInfo() throws {
        let daemon = try TestDaemon()
        let text = ReferenceCase.all[3].prompt   // accents and an emoji
        let tokenized = try #require(try daemon.call("tokenize", #"{"text":\#(json(text)),"pieces":true}"#)["result"])
        let ids = tokenized["tokens"]?.ints ?? []
        #expect(ids == ReferenceCase.all[3].prompt_ids)

        let plain = try mambactl(["tokenize", text], daemon)
        #expect(plain.status == 0 && plain.stdout == ids.map(String.init).joined(separator: " ") + "\n", "\(plain)")
        let pieces = try mambactl(["tokenize", "--pieces", text], daemon)
        let lines = pieces.stdout.split(separator: "\n").map(String.init)
        let expectedPieces = tokenized["pieces"]?.array?.compactMap(\.string) ?? []
        #expect(lines.count == ids.count, "\(pieces)")
        for (line, (id, piece)) in zip(lines, zip(ids, expectedPieces)) {
            let fields = line.split(separator: "\t", maxSplits: 1).map(String.init)
            #expect(fields.count == 2 && fields[0] == String(id), "\(line)")
            #expect(try JSONValue.parse(fields.last ?? "").string == piece, "\(line)")
        }
        let fromStdin = try mambactl(["--json", "tokenize", "--pieces", "-"], daemon, stdin: text)
        #expect(try JSONValue.parse(fromStdin.stdout) == tokenized, "\(fromStdin)")

        let detok = try mambactl(["detokenize"] + ids.map(String.init), daemon)
        #expect(detok.status == 0 && detok.stdout == text + "\n", "\(detok)")
        let detokStdin = try mambactl(["detokenize", "-n", "-"], daemon, stdin: ids.map(String.init).joined(separator: ", "))
        #expect(detokStdin.stdout == text, "\(detokStdin)")

        let embedded = try #require(try daemon.call("embed", #"{"input":["def f(","class A:"],"pooling":"last"}"#)["result"])
        let embed = try mambactl(["embed", "--pooling", "last", "def f(", "class A:"], daemon)
        #expect(embed.status == 0, "\(embed)")
        let vectors = embed.stdout.split(separator: "\n").map { $0.split(separator: " ").compactMap { Float(String($0)) } }
        #expect(vectors == (embedded["embeddings"]?.array ?? []).map(\.floats))
        #expect(vectors.first?.count == 32)
        let embedJSON = try mambactl(["embed", "--json", "--pooling", "last", "def f(", "class A:"], daemon)
        #expect(try JSONValue.parse(embedJSON.stdout)["embeddings"] == embedded["embeddings"])

        let status = try mambactl(["status"], daemon)
        #expect(status.status == 0 && status.stdout.contains("state:    ready") && status.stdout.contains("tiny-falcon-vocab-nf4"), "\(status)")
        let statusJSON = try JSONValue.parse(try mambactl(["status", "--json"], daemon).stdout)
        let direct = try daemon.status()
        #expect(statusJSON["model"] == direct["model"] && statusJSON["state"] == .string("ready"))
        #expect(statusJSON["requests"]?["completed"] == direct["requests"]?["completed"])
        let info = try JSONValue.parse(try mambactl(["info"], daemon).stdout)
        #expect(info == (try daemon.call("model/info")["result"]))
    }

    @Test func streamsAsTextArrivesAndCtrlCCancelsTheRequest() throws {
        _ = try ClientTool.require("python3")
        let daemon = try TestDaemon()
        var out: [Int32] = [0, 0], err: [Int32] = [0, 0]
        #expect(pipe(&out) == 0 && pipe(&err) == 0)
        let child = try ChildProcess(Self.script, ["complete", "--max-tokens", "8000", "x"],
                                     environment: ChildProcess.environment(["MAMBAD_SOCKET": daemon.socket]),
                                     stdin: open("/dev/null", O_RDONLY), stdout: out[1], stderr: err[1])
        close(out[1])
        close(err[1])
        let stdout = FileHandle(fileDescriptor: out[0], closeOnDealloc: true)
        let stderr = FileHandle(fileDescriptor: err[0], closeOnDealloc: true)
        // text is on stdout while the daemon is still generating
        let first = stdout.availableData
        #expect(!first.isEmpty)
        #expect(try daemon.status()["requests"]?["active"]?.int == 1)
        kill(child.pid, SIGINT)
        let rest = stdout.readDataToEndOfFile()
        let log = String(decoding: stderr.readDataToEndOfFile(), as: UTF8.self)
        #expect(child.wait(timeout: 30) == 130, "\(log)")
        #expect(log == "mambactl: interrupted\n")
        #expect(String(decoding: first + rest, as: UTF8.self).hasSuffix("\n"))
        #expect((first + rest).count < 8000 * 4)
        let status = try daemon.waitForStatus { $0["requests"]?["active"]?.int == 0 }
        #expect(status["requests"]?["cancelled"]?.int == 1)
    }

    @Test func anAbsentDaemonAndDaemonErrorsGiveMessagesAndDistinctExitCodes() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("mambactl-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }

        let missing = try mambactl(["--socket", dir.path + "/none.sock", "status"], nil)
        #expect(missing.status == 3 && missing.stderr == "mambactl: daemon not running: no socket at \(dir.path)/none.sock\n", "\(missing)")
        // a socket file nobody listens on (a daemon that crashed)
        let stale = dir.appendingPathComponent("stale.sock").path
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(stale.utf8) + [0]) }
        let bound = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
        #expect(bound == 0)
        let refused = try mambactl(["status"], nil, environment: ["MAMBAD_SOCKET": stale])
        #expect(refused.status == 3 && refused.stderr.contains("connection refused at \(stale)"), "\(refused)")
        // no flag, no MAMBAD_SOCKET, no socket in any default place
        let none = try mambactl(["status"], nil, environment: ["MAMBAD_SOCKET": "", "XDG_RUNTIME_DIR": dir.path + "/run"])
        if !FileManager.default.fileExists(atPath: "/tmp/mambad.sock") && !FileManager.default.fileExists(atPath: "/run/mambad/mambad.sock") {
            #expect(none.status == 3 && none.stderr.contains("no socket at \(dir.path)/run/mambad.sock, /tmp/mambad.sock, /run/mambad/mambad.sock"), "\(none)")
        }

        let usage = try mambactl(["complete"], nil)
        #expect(usage.status == 2 && usage.stderr.contains("usage: mambactl complete"), "\(usage)")
        let help = try mambactl(["--help"], nil)
        #expect(help.status == 0 && help.stdout.contains("exit codes:") && help.stdout.contains("MAMBAD_SOCKET"), "\(help)")

        // small limits, so that each error is easy to reach
        let daemon = try TestDaemon(["--max-active", "1", "--max-queue", "1", "--max-prompt-tokens", "8"])
        // the default socket under $XDG_RUNTIME_DIR, as the daemon's own default
        try FileManager.default.createDirectory(atPath: dir.path + "/run", withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: dir.path + "/run/mambad.sock", withDestinationPath: daemon.socket)
        let found = try mambactl(["status"], nil, environment: ["MAMBAD_SOCKET": "", "XDG_RUNTIME_DIR": dir.path + "/run"])
        #expect(found.status == 0 && found.stdout.contains("on \(dir.path)/run/mambad.sock"), "\(found)")

        let badParams = try mambactl(["detokenize", "99999999"], daemon)
        #expect(badParams.status == 4 && badParams.stderr.hasPrefix("mambactl: daemon error -32602:") && badParams.stderr.contains("field: tokens[0]"), "\(badParams)")
        let badIds = try mambactl(["detokenize", "12", "x"], daemon)
        #expect(badIds.status == 2 && badIds.stderr.contains("token ids must be integers"), "\(badIds)")
        let tooLarge = try mambactl(["complete", String(repeating: "word ", count: 20)], daemon)
        #expect(tooLarge.status == 7 && tooLarge.stderr.hasPrefix("mambactl: daemon error -32002:") && tooLarge.stderr.contains("limit: 8"), "\(tooLarge)")
        // one request running, one queued: the next is refused with -32001
        let busy = try daemon.client()
        try busy.request("complete", id: 1, params: #"{"tokens":[1,2,3],"maxTokens":8000,"stream":true,"cache":false}"#)
        _ = try busy.receiveJSON()
        try busy.request("complete", id: 2, params: #"{"tokens":[1],"maxTokens":1}"#)
        _ = try daemon.waitForStatus { $0["requests"]?["queued"]?.int == 1 }
        let overloaded = try mambactl(["complete", "x"], daemon)
        #expect(overloaded.status == 6 && overloaded.stderr.hasPrefix("mambactl: daemon error -32001:") && overloaded.stderr.contains("retryAfterMs"), "\(overloaded)")
        try busy.notify("$/cancelRequest", params: #"{"id":1}"#)
        #expect(try busy.receiveReply(id: 1).reply.errorCode == -32800)
    }
}
