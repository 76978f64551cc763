import Foundation
import MambaDaemon
import MambaRPC
import Testing

/// The socket file, a second daemon, config files and graceful shutdown.
@Suite struct LifecycleEndToEndTests {
    @Test func socketModeAndSecondDaemonRefused() throws {
        let daemon = try TestDaemon()
        var info = stat()
        #expect(stat(daemon.socket, &info) == 0)
        #expect(info.st_mode & 0o777 == 0o660)
        let second = try TestDaemon(socket: daemon.socket, until: nil)
        second.process.waitUntilExit()
        #expect(second.process.terminationStatus != 0)
        #expect(second.stderr.contains("already answering"))
        #expect(try daemon.status()["state"] == .string("ready"), "the first one is unharmed")
    }

    @Test func aModelThatDoesNotLoadStopsTheDaemon() throws {
        let missing = "/tmp/mambad-e2e-no-model-\(UUID().uuidString.prefix(8))"
        let daemon = try TestDaemon(model: missing, until: nil)
        daemon.process.waitUntilExit()
        #expect(daemon.process.terminationStatus == 1)
        #expect(daemon.stderr.contains(missing + "/config.json"), "\(daemon.stderr)")
        #expect(!FileManager.default.fileExists(atPath: daemon.socket))
    }

    @Test func staleSocketFileIsReplaced() throws {
        let path = "/tmp/mambad-e2e-stale-\(UUID().uuidString.prefix(8)).sock"
        defer { unlink(path) }
        // a socket file nobody listens on, as a killed daemon leaves behind
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        let bound = bindUnixSocket(fd, to: path)
        close(fd)
        #expect(bound == 0 && FileManager.default.fileExists(atPath: path))
        let daemon = try TestDaemon(socket: path)
        #expect(try daemon.status()["state"] == .string("ready"))
    }

    @Test func configFileSettingsAndFlagsWin() throws {
        let dir = URL(fileURLWithPath: "/tmp/mambad-e2e-conf-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let conf = dir.appendingPathComponent("mambad.conf")
        try """
            # test settings
            max-prompt-tokens = 3
            max-batch = 2
            socket-mode = 0600
            """.write(to: conf, atomically: true, encoding: .utf8)
        let daemon = try TestDaemon(["--config", conf.path, "--max-batch", "3"])
        #expect(try daemon.call("complete", #"{"tokens":[1,2,3,4]}"#)["error"]?["data"]?["limit"]?.int == 3)
        let c = try daemon.client()
        try c.send(json: "[" + Array(repeating: #"{"jsonrpc":"2.0","id":1,"method":"status"}"#, count: 3).joined(separator: ",") + "]")
        #expect(try c.receiveJSON().array?.count == 3, "the flag's 3 beats the file's 2")
        var info = stat()
        #expect(stat(daemon.socket, &info) == 0 && info.st_mode & 0o777 == 0o600)
        let bad = dir.appendingPathComponent("bad.conf")
        try "colour = blue\n".write(to: bad, atomically: true, encoding: .utf8)
        let refused = try TestDaemon(["--config", bad.path], until: nil)
        refused.process.waitUntilExit()
        #expect(refused.process.terminationStatus != 0)
        #expect(refused.stderr.contains("colour"))
    }

    @Test func sigtermFinishesInFlightWorkThenRemovesTheSocket() throws {
        let daemon = try TestDaemon(["--shutdown-grace-ms", "60000"])
        let c = try daemon.client()
        try c.request("complete", id: 1, params: #"{"tokens":[1,2,3],"maxTokens":200,"stream":true,"cache":false}"#)
        _ = try c.receiveJSON()
        kill(daemon.process.processIdentifier, SIGTERM)
        let (reply, _) = try c.receiveReply(id: 1)
        #expect(reply["result"]?["usage"]?["completionTokens"]?.int == 200, "finished within the grace period")
        daemon.process.waitUntilExit()
        #expect(daemon.process.terminationStatus == 0)
        #expect(!FileManager.default.fileExists(atPath: daemon.socket))
        #expect(daemon.stderr.contains("draining"))
    }

    @Test func sigintCancelsWorkPastTheGracePeriod() throws {
        let daemon = try TestDaemon(["--shutdown-grace-ms", "200"])
        let c = try daemon.client(.lsp)
        try c.request("complete", id: 1, params: #"{"tokens":[1,2,3],"maxTokens":8000,"stream":true,"cache":false}"#)
        _ = try c.receiveJSON()
        kill(daemon.process.processIdentifier, SIGINT)
        let (reply, _) = try c.receiveReply(id: 1)
        #expect(reply.errorCode == -32800)
        daemon.process.waitUntilExit()
        #expect(daemon.process.terminationStatus == 0)
        #expect(!FileManager.default.fileExists(atPath: daemon.socket))
    }
}
