/// How the messages of one connection are delimited (PROTOCOL.md "Transport and framing").
public enum Framing: String, Sendable, Codable, CaseIterable {
    /// LSP base protocol: `Content-Length: N\r\n` (other headers ignored), `\r\n`, N bytes.
    case lsp
    /// Newline-delimited JSON: one message per line.
    case ndjson

    /// Wraps one message body for the wire.
    public func frame(_ body: [UInt8]) -> [UInt8] {
        switch self {
        case .ndjson:
            var out = body
            out.append(0x0A)
            return out
        case .lsp:
            var out = Array("Content-Length: \(body.count)\r\n\r\n".utf8)
            out.append(contentsOf: body)
            return out
        }
    }
}

/// Size limits of the framing layer, enforced before anything is buffered past them.
public struct FrameLimits: Sendable, Equatable {
    /// One message body at most this many bytes (default 8 MiB).
    public var maxMessageBytes: Int
    /// An LSP header block at most this many bytes (default 8 KiB).
    public var maxHeaderBytes: Int

    public init(maxMessageBytes: Int = 8 << 20, maxHeaderBytes: Int = 8 << 10) {
        self.maxMessageBytes = maxMessageBytes
        self.maxHeaderBytes = maxHeaderBytes
    }
}

/// What the decoder hands on.
public enum FrameEvent: Sendable, Equatable {
    /// The framing was recognized from the first byte (once per connection).
    case detected(Framing)
    /// One complete message body.
    case message([UInt8])
    /// The stream is broken: reply with this error (in `framing`), then close.
    case fatal(RPCError, framing: Framing)
}

/// Splits a connection's byte stream into message bodies. Pure: feed it the bytes as
/// they arrive; it never holds more than one message (plus one read) in memory, and a
/// message announced or growing past the limit is refused as soon as that is known.
public struct FrameDecoder: Sendable {
    public let limits: FrameLimits
    public private(set) var framing: Framing?
    private var buffer: [UInt8] = []
    private var start = 0
    /// NDJSON: bytes before `scanned` hold no newline.
    private var scanned = 0
    /// LSP: the body length once the header block is parsed.
    private var bodyLength: Int?
    private var failed = false

    public init(limits: FrameLimits = FrameLimits()) { self.limits = limits }

    /// Adds bytes; returns the events they complete, in order. After a `.fatal`, the
    /// decoder ignores everything.
    public mutating func feed(_ bytes: some Collection<UInt8>) -> [FrameEvent] {
        guard !failed else { return [] }
        buffer.append(contentsOf: bytes)
        var events: [FrameEvent] = []
        if framing == nil {
            while start < buffer.count, Self.isSpace(buffer[start]) { start += 1 }
            guard start < buffer.count else { compact(); return [] }
            switch buffer[start] {
            case UInt8(ascii: "C"), UInt8(ascii: "c"): framing = .lsp
            case UInt8(ascii: "{"), UInt8(ascii: "["): framing = .ndjson
            default:
                return fail(.parseError("the first byte is neither '{', '[' nor an LSP header"), framing: .ndjson)
            }
            scanned = start
            events.append(.detected(framing!))
        }
        switch framing! {
        case .ndjson: decodeLines(into: &events)
        case .lsp: decodeLSP(into: &events)
        }
        compact()
        return events
    }

    /// The peer closed its side: a last NDJSON line without its newline still counts.
    public mutating func finish() -> [FrameEvent] {
        guard !failed, framing == .ndjson, start < buffer.count else { return [] }
        let line = trimmed(buffer[start...])
        buffer.removeAll()
        start = 0
        scanned = 0
        return line.isEmpty ? [] : [.message(Array(line))]
    }

    private mutating func decodeLines(into events: inout [FrameEvent]) {
        while true {
            guard let newline = buffer[scanned...].firstIndex(of: 0x0A) else {
                scanned = buffer.count
                if buffer.count - start > limits.maxMessageBytes {
                    events.append(contentsOf: fail(.tooLarge("a message", limit: limits.maxMessageBytes), framing: .ndjson))
                }
                return
            }
            let line = trimmed(buffer[start..<newline])
            start = newline + 1
            scanned = start
            if line.count > limits.maxMessageBytes {
                events.append(contentsOf: fail(.tooLarge("a message", limit: limits.maxMessageBytes), framing: .ndjson))
                return
            }
            if !line.isEmpty { events.append(.message(Array(line))) }
        }
    }

