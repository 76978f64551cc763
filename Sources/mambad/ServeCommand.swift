import ArgumentParser
import FalconMamba
import Foundation
import Logging
import MambaDaemon

struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve the model over JSON-RPC 2.0 on a Unix socket (PROTOCOL.md).",
        discussion: """
            Settings come from the config file (--config, default \(DaemonConfiguration.defaultConfigFile) \
            when it exists: `key = value` lines, `#` comments, the keys are the long flag names) and from \
            flags, which win. SIGTERM or SIGINT drains: no new connections, running requests get \
            --shutdown-grace-ms to finish, then the socket file is removed and mambad exits 0.
            """)

    @Option(help: ArgumentHelp("A Hugging Face model folder (config.json, *.safetensors).", valueName: "dir"))
    var model: String?

    @Option(help: ArgumentHelp("The Unix socket to listen on (default $XDG_RUNTIME_DIR/mambad.sock).", valueName: "path"))
    var socket: String?

    @Option(help: ArgumentHelp("Config file (default \(DaemonConfiguration.defaultConfigFile) if present).", valueName: "file"))
    var config: String?

    @Option(name: .customLong("socket-mode"), help: ArgumentHelp("Socket file permissions, octal (default 0660).", valueName: "mode"))
    var socketMode: String?

    @Option(help: ArgumentHelp("4-bit products: fast (int8 activations) or exact (bitsandbytes-identical).", valueName: "fast|exact"))
    var precision: String?

    @Option(name: .customLong("lm-head"), help: LMHeadPrecision.optionHelp)
    var lmHead: String?

    @Option(name: .customLong("packed-cache"), help: ArgumentHelp(
        "Folder for packed weights kept between starts, or none (default $CACHE_DIRECTORY, else ~/.cache/mambad).", valueName: "dir"))
    var packedCache: String?

    @Option(help: ArgumentHelp("Compute threads (default: one per core).", valueName: "n"))
    var threads: String?

    @Option(help: ArgumentHelp(
        "How the decode products prefetch their weights: 0 (not at all), BYTES or l2:BYTES (that far ahead into L2), nta:BYTES (non-temporal), or auto: raced on the decode steps (default auto, or MAMBAD_PREFETCH).",
        valueName: "auto|plan"))
    var prefetch: String?

    @Option(name: .customLong("max-active"), help: ArgumentHelp("Requests run at once; their decode steps share passes over the weights (default 8).", valueName: "n"))
    var maxActive: String?

    @Option(name: .customLong("max-queue"), help: ArgumentHelp("Requests waiting behind those; more get -32001 (default 64).", valueName: "n"))
    var maxQueue: String?

    @Option(name: .customLong("max-message-bytes"), help: ArgumentHelp("Largest message (default 8M).", valueName: "bytes"))
    var maxMessageBytes: String?

    @Option(name: .customLong("max-header-bytes"), help: ArgumentHelp("Largest LSP header block (default 8K).", valueName: "bytes"))
    var maxHeaderBytes: String?

    @Option(name: .customLong("max-batch"), help: ArgumentHelp("Most elements in a JSON-RPC batch (default 64).", valueName: "n"))
    var maxBatch: String?

    @Option(name: .customLong("max-pending-per-connection"), help: ArgumentHelp("Unanswered requests one connection may have (default 256).", valueName: "n"))
    var maxPendingPerConnection: String?

    @Option(name: .customLong("max-prompt-tokens"), help: ArgumentHelp("Longest prompt (default 32768).", valueName: "n"))
    var maxPromptTokens: String?

    @Option(name: .customLong("max-completion-tokens"), help: ArgumentHelp("Largest maxTokens (default 8192).", valueName: "n"))
    var maxCompletionTokens: String?

    @Option(name: .customLong("cache-bytes"), help: ArgumentHelp("Memory for prompt-state snapshots (default 1G).", valueName: "bytes"))
    var cacheBytes: String?

    @Option(name: .customLong("prefill-chunk"), help: ArgumentHelp("Prompt tokens per slice while others decode (default 16).", valueName: "n"))
    var prefillChunk: String?

    @Option(name: .customLong("shutdown-grace-ms"), help: ArgumentHelp("Time running work gets to finish at shutdown (default 5000).", valueName: "ms"))
    var shutdownGraceMs: String?

    @Option(name: .customLong("log-level"), help: ArgumentHelp("trace, debug, info, notice, warning, error or critical (default info).", valueName: "level"))
    var logLevel: String?

    @Option(name: .customLong("debug-load-delay-ms"), help: .hidden)
    var debugLoadDelayMs: String?

    func run() throws {
        var settings = DaemonConfiguration(environment: ProcessInfo.processInfo.environment)
        do {
            let file = config ?? (FileManager.default.fileExists(atPath: DaemonConfiguration.defaultConfigFile)
                ? DaemonConfiguration.defaultConfigFile : nil)
            if let file {
                guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
                    throw ConfigurationError.unreadable(path: file, reason: "missing or not UTF-8")
                }
                try settings.apply(DaemonConfiguration.parseFile(text, source: file), source: file)
            }
            let flags: [(String, String?)] = [
                ("model", model), ("socket", socket), ("socket-mode", socketMode), ("precision", precision),
                ("lm-head", lmHead), ("packed-cache", packedCache), ("threads", threads), ("prefetch", prefetch), ("max-active", maxActive), ("max-queue", maxQueue),
                ("max-message-bytes", maxMessageBytes), ("max-header-bytes", maxHeaderBytes), ("max-batch", maxBatch),
                ("max-pending-per-connection", maxPendingPerConnection), ("max-prompt-tokens", maxPromptTokens),
                ("max-completion-tokens", maxCompletionTokens), ("cache-bytes", cacheBytes), ("prefill-chunk", prefillChunk),
                ("shutdown-grace-ms", shutdownGraceMs), ("log-level", logLevel), ("debug-load-delay-ms", debugLoadDelayMs),
            ]
            try settings.apply(flags.compactMap { key, value in value.map { (key, $0) } }, source: "command line")
        } catch {
            throw ValidationError("\(error)")
        }
        guard settings.model != nil else { throw ValidationError("no model: give --model DIR or model = DIR in the config file") }
        let level = settings.logLevel
        LoggingSystem.bootstrap { label in StderrLogHandler(label: label, level: level) }
        let daemon = Daemon(configuration: settings, version: Mambad.configuration.version)
        let code: Int32
        do {
            code = try daemon.run()
        } catch {
            FileHandle.standardError.write(Data("mambad: \(error)\n".utf8))
            throw ExitCode(1)
        }
        if code != 0 { throw ExitCode(code) }
    }
}
