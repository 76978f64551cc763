import Foundation
import MambaDaemon
import MambaRPC
import Synchronization
import Testing

/// `mambad serve` as systemd starts it, without systemd: `systemd-socket-activate`
/// listens on a path and execs the daemon with the socket as fd 3 (LISTEN_FDS), and the
/// test plays the service manager's notification socket (NOTIFY_SOCKET, WATCHDOG_USEC,
/// WATCHDOG_PID). The shell wrapper sets WATCHDOG_PID to its own pid, which stays the
/// daemon's through both execs, as under systemd.
final class ActivatedDaemon: @unchecked Sendable {
    static let activator = "/usr/bin/systemd-socket-activate"
    static var available: Bool { FileManager.default.isExecutableFile(atPath: activator) }

    let socket = "/tmp/mambad-e2e-activated-\(UUID().uuidString.prefix(8)).sock"
    let notifications: NotifySocket
    let process = Process()
    private let log = Mutex("")

    /// `watchdogMicroseconds`: WATCHDOG_USEC; `watchdogPid`: WATCHDOG_PID as the shell
    /// writes it (`$$` is the daemon's own pid); `listen`: extra activator options.
    init(_ arguments: [String] = [], watchdogMicroseconds: Int? = nil, watchdogPid: String = "$$",
         listen: [String] = []) throws {
        notifications = try NotifySocket()
        var passed = ["-E", "NOTIFY_SOCKET=\(notifications.path)", "-E", "MAMBAD_THREADS=1"]
        if let watchdogMicroseconds { passed += ["-E", "WATCHDOG_USEC=\(watchdogMicroseconds)", "-E", "WATCHDOG_PID"] }
        if ProcessInfo.processInfo.environment["OPENBLAS_CORETYPE"] != nil { passed += ["-E", "OPENBLAS_CORETYPE"] }
        let command = [Self.activator] + passed + listen + ["-l", socket, TestDaemon.executable.path, "serve",
                       "--model", TestDaemon.model, "--socket", "/nonexistent/unused.sock", "--precision", "exact"] + arguments
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", "WATCHDOG_PID=\(watchdogPid); export WATCHDOG_PID; exec \"$@\"", "sh"] + command
        var environment = ProcessInfo.processInfo.environment
        environment.removeValue(forKey: "JOURNAL_STREAM")
        process.environment = environment
        let errors = Pipe()
        process.standardError = errors
        errors.fileHandleForReading.readabilityHandler = { [weak self] h in
            let data = h.availableData
            if data.isEmpty { h.readabilityHandler = nil; return }
            self?.log.withLock { $0 += String(decoding: data, as: UTF8.self) }
        }
        try process.run()
        // the activator binds before it execs the daemon: wait for its socket file
        let deadline = Date().addingTimeInterval(20)
        while !FileManager.default.fileExists(atPath: socket), Date() < deadline, process.isRunning { usleep(10_000) }
    }

    deinit {
        if process.isRunning { kill(process.processIdentifier, SIGKILL); process.waitUntilExit() }
        unlink(socket)
    }

    var stderr: String { log.withLock { $0 } }

    func client(timeout: Double = 60) throws -> SocketClient { try SocketClient(path: socket, timeoutSeconds: timeout) }

    /// SIGTERM, then the exit status (nil if it does not exit in time).
    func terminate(timeout: Double = 30) -> Int32? {
        kill(process.processIdentifier, SIGTERM)
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning, Date() < deadline { usleep(10_000) }
        return process.isRunning ? nil : process.terminationStatus
    }
}

@Suite(.enabled(if: ActivatedDaemon.available || SystemdTestPolicy.required, "needs systemd-socket-activate (apt-get install systemd)"))
struct SocketActivationEndToEndTests {
    static let prompt = ReferenceCase.all[0]

