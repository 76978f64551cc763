import Foundation
import MambaDaemon
import Testing

/// The unit files in systemd/ as systemd itself reads them: `systemd-analyze verify`
/// (which exits 0 on warnings, so any output fails), `systemd-analyze security` for
/// the sandbox, and the settings the protocol and the daemon rely on.
@Suite(.enabled(if: Command.exists(SystemdTestPolicy.analyzer) || SystemdTestPolicy.required,
                "needs systemd-analyze (apt-get install systemd)"))
struct SystemdUnitFileTests {
    static let analyzer = SystemdTestPolicy.analyzer
    static let units = ReadmeTests.root.appendingPathComponent("systemd")

    /// A scratch folder with copies of `files` (paths under systemd/), the installed
    /// binary's path replaced by the built one: verify checks that ExecStart= exists.
    /// `dropIns` go to mambad.service.d/, where verify reads them too.
    func staged(_ files: [String], dropIns: [String] = []) throws -> URL {
        let scratch = URL(fileURLWithPath: "/tmp/mambad-units-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: scratch.appendingPathComponent("mambad.service.d"), withIntermediateDirectories: true)
        for (file, destination) in files.map({ ($0, URL(fileURLWithPath: $0).lastPathComponent) })
            + dropIns.map({ ($0, "mambad.service.d/" + URL(fileURLWithPath: $0).lastPathComponent) }) {
            let text = try String(contentsOf: Self.units.appendingPathComponent(file), encoding: .utf8)
                .replacingOccurrences(of: "/usr/local/bin/mambad", with: TestDaemon.executable.path)
                .replacingOccurrences(of: "%h/.local/bin/mambad", with: TestDaemon.executable.path)
            try text.write(to: scratch.appendingPathComponent(destination), atomically: true, encoding: .utf8)
        }
        return scratch
    }

    func verify(_ files: [String], dropIns: [String] = [], user: Bool = false) throws {
        #expect(Command.exists(Self.analyzer), "systemd-analyze is missing")
        let scratch = try staged(files, dropIns: dropIns)
        defer { try? FileManager.default.removeItem(at: scratch) }
        var environment = ProcessInfo.processInfo.environment
        if user { environment["XDG_RUNTIME_DIR"] = scratch.path }   // a user manager needs one, even offline
        let paths = files.map { scratch.appendingPathComponent(URL(fileURLWithPath: $0).lastPathComponent).path }
        let result = try Command.run([Self.analyzer] + (user ? ["--user"] : []) + ["verify"] + paths, environment: environment)
        #expect(result.succeeded && result.stderr.isEmpty && result.stdout.isEmpty, "\(result)")
    }

    @Test func systemUnitsVerifyWithoutWarnings() throws {
        try verify(["mambad.socket", "mambad.service"])
    }

    @Test(arguments: ["examples/model-under-home.conf", "examples/openblas-coretype.conf"])
    func exampleDropInsVerifyWithoutWarnings(dropIn: String) throws {
        try verify(["mambad.socket", "mambad.service"], dropIns: [dropIn])
    }

    @Test func userUnitsVerifyWithoutWarnings() throws {
        try verify(["user/mambad.socket", "user/mambad.service"], user: true)
    }

    /// `systemd-analyze security` scores exposure from 0 (locked down) to 10.
    @Test func securityExposureIsAtMostTwo() throws {
        let scratch = try staged(["mambad.socket", "mambad.service"])
        defer { try? FileManager.default.removeItem(at: scratch) }
        let result = try Command.run([Self.analyzer, "security", "--offline=true", "--no-pager",
                                      scratch.appendingPathComponent("mambad.service").path])
        let line = try #require(result.stdout.split(separator: "\n").first { $0.contains("Overall exposure level for mambad.service") },
                                "\(result)")
        let score = try #require(line.split(separator: " ").compactMap { Double($0) }.last, "\(line)")
        #expect(score <= 2.0, "\(result.stdout)")
    }

    /// What PROTOCOL.md and the daemon rely on, written where a reader expects it.
    @Test func unitsSayWhatTheProtocolPromises() throws {
        func settings(_ file: String) throws -> [String] {
            try String(contentsOf: Self.units.appendingPathComponent(file), encoding: .utf8)
                .split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.hasPrefix("#") }
        }
        let socket = try settings("mambad.socket")
        for line in ["ListenStream=/run/mambad/mambad.sock", "SocketMode=0660", "SocketGroup=mambad", "Accept=no"] {
            #expect(socket.contains(line), "mambad.socket lacks \(line)")
        }
        let service = try settings("mambad.service")
        for line in ["Type=notify", "NotifyAccess=main", "DynamicUser=yes", "Environment=OPENBLAS_NUM_THREADS=1", "Restart=on-failure"] {
            #expect(service.contains(line), "mambad.service lacks \(line)")
        }
        #expect(service.contains { $0.hasPrefix("WatchdogSec=") })
        // RuntimeDirectory= would delete /run/mambad, the socket's folder, when the service stops
        #expect(!service.contains { $0.hasPrefix("RuntimeDirectory") })
        #expect(try settings("user/mambad.socket").contains("ListenStream=%t/mambad.sock"))
        #expect(try settings("mambad.sysusers").contains("g mambad -"))
    }

    /// The example config file is one the daemon accepts, and names a model.
    @Test func exampleConfigFileParses() throws {
        let text = try String(contentsOf: Self.units.appendingPathComponent("mambad.conf"), encoding: .utf8)
        var configuration = DaemonConfiguration()
        try configuration.apply(DaemonConfiguration.parseFile(text, source: "mambad.conf"), source: "mambad.conf")
        #expect(configuration.model == "/srv/models/falcon-mamba-7b-4bit")
    }
}
