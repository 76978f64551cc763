import Foundation
import Glibc
import MambaRPC

/// A small blocking JSON-RPC client over a Unix socket, for `mambad bench-serve` and the
/// end-to-end tests: plain POSIX calls, a receive timeout, either framing.
public final class SocketClient: @unchecked Sendable {
    public let fd: Int32
    public let framing: Framing
    private var decoder: FrameDecoder
    private var ready: [[UInt8]] = []

    public struct Failure: Error, CustomStringConvertible {
        public let description: String
        public init(description: String) { self.description = description }
    }

    public init(path: String, framing: Framing = .ndjson, timeoutSeconds: Double = 60) throws {
        self.framing = framing
        decoder = FrameDecoder(limits: FrameLimits(maxMessageBytes: 1 << 30, maxHeaderBytes: 1 << 16))
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw Failure(description: "socket: \(String(cString: strerror(errno)))") }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
            Foundation.close(fd)
            throw Failure(description: "socket path too long: \(path)")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let connected = withUnsafePointer(to: &address) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard connected == 0 else {
            let reason = String(cString: strerror(errno))
            Foundation.close(fd)
            throw Failure(description: "connect \(path): \(reason)")
        }
        var timeout = timeval(tv_sec: Int(timeoutSeconds), tv_usec: Int((timeoutSeconds - timeoutSeconds.rounded(.down)) * 1e6))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { Foundation.close(fd) }

    /// Writes bytes as they are (no framing): for malformed input.
    public func sendRaw(_ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0 {
                if errno == EINTR { continue }
                throw Failure(description: "send: \(String(cString: strerror(errno)))")
            }
            offset += n
        }
    }

    public func sendRaw(_ text: String) throws { try sendRaw(Array(text.utf8)) }

    /// Frames one message body and sends it.
    public func send(json: String) throws { try sendRaw(framing.frame(Array(json.utf8))) }

    /// Sends a request; `params` is JSON text.
    public func request(_ method: String, id: Int, params: String? = nil) throws {
        try send(json: #"{"jsonrpc":"2.0","id":\#(id),"method":"\#(method)""# + (params.map { #","params":\#($0)"# } ?? "") + "}")
    }

    /// Sends a notification; `params` is JSON text.
    public func notify(_ method: String, params: String? = nil) throws {
        try send(json: #"{"jsonrpc":"2.0","method":"\#(method)""# + (params.map { #","params":\#($0)"# } ?? "") + "}")
    }

    /// The next message's body; throws on timeout or when the daemon closed the connection.
    public func receive() throws -> [UInt8] {
        while ready.isEmpty {
            var chunk = [UInt8](repeating: 0, count: 65_536)
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 && errno == EINTR { continue }
            if n < 0 { throw Failure(description: "recv: \(String(cString: strerror(errno)))") }
            if n == 0 {
                for case .message(let m) in decoder.finish() { ready.append(m) }
                if ready.isEmpty { throw Failure(description: "connection closed by the daemon") }
                break
            }
            for event in decoder.feed(chunk[..<n]) {
                if case .message(let m) = event { ready.append(m) }
            }
        }
        return ready.removeFirst()
    }

    /// The next message, parsed.
    public func receiveJSON() throws -> JSONValue {
        try JSONDecoder().decode(JSONValue.self, from: Data(try receive()))
    }

    /// Messages until the one that answers `id` (notifications before it are returned too).
    public func receiveReply(id: Int) throws -> (reply: JSONValue, notifications: [JSONValue]) {
        var notifications: [JSONValue] = []
        while true {
            let message = try receiveJSON()
            if message["id"] == .integer(Int64(id)), message["method"] == nil { return (message, notifications) }
            notifications.append(message)
        }
    }

    /// Shuts the write side (half-close): the daemon still answers.
    public func finishSending() { Glibc.shutdown(fd, Int32(SHUT_WR)) }

    /// Whether the daemon closed the connection (reads until EOF or the timeout).
    public func readToEnd() -> [UInt8] {
        var all: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65_536)
        while true {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return all }
            all.append(contentsOf: chunk[..<n])
        }
    }
}

extension JSONValue {
    public var int: Int? {
        switch self {
        case .integer(let n): Int(n)
        case .unsigned(let n): Int(exactly: n)
        case .double(let d): Int(exactly: d)
        default: nil
        }
    }

    public var double: Double? {
        switch self {
        case .integer(let n): Double(n)
        case .unsigned(let n): Double(n)
        case .double(let d): d
        default: nil
        }
    }

    public var string: String? { if case .string(let s) = self { s } else { nil } }
    public var array: [JSONValue]? { if case .array(let a) = self { a } else { nil } }
    public var bool: Bool? { if case .bool(let b) = self { b } else { nil } }
}