    func completeReference(_ c: SocketClient, id: Int = 1) throws -> JSONValue {
        try c.request("complete", id: id, params: #"{"tokens":\#(Self.prompt.prompt_ids),"maxTokens":16}"#)
        return try c.receiveReply(id: id).reply
    }

    /// The whole notify life: STATUS= while loading (and EXTEND_TIMEOUT_USEC, the load
    /// being slow), READY=1 only once a request can be answered, WATCHDOG=1 pings, a
    /// request that came while loading waits instead of failing, STOPPING=1 and exit 0
    /// on SIGTERM, and the socket file left to its owner.
    @Test func notifiesLoadingReadyWatchdogAndStopping() throws {
        #expect(ActivatedDaemon.available, "systemd-socket-activate is missing")
        let daemon = try ActivatedDaemon(["--debug-load-delay-ms", "2500"], watchdogMicroseconds: 400_000)
        // this connection starts the daemon; its request waits in the backlog for the model
        let early = try daemon.client()
        try early.request("complete", id: 7, params: #"{"tokens":\#(Self.prompt.prompt_ids),"maxTokens":16}"#)
        let ready = try daemon.notifications.wait(for: "READY=1")
        let afterReady = try completeReference(daemon.client())
        #expect(afterReady["result"]?["tokens"]?.ints == Self.prompt.greedy_ids, "a complete right after READY=1 succeeds")
        let (earlyReply, _) = try early.receiveReply(id: 7)
        #expect(earlyReply["result"]?["tokens"]?.ints == Self.prompt.greedy_ids, "the early request was answered, not -32003")

        let beforeReady = daemon.notifications.messages.filter { $0.received < ready.received }
        let phases = beforeReady.compactMap { $0.value("STATUS") }
        #expect(phases.contains { $0.hasPrefix("mapping the model") }, "\(phases)")
        #expect(phases.contains { $0.hasPrefix("warming up") }, "\(phases)")
        #expect(beforeReady.contains { $0.value("EXTEND_TIMEOUT_USEC") == "10000000" }, "a slow load extends the start timeout")
        #expect(ready.value("STATUS") == "serving tiny-falcon-vocab-nf4")
        #expect(!beforeReady.contains { $0.has("WATCHDOG=1") }, "no pings before READY=1")

        // pings every 200 ms (half of WATCHDOG_USEC), each after a scheduler round trip
        try daemon.notifications.wait(timeout: 10, "three watchdog pings") { _ in
            daemon.notifications.messages.filter { $0.has("WATCHDOG=1") }.count >= 3
        }
        let pings = daemon.notifications.messages.filter { $0.has("WATCHDOG=1") }.map(\.received)
        let gaps = zip(pings.dropFirst(), pings).map { ($0 - $1).milliseconds }.sorted()
        #expect((150...350).contains(gaps[gaps.count / 2]), "median gap near 200 ms: \(gaps)")

        #expect(daemon.terminate() == 0, "\(daemon.stderr)")
        let stopping = try daemon.notifications.wait(for: "STOPPING=1", timeout: 1)
        #expect(stopping.value("STATUS") == "draining (SIGTERM)")
        #expect(daemon.stderr.contains("systemd fd 3"), "\(daemon.stderr)")
        #expect(FileManager.default.fileExists(atPath: daemon.socket), "the socket file belongs to systemd")
    }

    /// A request on the inherited socket is answered, and a watchdog meant for another
    /// process (WATCHDOG_PID not ours) sends no pings.
    @Test func servesOnTheInheritedSocketAndHonoursWatchdogPid() throws {
        let daemon = try ActivatedDaemon(watchdogMicroseconds: 200_000, watchdogPid: "1")
        let reply = try completeReference(daemon.client())
        #expect(reply["result"]?["tokens"]?.ints == Self.prompt.greedy_ids, "\(reply) \(daemon.stderr)")
        try daemon.notifications.wait(for: "READY=1", timeout: 5)
        usleep(600_000)
        #expect(!daemon.notifications.messages.contains { $0.has("WATCHDOG=1") }, "WATCHDOG_PID=1 is not for us")
        #expect(daemon.terminate() == 0)
    }

    /// A datagram socket (ListenDatagram= by mistake) is refused with the reason, exit 1.
    @Test func aDatagramSocketIsRefusedWithTheReason() throws {
        let daemon = try ActivatedDaemon(listen: ["--datagram"])
        // a datagram activator starts the daemon on the first datagram
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            let bytes = Array(daemon.socket.utf8)
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let sent = withUnsafePointer(to: &address) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                sendto(fd, "x", 1, 0, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        #expect(sent == 1)
        daemon.process.waitUntilExit()
        #expect(daemon.process.terminationStatus == 1)
        #expect(daemon.stderr.contains("fd 3 is unusable: it is not a stream socket"), "\(daemon.stderr)")
    }
}

extension Duration {
    var milliseconds: Double {
        Double(components.seconds) * 1e3 + Double(components.attoseconds) / 1e15
    }
}
