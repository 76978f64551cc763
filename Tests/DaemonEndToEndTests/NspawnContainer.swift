import Foundation
import Synchronization

/// A minimal Debian made by debootstrap, kept under /var/cache/mambad-ci between runs
/// (made again when missing or when its recipe changes). Concurrent test runs take a
/// lock; an interrupted debootstrap leaves only a `.partial` folder, never a root that
/// looks finished.
enum DebianRoot {
    static let suite = "bookworm"
    static let recipe = ["--variant=minbase", "--include=systemd,dbus,libopenblas0", suite]
    static let cache = URL(fileURLWithPath: ProcessInfo.processInfo.environment["MAMBAD_CI_CACHE"] ?? "/var/cache/mambad-ci")
    static let root = cache.appendingPathComponent("debian-\(suite)-minbase")
    static let marker = ".mambad-ci-root"

    static var isCached: Bool { (try? String(contentsOf: root.appendingPathComponent(marker), encoding: .utf8)) == recipeLine }
    private static var recipeLine: String { (["debootstrap"] + recipe).joined(separator: " ") + "\n" }

    /// The cached root; runs debootstrap first when there is none (about 100 s).
    static func cached() throws -> URL {
        try FileManager.default.createDirectory(at: cache, withIntermediateDirectories: true)
        let lock = open(cache.appendingPathComponent(".lock").path, O_CREAT | O_RDWR | O_CLOEXEC, 0o644)
        guard lock >= 0 else { throw ContainerError("cannot open the lock in \(cache.path)") }
        defer { close(lock) }
        flock(lock, LOCK_EX)
        if isCached { return root }
        let partial = cache.appendingPathComponent(root.lastPathComponent + ".partial")
        try? FileManager.default.removeItem(at: partial)
        let made = try Command.run([Command.find("debootstrap") ?? "debootstrap"] + recipe + [partial.path, mirror()], timeout: 900)
        guard made.succeeded else { throw ContainerError("debootstrap failed: \(made)") }
        try recipeLine.write(to: partial.appendingPathComponent(marker), atomically: true, encoding: .utf8)
        try? FileManager.default.removeItem(at: root)
        try FileManager.default.moveItem(at: partial, to: root)
        return root
    }

    /// The Debian mirror apt already uses for this suite (MAMBAD_DEBIAN_MIRROR wins):
    /// deb822 `.sources` paragraphs or one-line `deb URI suite ...` entries.
    static func mirror() -> String {
        if let chosen = ProcessInfo.processInfo.environment["MAMBAD_DEBIAN_MIRROR"], !chosen.isEmpty { return chosen }
        let directory = "/etc/apt/sources.list.d"
        let files = ["/etc/apt/sources.list"] + ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [])
            .filter { $0.hasSuffix(".list") || $0.hasSuffix(".sources") }.sorted().map { "\(directory)/\($0)" }
        for file in files {
            guard let text = try? String(contentsOfFile: file, encoding: .utf8) else { continue }
            if file.hasSuffix(".sources") {
                for paragraph in text.components(separatedBy: "\n\n") {
                    var fields: [String: [String]] = [:]
                    for line in paragraph.split(separator: "\n") where !line.hasPrefix("#") {
                        guard let colon = line.firstIndex(of: ":") else { continue }
                        fields[line[..<colon].lowercased()] = line[line.index(after: colon)...].split(separator: " ").map(String.init)
                    }
                    if fields["types"]?.contains("deb") == true, fields["suites"]?.contains(suite) == true,
                       fields["enabled"]?.first != "no", let uri = fields["uris"]?.first { return uri }
                }
            } else {
                for line in text.split(separator: "\n") {
                    var words = line.split(separator: " ").map(String.init)
                    guard words.first == "deb" else { continue }
                    words.removeFirst()
                    if words.first?.hasPrefix("[") == true { words = Array(words.drop { !$0.hasSuffix("]") }.dropFirst()) }
                    if words.count >= 2, words[1] == suite { return words[0] }
                }
            }
        }
        return "http://deb.debian.org/debian"
    }
}

/// A copy of the cached root booted with `systemd-nspawn -b`: systemd as PID 1 of its
/// own PID namespace, driven with `nsenter -t <its pid> -a` (no machined, no bus on
/// this host, hence --register=no --keep-unit). Its files are reachable from here as
/// /proc/<pid>/root/..., Unix sockets included.
final class NspawnContainer: @unchecked Sendable {
    let directory: URL
    private let nspawn = Process()
    private let console = Mutex("")
    private(set) var initPid: Int32 = 0

    init(copying root: URL) throws {
        directory = URL(fileURLWithPath: "/var/tmp/mambad-nspawn-\(UUID().uuidString.prefix(8))")
        let copied = try Command.run(["cp", "-a", "--reflink=auto", root.path, directory.path], timeout: 300)
        guard copied.succeeded else { throw ContainerError("cannot copy the root: \(copied)") }
    }

    deinit { tearDown() }

