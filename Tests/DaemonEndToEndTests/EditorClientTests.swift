import Foundation
import Testing

/// The editor clients' own test programs (under `clients/*/test/`), each run against a real
/// daemon started here. The daemon admits one request at a time (`--max-active 1`), so a
/// test can keep an editor's request queued behind one of its own and type over it.
@Suite struct EditorClientTests {
    static let daemonArguments = ["--max-active", "1"]

    @Test(.enabled(if: ClientTool.enabled("nvim"), "nvim is not on PATH"))
    func neovimGhostTextFromARealDaemon() throws {
        let nvim = try ClientTool.require("nvim")
        let daemon = try TestDaemon(Self.daemonArguments)
        let dir = ClientTool.clients.appendingPathComponent("nvim").path
        let run = try runClientTests(nvim, ["--headless", "--clean", "-n", "-i", "NONE", "--cmd", "set rtp^=\(dir)",
                                            "-c", "luafile \(dir)/test/mambad_test.lua"], daemon: daemon)
        #expect(run.stdout.contains(" cases passed") && !run.stdout.contains("not ok"), "\(run)")
    }

    @Test(.enabled(if: ClientTool.enabled("emacs"), "emacs is not on PATH"))
    func emacsOverlaySuggestionsFromARealDaemon() throws {
        let emacs = try ClientTool.require("emacs")
        let daemon = try TestDaemon(Self.daemonArguments)
        let dir = ClientTool.clients.appendingPathComponent("emacs").path
        let run = try runClientTests(emacs, ["-Q", "--batch", "-L", dir, "-l", "\(dir)/test/mambad-test.el",
                                             "-f", "ert-run-tests-batch-and-exit"], daemon: daemon)
        #expect(run.stderr.contains(" results as expected, 0 unexpected"), "\(run)")
    }

    /// VS Code cannot be installed here: its protocol module runs under `node --test`, and
    /// the extension's provider with a stand-in for the `vscode` module.
    @Test(.enabled(if: ClientTool.enabled("node"), "node is not on PATH"))
    func vscodeClientModuleAndProviderFromARealDaemon() throws {
        let node = try ClientTool.require("node")
        let daemon = try TestDaemon(Self.daemonArguments)
        // one file at a time: both count the daemon's queued and cancelled requests
        for file in ["client.test.js", "extension.test.js"] {
            let run = try runClientTests(node, ["--test", ClientTool.clients.appendingPathComponent("vscode/test/\(file)").path],
                                         daemon: daemon)
            #expect(run.stdout.contains("# fail 0") && !run.stdout.contains("not ok"), "\(run)")
        }
    }
}
