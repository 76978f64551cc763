import FalconMamba
import Foundation
import Logging
import MambaRPC

/// Every setting of `mambad serve`. The same keys work in the config file
/// (`key = value`) and as flags (`--key value`); flags win (see `apply`).
public struct DaemonConfiguration: Sendable, Equatable {
    public var model: String?
    public var socket: String
    /// Permission bits of the socket file.
    public var socketMode: Int = 0o660
    public var precision: String = "fast"
    /// The fast path's lm_head: "int8", or "4bit" with the likeliest tokens rescored exactly.
    public var lmHead: LMHeadPrecision = .int8
    /// Folder for the fast path's packed weights (nil: pack into memory at every start).
    public var packedCache: String?
    /// Compute threads (0 = one per core).
    public var threads: Int = 0
    /// How the decode products prefetch their weights (`0`: not at all, `BYTES` or
    /// `l2:BYTES` into L2, `nta:BYTES` non-temporal); nil ("auto"): raced on the decode
    /// steps themselves (PrefetchTuner).
    public var prefetch: PrefetchPlan?
    public var maxMessageBytes: Int = 8 << 20
    public var maxHeaderBytes: Int = 8 << 10
    /// Elements of one JSON-RPC batch.
    public var maxBatch: Int = 64
    /// Sequences admitted at once (prefilling or decoding); their decode steps share passes.
    public var maxActive: Int = 8
    /// Requests waiting behind the active ones; more get -32001.
    public var maxQueue: Int = 64
    /// Requests a connection may have unanswered at once; more get -32001.
    public var maxPendingPerConnection: Int = 256
    public var maxPromptTokens: Int = 32_768
    /// Ceiling of `maxTokens`.
    public var maxCompletionTokens: Int = 8_192
    /// Recurrent-state snapshots kept for prompt prefixes, in bytes.
    public var cacheBytes: Int = 1 << 30
    /// Tokens of one prefill slice while other sequences are decoding.
    public var prefillChunk: Int = 16
    /// How long in-flight work may finish after SIGTERM/SIGINT before it is cancelled.
    public var shutdownGraceMs: Int = 5_000
    public var logLevel: Logger.Level = .info
    /// Testing aid (hidden flag): wait this long before loading the model.
    public var debugLoadDelayMs: Int = 0

    /// Where the default config file lives.
    public static let defaultConfigFile = "/etc/mambad/mambad.conf"

    public init(environment: [String: String] = [:]) {
        let runtime = environment["XDG_RUNTIME_DIR"].flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp"
        socket = runtime + "/mambad.sock"
        packedCache = PackedWeightsCache.defaultDirectory { environment[$0] }
    }

    public var frameLimits: FrameLimits { FrameLimits(maxMessageBytes: maxMessageBytes, maxHeaderBytes: maxHeaderBytes) }

    /// The keys, as written in the config file and (with `--`) on the command line.
    public static let keys = ["model", "socket", "socket-mode", "precision", "lm-head", "packed-cache", "threads", "prefetch", "max-message-bytes",
                              "max-header-bytes", "max-batch", "max-active", "max-queue", "max-pending-per-connection",
                              "max-prompt-tokens", "max-completion-tokens", "cache-bytes", "prefill-chunk",
                              "shutdown-grace-ms", "log-level", "debug-load-delay-ms"]