    private mutating func decodeLSP(into events: inout [FrameEvent]) {
        while true {
            if bodyLength == nil {
                // skip stray line breaks between messages
                while start < buffer.count, buffer[start] == 0x0D || buffer[start] == 0x0A { start += 1 }
                guard let end = headerEnd() else {
                    if buffer.count - start > limits.maxHeaderBytes {
                        events.append(contentsOf: fail(.tooLarge("the header block", limit: limits.maxHeaderBytes), framing: .lsp))
                    }
                    return
                }
                if end - start > limits.maxHeaderBytes {
                    events.append(contentsOf: fail(.tooLarge("the header block", limit: limits.maxHeaderBytes), framing: .lsp))
                    return
                }
                switch Self.contentLength(buffer[start..<end]) {
                case .failure(let error):
                    events.append(contentsOf: fail(error, framing: .lsp))
                    return
                case .success(let length):
                    if length > limits.maxMessageBytes {
                        events.append(contentsOf: fail(.tooLarge("a message", limit: limits.maxMessageBytes), framing: .lsp))
                        return
                    }
                    bodyLength = length
                    start = end + 4
                }
            }
            guard let length = bodyLength, buffer.count - start >= length else { return }
            events.append(.message(Array(buffer[start..<(start + length)])))
            start += length
            bodyLength = nil
        }
    }

    /// Index of the "\r\n\r\n" that ends the header block starting at `start`.
    private func headerEnd() -> Int? {
        guard buffer.count - start >= 4 else { return nil }
        let limit = min(buffer.count, start + limits.maxHeaderBytes + 4)
        var i = start
        while i + 3 < limit {
            if buffer[i] == 0x0D, buffer[i + 1] == 0x0A, buffer[i + 2] == 0x0D, buffer[i + 3] == 0x0A { return i }
            i += 1
        }
        return nil
    }

    static func contentLength(_ block: ArraySlice<UInt8>) -> Result<Int, RPCError> {
        var length: Int?
        for line in block.split(separator: 0x0A) {
            let text = String(decoding: line, as: UTF8.self).trimmingSuffix("\r")
            guard let colon = text.firstIndex(of: ":") else {
                return .failure(.parseError("a header line without ':'"))
            }
            let name = text[..<colon].lowercased()
            guard name == "content-length" else { continue }
            let value = text[text.index(after: colon)...].trimmingCharacters(" \t")
            guard !value.isEmpty, value.count <= 18, value.allSatisfy({ $0.isASCII && $0.isNumber }),
                  let n = Int(value) else {
                return .failure(.parseError("Content-Length is not a non-negative integer"))
            }
            length = n
        }
        guard let length else { return .failure(.parseError("no Content-Length header")) }
        return .success(length)
    }

    private mutating func fail(_ error: RPCError, framing: Framing) -> [FrameEvent] {
        failed = true
        buffer = []
        start = 0
        return [.fatal(error, framing: framing)]
    }

    private mutating func compact() {
        if start > 0, start >= buffer.count / 2 || start > 65_536 {
            buffer.removeSubrange(..<start)
            scanned -= start
            start = 0
        }
    }

    private func trimmed(_ line: ArraySlice<UInt8>) -> ArraySlice<UInt8> {
        var line = line
        while let last = line.last, Self.isSpace(last) { line.removeLast() }
        while let first = line.first, Self.isSpace(first) { line.removeFirst() }
        return line
    }

    static func isSpace(_ byte: UInt8) -> Bool { byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D }
}

extension String {
    fileprivate func trimmingSuffix(_ suffix: String) -> String {
        hasSuffix(suffix) ? String(dropLast(suffix.count)) : self
    }
}

extension Substring {
    fileprivate func trimmingCharacters(_ set: String) -> String {
        var s = self
        while let f = s.first, set.contains(f) { s.removeFirst() }
        while let l = s.last, set.contains(l) { s.removeLast() }
        return String(s)
    }
}
