import Foundation
import Testing

/// The README's daemon one-liners, run as written (with socat and jq, which .ci/run installs).
@Suite struct ReadmeTests {
    static let root = TestDaemon.fixtures.deletingLastPathComponent().deletingLastPathComponent()

    @Test func daemonOneLinersWorkAsWritten() throws {
        let readme = try String(contentsOf: Self.root.appendingPathComponent("README.md"), encoding: .utf8)
        let section = try #require(readme.range(of: "## The daemon"))
        let open = try #require(readme.range(of: "```sh\n", range: section.upperBound..<readme.endIndex))
        let close = try #require(readme.range(of: "```", range: open.upperBound..<readme.endIndex))
        var script = String(readme[open.upperBound..<close.lowerBound])
        let socket = "/tmp/mambad-readme-\(UUID().uuidString.prefix(8)).sock"
        script = script.replacingOccurrences(of: "sock=/tmp/mambad-readme.sock", with: "sock=\(socket)")
        #expect(script.contains("sock=\(socket)"))

        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/bash")
        process.arguments = ["-e", "-o", "pipefail", "-c", "timeout 120 bash -e -o pipefail -c \"$0\"", script]
        process.currentDirectoryURL = Self.root
        var environment = ProcessInfo.processInfo.environment
        environment["PATH"] = TestDaemon.executable.deletingLastPathComponent().path + ":" + (environment["PATH"] ?? "/usr/bin:/bin")
        environment["MAMBAD_THREADS"] = "1"
        // the packed-weights cache the daemon makes goes into a folder of this test, not ~/.cache
        let cacheHome = FileManager.default.temporaryDirectory.appendingPathComponent("mambad-readme-cache-\(UUID().uuidString.prefix(8))")
        defer { try? FileManager.default.removeItem(at: cacheHome) }
        environment["XDG_CACHE_HOME"] = cacheHome.path
        environment.removeValue(forKey: "CACHE_DIRECTORY")
        // The packed weights made beforehand, as on every start but the first (which
        // serves with the exact kernels until they are made): the two completions below
        // must come from the same kernels to agree.
        let pack = try Command.run([TestDaemon.executable.path, "run", "--model", TestDaemon.model, "--tokens", "1", "--max-tokens", "1"],
                                   environment: environment)
        #expect(pack.succeeded, "\(pack)")
        process.environment = environment
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let output = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let log = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus == 0, "stdout: \(output)\nstderr: \(log)")
        let lines = output.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        #expect(lines.count >= 7, "\(output)")
        guard lines.count >= 7 else { return }
        #expect(!lines[0].isEmpty && lines[0] == lines[1], "plain and streamed text agree")
        #expect(lines[2] == #"{"pieces":["Hello",","," world"],"tokens":[9856,23,1079]}"#)
        #expect(lines[3] == #"{"dimensions":32,"n":2}"#)
        #expect(lines[4] == #"{"active":0,"cancelled":0,"completed":3,"failed":0,"queued":0}"#)
        #expect(lines[5] == #""tiny-falcon-vocab-nf4""# && lines[6] == #""Hello world""#)
        #expect(log.contains("draining") && log.contains("stopped"))
        #expect(!FileManager.default.fileExists(atPath: socket))
    }
}
