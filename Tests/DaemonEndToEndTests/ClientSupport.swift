import Foundation
import MambaDaemon
import MambaRPC
import Testing

/// Runs the clients under `clients/` (shell, Neovim, Emacs, VS Code's protocol module)
/// against a real daemon. A suite runs when its tool is on PATH; under
/// `MAMBAD_REQUIRE_CLIENT_TOOLS=1` (set by `.ci/run`) a missing tool fails it instead.
enum ClientTool {
    static let root = TestDaemon.fixtures.deletingLastPathComponent().deletingLastPathComponent()
    static let clients = root.appendingPathComponent("clients")
    static let required = ProcessInfo.processInfo.environment["MAMBAD_REQUIRE_CLIENT_TOOLS"] == "1"

    /// The executable's path when `name` is on PATH.
    static func find(_ name: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        for dir in path.split(separator: ":") {
            let candidate = "\(dir)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }

    /// Whether a suite needing `name` runs at all (it then fails when the tool is missing).
    static func enabled(_ name: String) -> Bool { required || find(name) != nil }

    /// The tool, or a test failure naming it (only reached when the suite is required).
    static func require(_ name: String) throws -> String {
        try #require(find(name), "\(name) is not on PATH and MAMBAD_REQUIRE_CLIENT_TOOLS=1 (apt-get install it)")
    }
}

/// What a finished client process printed.
struct ToolRun: CustomStringConvertible {
    let status: Int32
    let stdout: String
    let stderr: String
    let seconds: Double
    var description: String { "exit \(status) after \(String(format: "%.1f", seconds)) s\n--- stdout\n\(stdout)\n--- stderr\n\(stderr)" }
}

/// A child process started with posix_spawn: unlike Foundation's `Process`, whose
/// children inherit a mask blocking almost every signal (so Ctrl-C would never reach
/// them), it gets an empty mask and default handlers, like a child of a shell. It leads
/// a process group of its own, so a timeout kills whatever it started too.
final class ChildProcess {
    let pid: pid_t
    private(set) var exitStatus: Int32?

    init(_ executable: String, _ arguments: [String], environment: [String: String],
         stdin: Int32, stdout: Int32, stderr: Int32) throws {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        for (fd, target) in [(stdin, Int32(0)), (stdout, 1), (stderr, 2)] { posix_spawn_file_actions_adddup2(&actions, fd, target) }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var none = sigset_t(), all = sigset_t()
        sigemptyset(&none)
        sigfillset(&all)
        sigdelset(&all, SIGKILL)
        sigdelset(&all, SIGSTOP)
        posix_spawnattr_setsigmask(&attributes, &none)
        posix_spawnattr_setsigdefault(&attributes, &all)
        posix_spawnattr_setpgroup(&attributes, 0)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP))
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { (argv + envp).forEach { free($0) } }
        var pid = pid_t()
        let rc = posix_spawn(&pid, executable, &actions, &attributes, argv, envp)
        guard rc == 0 else { throw SocketClient.Failure(description: "spawn \(executable): \(String(cString: strerror(rc)))") }
        self.pid = pid
    }

    deinit { if exitStatus == nil { kill(-pid, SIGKILL); _ = wait(timeout: 10) } }

    /// The exit status (128 + the signal when killed by one), or nil while still running after `timeout`.
    func wait(timeout: Double) -> Int32? {
        let deadline = Date().addingTimeInterval(timeout)
        while exitStatus == nil {
            var status: Int32 = 0
            let r = waitpid(pid, &status, WNOHANG)
            if r == pid {
                exitStatus = status & 0x7f == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
            } else if r < 0 && errno != EINTR {
                exitStatus = -1
            } else if Date() >= deadline {
                return nil
            } else {
                usleep(5_000)
            }
        }
        return exitStatus
    }

    static func environment(_ extra: [String: String], removing: [String] = []) -> [String: String] {
        var environment = ProcessInfo.processInfo.environment
        for key in removing { environment.removeValue(forKey: key) }
        environment.merge(extra) { $1 }
        return environment
    }
}

/// Runs `executable` to its end (its process group killed after `timeout` seconds), output
/// captured in files so that neither pipe can fill up and block it.
func runTool(_ executable: String, _ arguments: [String], environment extra: [String: String] = [:],
             stdin: String? = nil, timeout: Double = 120) throws -> ToolRun {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("mambad-client-\(UUID().uuidString.prefix(8))")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: dir) }
    let out = dir.appendingPathComponent("out").path, err = dir.appendingPathComponent("err").path
    let input = dir.appendingPathComponent("in").path
    try Data((stdin ?? "").utf8).write(to: URL(fileURLWithPath: input))
    let fds = [open(input, O_RDONLY), open(out, O_WRONLY | O_CREAT | O_TRUNC, 0o600), open(err, O_WRONLY | O_CREAT | O_TRUNC, 0o600)]
    defer { fds.forEach { close($0) } }
    let start = Date()
    let child = try ChildProcess(executable, arguments, environment: ChildProcess.environment(extra),
                                 stdin: fds[0], stdout: fds[1], stderr: fds[2])
    var status = child.wait(timeout: timeout)
    if status == nil {
        kill(-child.pid, SIGKILL)
        status = child.wait(timeout: 10)
    }
    let seconds = Date().timeIntervalSince(start)
    let stdout = String(decoding: FileManager.default.contents(atPath: out) ?? Data(), as: UTF8.self)
    var stderr = String(decoding: FileManager.default.contents(atPath: err) ?? Data(), as: UTF8.self)
    if seconds >= timeout { stderr += "\n(killed after \(timeout) s)" }
    return ToolRun(status: status ?? -1, stdout: stdout, stderr: stderr, seconds: seconds)
}

/// Runs a client's own test program (Lua, ERT, node) with the daemon's socket in
/// `MAMBAD_SOCKET` (and the binary and model, for tests that start a daemon of their own);
/// fails with its whole output on a nonzero exit.
func runClientTests(_ executable: String, _ arguments: [String], daemon: TestDaemon, timeout: Double = 240,
                    sourceLocation: SourceLocation = #_sourceLocation) throws -> ToolRun {
    let run = try runTool(executable, arguments, environment: [
        "MAMBAD_SOCKET": daemon.socket,
        "MAMBAD_BIN": TestDaemon.executable.path,
        "MAMBAD_MODEL": TestDaemon.model,
        "MAMBAD_THREADS": "1",
        "HOME": daemon.directory.path,   // no user configuration of any editor
    ], timeout: timeout)
    #expect(run.status == 0, "\(run)\n--- daemon log\n\(daemon.stderr)", sourceLocation: sourceLocation)
    return run
}

extension JSONValue {
    /// Parses JSON text (a client's `--json` output).
    static func parse(_ text: String) throws -> JSONValue {
        try JSONDecoder().decode(JSONValue.self, from: Data(text.utf8))
    }
}
