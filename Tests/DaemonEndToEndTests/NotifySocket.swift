import Foundation
import Synchronization

/// The service manager's side of `sd_notify`: an AF_UNIX datagram socket the test binds
/// and hands to the daemon as NOTIFY_SOCKET. A thread reads every datagram; each
/// message keeps its arrival time so tests can check the order of events.
final class NotifySocket: Sendable {
    struct Message: Sendable {
        let fields: [String]
        let received: ContinuousClock.Instant
        func has(_ field: String) -> Bool { fields.contains(field) }
        func value(_ key: String) -> String? {
            fields.first { $0.hasPrefix(key + "=") }.map { String($0.dropFirst(key.count + 1)) }
        }
    }

    /// What the reading thread shares with the test (not `self`, so `deinit` runs).
    private final class Inbox: Sendable {
        let messages = Mutex<[Message]>([])
        let arrived = DispatchSemaphore(value: 0)
        let closed = Atomic<Bool>(false)
    }

    let path: String
    private let inbox = Inbox()

    init() throws {
        path = "/tmp/mambad-notify-\(UUID().uuidString.prefix(8)).sock"
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { throw NotifySocketError(what: "socket", errno: errno) }
        let bound = bindUnixSocket(fd, to: path)
        guard bound == 0 else { close(fd); throw NotifySocketError(what: "bind \(path)", errno: errno) }
        let inbox = inbox
        Thread { Self.read(fd, into: inbox) }.start()
    }

    deinit {
        inbox.closed.store(true, ordering: .relaxed)   // the reader closes the fd within 0.1 s
        unlink(path)
    }

    /// Reads datagrams until closed, then closes the socket (here, so its fd number is
    /// never reused under a reader that is still polling it).
    private static func read(_ fd: Int32, into inbox: Inbox) {
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 4096)
        while !inbox.closed.load(ordering: .relaxed) {
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&poller, 1, 100) > 0 else { continue }
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            guard n > 0 else { continue }
            let text = String(decoding: buffer[..<n], as: UTF8.self)
            let message = Message(fields: text.split(separator: "\n").map(String.init), received: .now)
            inbox.messages.withLock { $0.append(message) }
            inbox.arrived.signal()
        }
    }

    var messages: [Message] { inbox.messages.withLock { $0 } }

    /// Waits (bounded) for a message with `field` (e.g. "READY=1"); returns it.
    @discardableResult
    func wait(for field: String, timeout: Double = 30) throws -> Message {
        try wait(timeout: timeout, "a message with \(field)") { $0.has(field) }
    }

    @discardableResult
    func wait(timeout: Double, _ what: String, until matches: (Message) -> Bool) throws -> Message {
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            if let hit = messages.first(where: matches) { return hit }
            guard Date() < deadline else {
                throw NotifySocketError(what: "timed out waiting for \(what); got \(messages.map(\.fields))", errno: 0)
            }
            _ = inbox.arrived.wait(timeout: .now() + 0.1)
        }
    }
}

struct NotifySocketError: Error, CustomStringConvertible {
    let what: String
    let errno: Int32
    var description: String { errno == 0 ? what : "\(what): \(String(cString: strerror(errno)))" }
}

/// bind(2) a Unix socket to `path` (shorter than sun_path); returns bind's result.
func bindUnixSocket(_ fd: Int32, to path: String) -> Int32 {
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    withUnsafeMutableBytes(of: &address.sun_path) { raw in
        let bytes = Array(path.utf8)
        raw.copyBytes(from: bytes)
        raw[bytes.count] = 0
    }
    return withUnsafePointer(to: &address) { p in
        p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
    }
}
