import Foundation
import MambaDaemon
import MambaRPC
import Synchronization
import Testing

/// A real `mambad serve` process on a temporary socket, with the tiny Falcon-vocabulary
/// model. It is killed when the value goes away, so a failing test leaves nothing behind.
final class TestDaemon: @unchecked Sendable {
    static let executable = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        .deletingLastPathComponent().appendingPathComponent("mambad")
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures")
    static let model = fixtures.appendingPathComponent("models/tiny-falcon-vocab-nf4").path

    let directory: URL
    let socket: String
    let process = Process()
    private let log = Mutex("")
    private let lines = DispatchSemaphore(value: 0)

    /// Starts the daemon; waits until its log says `until` (default: the model is ready).
    init(_ arguments: [String] = [], model: String = TestDaemon.model, socket: String? = nil, until: String? = "INFO ready") throws {
        directory = URL(fileURLWithPath: "/tmp").appendingPathComponent("mambad-e2e-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        self.socket = socket ?? directory.appendingPathComponent("d.sock").path
        process.executableURL = Self.executable
        process.arguments = ["serve", "--model", model, "--socket", self.socket, "--precision", "exact"] + arguments
        var environment = ProcessInfo.processInfo.environment
        environment["MAMBAD_THREADS"] = "1"
        // not a systemd service, even when the tests run inside one
        for key in ["JOURNAL_STREAM", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"] {
            environment.removeValue(forKey: key)
        }
        process.environment = environment
        let errors = Pipe()
        process.standardError = errors
        process.standardOutput = FileHandle.nullDevice
        let handle = errors.fileHandleForReading
        let lines = self.lines
        handle.readabilityHandler = { [weak self] h in
            let data = h.availableData
            if data.isEmpty { h.readabilityHandler = nil; lines.signal(); return }
            self?.log.withLock { $0 += String(decoding: data, as: UTF8.self) }
            lines.signal()
        }
        try process.run()
        if let until { try waitForLog(until) }
    }

    deinit {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        try? FileManager.default.removeItem(at: directory)
    }

    var stderr: String { log.withLock { $0 } }

    /// Waits (bounded) until the daemon's stderr contains `text`; fails if it exits first.
    func waitForLog(_ text: String, timeout: Double = 30) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while !stderr.contains(text) {
            if !process.isRunning && !stderr.contains(text) {
                process.waitUntilExit()
                throw SocketClient.Failure(description: "mambad exited (\(process.terminationStatus)) before '\(text)': \(stderr)")
            }
            guard Date() < deadline else { throw SocketClient.Failure(description: "timed out waiting for '\(text)': \(stderr)") }
            _ = lines.wait(timeout: .now() + 0.5)
        }
    }

    func client(_ framing: Framing = .ndjson, timeout: Double = 60) throws -> SocketClient {
        try SocketClient(path: socket, framing: framing, timeoutSeconds: timeout)
    }

    /// One request on a fresh connection; returns the reply.
    func call(_ method: String, _ params: String? = nil, framing: Framing = .ndjson) throws -> JSONValue {
        let c = try client(framing)
        try c.request(method, id: 1, params: params)
        return try c.receiveReply(id: 1).reply
    }

    func status() throws -> JSONValue { try #require(try call("status")["result"]) }

    /// Polls `status` until `condition` holds (bounded): for effects that have no event
    /// of their own, such as work stopping after a client went away.
    func waitForStatus(timeout: Double = 20, _ condition: (JSONValue) -> Bool) throws -> JSONValue {
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            let s = try status()
            if condition(s) { return s }
            guard Date() < deadline else { throw SocketClient.Failure(description: "status never matched: \(s)") }
            usleep(20_000)
        }
    }

    /// SIGTERM, then waits for the exit status.
    func terminate(timeout: Double = 30) -> Int32? {
        kill(process.processIdentifier, SIGTERM)
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning, Date() < deadline { usleep(10_000) }
        guard !process.isRunning else { return nil }
        return process.terminationStatus
    }
}

/// The prompts and reference outputs of the fixture (from transformers).
struct ReferenceCase: Decodable, Sendable {
    let prompt: String
    let prompt_ids: [Int]
    let greedy_ids: [Int]
    let greedy_text: String
    let embedding_mean_normalized: [Float]
    let embedding_last_normalized: [Float]

    static let all: [ReferenceCase] = {
        struct File: Decodable { let cases: [ReferenceCase] }
        let url = TestDaemon.fixtures.appendingPathComponent("reference/tiny-falcon-vocab-nf4.json")
        return try! JSONDecoder().decode(File.self, from: Data(contentsOf: url)).cases
    }()
}

/// A Swift string as JSON text.
func json(_ text: String) -> String { String(decoding: try! JSONEncoder().encode(text), as: UTF8.self) }

func cosine(_ a: [Float], _ b: [Float]) -> Double {
    var dot = 0.0, na = 0.0, nb = 0.0
    for (x, y) in zip(a, b) { dot += Double(x) * Double(y); na += Double(x) * Double(x); nb += Double(y) * Double(y) }
    return dot / (na.squareRoot() * nb.squareRoot())
}

extension JSONValue {
    var floats: [Float] { array?.compactMap { $0.double.map(Float.init) } ?? [] }
    var ints: [Int] { array?.compactMap(\.int) ?? [] }
    var errorCode: Int? { self["error"]?["code"]?.int }
}
