#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Logging
import Synchronization

/// One line per event on stderr. Under journald (JOURNAL_STREAM set) each line starts
/// with the syslog priority (`<6>`) and has no timestamp: journald adds its own.
/// Metadata (request ids, connection numbers) follow the message as key=value.
public struct StderrLogHandler: LogHandler {
    public var logLevel: Logger.Level
    public var metadata: Logger.Metadata = [:]
    let label: String
    let journald: Bool
    static let lock = Mutex(())

    public init(label: String, level: Logger.Level, journald: Bool = getenv("JOURNAL_STREAM") != nil) {
        self.label = label
        self.logLevel = level
        self.journald = journald
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var line = journald ? "<\(Self.priority(event.level))>" : Self.timestamp() + " " + event.level.rawValue.uppercased() + " "
        line += Self.oneLine(event.message.description)
        let merged = metadata.merging(event.metadata ?? [:]) { $1 }
        for key in merged.keys.sorted() {
            line += " \(key)=" + Self.quoted(Self.oneLine("\(merged[key]!)"))
        }
        line += "\n"
        // one write(2) per line: lines of concurrent events never interleave
        Self.lock.withLock { _ in
            var bytes = Array(line.utf8)[...]
            while !bytes.isEmpty {
                let n = bytes.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
                if n <= 0 { if n < 0 && errno == EINTR { continue } else { break } }
                bytes = bytes.dropFirst(n)
            }
        }
    }

    static func priority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: 7
        case .info: 6
        case .notice: 5
        case .warning: 4
        case .error: 3
        case .critical: 2
        }
    }

    static func oneLine(_ text: String) -> String {
        text.contains(where: { $0.isNewline }) ? text.replacingOccurrences(of: "\r", with: "\\r").replacingOccurrences(of: "\n", with: "\\n") : text
    }

    static func quoted(_ text: String) -> String {
        text.isEmpty || text.contains(" ") || text.contains("\"") ? "\"" + text.replacingOccurrences(of: "\"", with: "\\\"") + "\"" : text
    }

    static func timestamp() -> String {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        var t = tm()
        var seconds = now.tv_sec
        gmtime_r(&seconds, &t)
        return String(format: "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", Int(t.tm_year) + 1900, Int(t.tm_mon) + 1, Int(t.tm_mday),
                      Int(t.tm_hour), Int(t.tm_min), Int(t.tm_sec), Int(now.tv_nsec / 1_000_000))
    }
}
