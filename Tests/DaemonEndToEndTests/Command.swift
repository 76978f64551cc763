import Foundation
import Synchronization

/// One external command run to completion, its output captured.
struct Command: CustomStringConvertible {
    let arguments: [String]
    let status: Int32
    let stdout: String
    let stderr: String

    var succeeded: Bool { status == 0 }
    var description: String {
        "`\(arguments.joined(separator: " "))` exited \(status)\nstdout: \(stdout)\nstderr: \(stderr)"
    }

    /// Runs `arguments` (the first is an absolute path or found on PATH); kills it after
    /// `timeout` seconds (status then 124, as `timeout(1)` reports).
    @discardableResult
    static func run(_ arguments: [String], environment: [String: String]? = nil, timeout: Double = 120) throws -> Command {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        if let environment { process.environment = environment }
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle.nullDevice
        try process.run()
        // read both pipes while it runs, so a chatty command cannot block on a full pipe
        let collected = DispatchGroup()
        let outData = Mutex(Data()), errData = Mutex(Data())
        DispatchQueue.global().async(group: collected) { outData.withLock { $0 = out.fileHandleForReading.readDataToEndOfFile() } }
        DispatchQueue.global().async(group: collected) { errData.withLock { $0 = err.fileHandleForReading.readDataToEndOfFile() } }
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning, Date() < deadline { usleep(10_000) }
        var timedOut = false
        if process.isRunning {
            timedOut = true
            kill(process.processIdentifier, SIGKILL)
        }
        process.waitUntilExit()
        _ = collected.wait(timeout: .now() + 5)   // a killed command's children may hold the pipes
        return Command(arguments: arguments, status: timedOut ? 124 : process.terminationStatus,
                       stdout: String(decoding: outData.withLock { $0 }, as: UTF8.self),
                       stderr: String(decoding: errData.withLock { $0 }, as: UTF8.self))
    }

    /// Whether an executable exists at one of the usual places (or `path` itself).
    static func exists(_ name: String) -> Bool { find(name) != nil }

    static func find(_ name: String) -> String? {
        if name.hasPrefix("/") { return FileManager.default.isExecutableFile(atPath: name) ? name : nil }
        return ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]
            .map { "\($0)/\(name)" }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }
}

/// When the systemd suites run. `.ci/run` sets MAMBAD_REQUIRE_SYSTEMD_TESTS=1: a missing
/// tool (or not being root for the container test) then fails instead of skipping.
enum SystemdTestPolicy {
    static let required = ProcessInfo.processInfo.environment["MAMBAD_REQUIRE_SYSTEMD_TESTS"] == "1"
    static let analyzer = "/usr/bin/systemd-analyze"
}