    /// Applies settings; later calls override earlier ones (file first, then flags).
    public mutating func apply(_ settings: [(key: String, value: String)], source: String) throws(ConfigurationError) {
        for (key, value) in settings {
            func int(min: Int = 0) throws(ConfigurationError) -> Int {
                let text = value.replacingOccurrences(of: "_", with: "")
                guard let n = Int(text) ?? Self.sizeWithUnit(text), n >= min else {
                    throw .badValue(source: source, key: key, value: value, expected: "an integer >= \(min)")
                }
                return n
            }
            switch key {
            case "model": model = value
            case "socket": socket = value
            case "socket-mode":
                guard let mode = Int(value, radix: 8), (0...0o777).contains(mode) else {
                    throw .badValue(source: source, key: key, value: value, expected: "octal permission bits such as 0660")
                }
                socketMode = mode
            case "precision":
                guard ["fast", "exact"].contains(value) else {
                    throw .badValue(source: source, key: key, value: value, expected: "fast or exact")
                }
                precision = value
            case "lm-head":
                guard let mode = LMHeadPrecision(rawValue: value) else {
                    throw .badValue(source: source, key: key, value: value, expected: "int8 or 4bit")
                }
                lmHead = mode
            case "packed-cache": packedCache = value == "none" || value.isEmpty ? nil : value
            case "threads": threads = try int()
            case "prefetch":
                if value == "auto" { prefetch = nil; break }
                guard let plan = PrefetchPlan(value) else {
                    throw .badValue(source: source, key: key, value: value,
                                    expected: "auto, or bytes from 0 to 64K, optionally l2: or nta: before them")
                }
                prefetch = plan
            case "max-message-bytes": maxMessageBytes = try int(min: 1024)
            case "max-header-bytes": maxHeaderBytes = try int(min: 64)
            case "max-batch": maxBatch = try int(min: 1)
            case "max-active": maxActive = try int(min: 1)
            case "max-queue": maxQueue = try int()
            case "max-pending-per-connection": maxPendingPerConnection = try int(min: 1)
            case "max-prompt-tokens": maxPromptTokens = try int(min: 1)
            case "max-completion-tokens": maxCompletionTokens = try int(min: 1)
            case "cache-bytes": cacheBytes = try int()
            case "prefill-chunk": prefillChunk = try int(min: 1)
            case "shutdown-grace-ms": shutdownGraceMs = try int()
            case "debug-load-delay-ms": debugLoadDelayMs = try int()
            case "log-level":
                guard let level = Logger.Level(rawValue: value.lowercased()) else {
                    throw .badValue(source: source, key: key, value: value,
                                    expected: Logger.Level.allCases.map(\.rawValue).joined(separator: ", "))
                }
                logLevel = level
            default: throw .unknownKey(source: source, key: key)
            }
        }
    }

    /// "512M", "1G", "64K" (powers of 1024).
    static func sizeWithUnit(_ text: String) -> Int? {
        guard let unit = text.last?.uppercased(), let n = Int(text.dropLast()) else { return nil }
        switch unit {
        case "K": return n << 10
        case "M": return n << 20
        case "G": return n << 30
        default: return nil
        }
    }

    /// Parses a config file: `key = value` lines; `#` starts a comment; blank lines are
    /// ignored; a value may be in double quotes (TOML style); `[section]` lines are ignored.
    public static func parseFile(_ text: String, source: String) throws(ConfigurationError) -> [(key: String, value: String)] {
        var settings: [(key: String, value: String)] = []
        for (number, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            var line = Substring(rawLine)
            if let hash = line.firstIndex(of: "#"), !line[..<hash].contains("\"") { line = line[..<hash] }
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty || (trimmed.hasPrefix("[") && trimmed.hasSuffix("]")) { continue }
            guard let equals = trimmed.firstIndex(of: "=") else {
                throw .malformedLine(source: source, line: number + 1, text: trimmed)
            }
            let key = trimmed[..<equals].trimmingCharacters(in: .whitespaces).replacingOccurrences(of: "_", with: "-")
            var value = trimmed[trimmed.index(after: equals)...].trimmingCharacters(in: .whitespaces)
            if value.count >= 2, value.hasPrefix("\""), value.hasSuffix("\"") { value = String(value.dropFirst().dropLast()) }
            if value.hasPrefix("\""), let close = value.dropFirst().firstIndex(of: "\"") {
                value = String(value[value.index(after: value.startIndex)..<close])   // "x" # comment
            }
            guard keys.contains(key) else { throw .unknownKey(source: "\(source):\(number + 1)", key: key) }
            settings.append((key, value))
        }
        return settings
    }
}

public enum ConfigurationError: Error, Equatable, CustomStringConvertible {
    case unknownKey(source: String, key: String)
    case badValue(source: String, key: String, value: String, expected: String)
    case malformedLine(source: String, line: Int, text: String)
    case unreadable(path: String, reason: String)

    public var description: String {
        switch self {
        case .unknownKey(let source, let key): "\(source): unknown setting '\(key)' (known: \(DaemonConfiguration.keys.joined(separator: ", ")))"
        case .badValue(let source, let key, let value, let expected): "\(source): \(key) = '\(value)': expected \(expected)"
        case .malformedLine(let source, let line, let text): "\(source):\(line): expected 'key = value', got '\(text)'"
        case .unreadable(let path, let reason): "cannot read config file \(path): \(reason)"
        }
    }
}
