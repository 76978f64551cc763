import CSystemd
import Foundation

/// What systemd gives and wants, through libsystemd. Without systemd (no LISTEN_FDS,
/// no NOTIFY_SOCKET, no WATCHDOG_USEC) every call is a no-op or answers nil.
enum Systemd {
    /// The listening socket passed by socket activation (LISTEN_FDS/LISTEN_PID, fd 3), or
    /// nil when not activated. The environment variables are unset either way, so a child
    /// process would not think the socket is its own. mambad.socket passes exactly one
    /// listening AF_UNIX stream socket; anything else is refused with the reason.
    static func listeningSocket() throws(SocketActivationError) -> Int32? {
        let count = sd_listen_fds(1)
        if count < 0 { throw .unreadableEnvironment(String(cString: strerror(-count))) }
        if count == 0 { return nil }
        guard count == 1 else { throw .socketCount(Int(count)) }
        let fd = SD_LISTEN_FDS_START
        let verdict = sd_is_socket_unix(fd, Int32(SOCK_STREAM.rawValue), 1, nil, 0)
        if verdict > 0 { return fd }
        throw .unsupportedSocket(fd: fd, reason: verdict < 0 ? String(cString: strerror(-verdict)) : describe(fd))
    }

    /// Why `fd` is not a listening AF_UNIX stream socket, in terms of the .socket unit.
    static func describe(_ fd: Int32) -> String {
        func option(_ name: Int32) -> Int32? {
            var value: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            return getsockopt(fd, SOL_SOCKET, name, &value, &length) == 0 ? value : nil
        }
        guard let domain = option(SO_DOMAIN), let type = option(SO_TYPE) else {
            return "it is not a socket (use ListenStream=/run/mambad/mambad.sock)"
        }
        if domain != AF_UNIX { return "it is not an AF_UNIX socket (ListenStream= must be a file system path)" }
        if type != Int32(SOCK_STREAM.rawValue) { return "it is not a stream socket (use ListenStream=, not ListenDatagram= or ListenSequentialPacket=)" }
        if option(SO_ACCEPTCONN) == 0 { return "it is a connected socket, not a listening one (set Accept=no)" }
        return "it is not a listening AF_UNIX stream socket"
    }

    /// Whether a service manager listens for notifications (NOTIFY_SOCKET is set).
    static var notificationsWanted: Bool { getenv("NOTIFY_SOCKET") != nil }

    /// Sends `fields` ("READY=1", "STATUS=...", several separated by newlines) to the
    /// service manager, from this (the main) process.
    static func notify(_ fields: String) {
        _ = sd_notify(0, fields)
    }

    /// `STATUS=text` on one line (a newline would start another field).
    static func status(_ text: String) -> String {
        "STATUS=" + text.replacingOccurrences(of: "\n", with: " ")
    }

    /// The watchdog interval systemd set for this process (WATCHDOG_USEC, with
    /// WATCHDOG_PID unset or equal to our pid), or nil when there is no watchdog.
    static func watchdogTimeout() -> Duration? {
        var microseconds: UInt64 = 0
        guard sd_watchdog_enabled(0, &microseconds) > 0, microseconds > 0 else { return nil }
        return .microseconds(Int64(clamping: microseconds))
    }
}

/// A socket-activated start whose inherited sockets mambad cannot serve on.
public enum SocketActivationError: Error, Equatable, CustomStringConvertible {
    /// LISTEN_FDS or LISTEN_PID could not be parsed.
    case unreadableEnvironment(String)
    /// More than one socket was passed; mambad serves one (one ListenStream= line).
    case socketCount(Int)
    case unsupportedSocket(fd: Int32, reason: String)

    public var description: String {
        switch self {
        case .unreadableEnvironment(let why): "socket activation: cannot read LISTEN_FDS/LISTEN_PID: \(why)"
        case .socketCount(let n): "socket activation passed \(n) sockets; mambad serves exactly one (one ListenStream= line)"
        case .unsupportedSocket(let fd, let reason): "socket activation: fd \(fd) is unusable: \(reason)"
        }
    }
}