    /// Copies a host file into the (not yet booted) root.
    func install(_ source: String, at path: String, mode: Int = 0o644) throws {
        let destination = directory.path + path
        try FileManager.default.createDirectory(atPath: (destination as NSString).deletingLastPathComponent,
                                                withIntermediateDirectories: true)
        try? FileManager.default.removeItem(atPath: destination)
        try FileManager.default.copyItem(atPath: source, toPath: destination)
        chmod(destination, mode_t(mode))
    }

    /// Copies the shared libraries `binary` needs (per ldd) that the root lacks, to the
    /// same paths (the Swift runtime, found through the binary's RUNPATH).
    func installLibraries(of binary: String) throws {
        let ldd = try Command.run(["ldd", binary])
        guard ldd.succeeded else { throw ContainerError("ldd failed: \(ldd)") }
        for line in ldd.stdout.split(separator: "\n") {
            let words = line.split(separator: " ")
            guard words.count >= 3, words[1] == "=>", words[2].hasPrefix("/") else { continue }
            let library = URL(fileURLWithPath: String(words[2])).resolvingSymlinksInPath().path
            if !FileManager.default.fileExists(atPath: directory.path + words[2]) { try install(library, at: String(words[2])) }
        }
    }

    /// Boots it and waits until systemd says the boot finished.
    func boot(timeout: Double = 120) throws {
        nspawn.executableURL = URL(fileURLWithPath: Command.find("systemd-nspawn") ?? "/usr/bin/systemd-nspawn")
        nspawn.arguments = ["-D", directory.path, "-b", "--register=no", "--keep-unit", "--console=passive"]
        let output = Pipe()
        nspawn.standardOutput = output
        nspawn.standardError = output
        nspawn.standardInput = FileHandle.nullDevice
        output.fileHandleForReading.readabilityHandler = { [weak self] h in
            let data = h.availableData
            if data.isEmpty { h.readabilityHandler = nil; return }
            self?.console.withLock { $0 += String(decoding: data, as: UTF8.self) }
        }
        try nspawn.run()
        let deadline = Date().addingTimeInterval(timeout)
        while initPid == 0 {
            guard nspawn.isRunning else { throw ContainerError("systemd-nspawn exited: \(console.withLock { $0 })") }
            guard Date() < deadline else { throw ContainerError("no systemd under systemd-nspawn") }
            initPid = Self.descendant(of: nspawn.processIdentifier, named: "systemd") ?? 0
            usleep(50_000)
        }
        while true {
            let state = try run(["systemctl", "is-system-running", "--wait"], timeout: max(1, deadline.timeIntervalSinceNow))
            if ["running", "degraded"].contains(state.stdout.trimmingCharacters(in: .whitespacesAndNewlines)) { return }
            guard Date() < deadline else { throw ContainerError("the container did not finish booting: \(state)") }
            usleep(200_000)
        }
    }

    /// Runs a command inside, in all of its namespaces.
    @discardableResult
    func run(_ arguments: [String], timeout: Double = 60) throws -> Command {
        try Command.run(["nsenter", "-t", "\(initPid)", "-a"] + arguments, timeout: timeout)
    }

    /// Where a path inside is reachable from the host.
    func hostPath(_ path: String) -> String { "/proc/\(initPid)/root\(path)" }

    var consoleOutput: String { console.withLock { $0 } }

    /// Powers it off through systemd-nspawn (SIGTERM asks systemd inside to shut down),
    /// kills what is left, and removes the copy, unless something is still mounted in it.
    func tearDown() {
        if nspawn.isRunning {
            kill(nspawn.processIdentifier, SIGTERM)
            let deadline = Date().addingTimeInterval(20)
            while nspawn.isRunning, Date() < deadline { usleep(50_000) }
            if nspawn.isRunning {
                if initPid > 0 { kill(initPid, SIGKILL) }
                kill(nspawn.processIdentifier, SIGKILL)
            }
            nspawn.waitUntilExit()
        }
        let mounts = (try? String(contentsOfFile: "/proc/self/mounts", encoding: .utf8)) ?? ""
        if !mounts.contains(" \(directory.path)") { try? FileManager.default.removeItem(at: directory) }
    }

    /// The first process named `name` among the descendants of `pid` (from /proc).
    static func descendant(of pid: Int32, named name: String) -> Int32? {
        var parents: [Int32: Int32] = [:]
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard let child = Int32(entry), let stat = try? String(contentsOfFile: "/proc/\(entry)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")") else { continue }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            if fields.count > 1, let parent = Int32(fields[1]) { parents[child] = parent }
        }
        var frontier = [pid]
        while let next = frontier.popLast() {
            for (child, parent) in parents where parent == next {
                let comm = (try? String(contentsOfFile: "/proc/\(child)/comm", encoding: .utf8))?
                    .trimmingCharacters(in: .whitespacesAndNewlines)
                if comm == name { return child }
                frontier.append(child)
            }
        }
        return nil
    }
}

struct ContainerError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
