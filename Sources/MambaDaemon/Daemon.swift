import Foundation
import Logging
import MambaRPC
import NIOCore
import NIOPosix
import Synchronization

/// `mambad serve`: binds the socket, loads the model in the background (requests get
/// -32003 until it is ready), serves until SIGTERM/SIGINT, then drains: stops
/// accepting, lets running work finish for up to `shutdownGraceMs` (then cancels it),
/// answers, removes the socket file and returns 0.
public final class Daemon: Sendable {
    let configuration: DaemonConfiguration
    let logger: Logger
    let host = ModelHost()
    let context: DaemonContext
    let registry = ConnectionRegistry()
    private let done = DispatchSemaphore(value: 0)
    private let exitCode = Atomic<Int32>(0)
    private let server = Mutex<(any Channel)?>(nil)
    private let signalSources = SignalSources()
    private let watchdog = SignalSources()
    private let ownsSocketFile = Atomic<Bool>(true)

    public init(configuration: DaemonConfiguration, version: String) {
        self.configuration = configuration
        var logger = Logger(label: "mambad")
        logger.logLevel = configuration.logLevel
        self.logger = logger
        context = DaemonContext(configuration: configuration, host: host, logger: logger, version: version)
    }

    /// Runs until a signal (0) or a failed model load (1).
    public func run() throws -> Int32 {
        signal(SIGPIPE, SIG_IGN)
        let inherited = Systemd.inheritedSocket()
        ownsSocketFile.store(inherited == nil, ordering: .relaxed)
        if inherited == nil { try SocketListener.clearStale(configuration.socket) }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let channel: any Channel
        do {
            channel = try SocketListener.bind(path: configuration.socket, mode: configuration.socketMode, inherited: inherited,
                                              group: group, context: context, registry: registry)
        } catch {
            try? group.syncShutdownGracefully()
            throw ServeError.socket("cannot listen on \(configuration.socket): \(error)")
        }
        server.withLock { $0 = channel }
        if let inherited {
            logger.info("listening", metadata: ["socket": "systemd fd \(inherited)"])
        } else {
            logger.info("listening", metadata: ["socket": "\(configuration.socket)", "mode": "\(String(configuration.socketMode, radix: 8))"])
        }
        installSignalHandlers()

        let loader = Thread { [self] in load() }
        loader.name = "mambad-loader"
        loader.start()

        done.wait()
        try? group.syncShutdownGracefully()
        logger.info("stopped")
        return exitCode.load(ordering: .relaxed)
    }

    private func load() {
        if configuration.debugLoadDelayMs > 0 { Thread.sleep(forTimeInterval: Double(configuration.debugLoadDelayMs) / 1000) }
        let start = ContinuousClock.now
        do {
            let engine = try Engine.load(configuration, logger: logger)
            host.ready(engine)
            Systemd.notify("READY=1\nSTATUS=serving \(engine.info.name)")
            watchdog.keep(Systemd.startWatchdog { [host] in if case .ready = host.current { true } else { false } })
            logger.info("ready", metadata: ["model": "\(engine.info.path)", "quantization": "\(engine.info.quantization)",
                                            "loadMs": "\(Int((ContinuousClock.now - start).milliseconds))"])
        } catch {
            logger.critical("cannot load the model", metadata: ["error": "\(error)"])
            exitCode.store(1, ordering: .relaxed)
            shutdown(reason: "model load failed")
        }
    }

    private func installSignalHandlers() {
        var sources: [any DispatchSourceSignal] = []
        for number in [SIGTERM, SIGINT] {
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { [self] in shutdown(reason: number == SIGTERM ? "SIGTERM" : "SIGINT") }
            source.resume()
            sources.append(source)
        }
        signalSources.keep(sources)
    }

    /// Stop accepting, drain, answer, remove the socket, let `run` return.
    func shutdown(reason: String) {
        let (first, engine) = host.beginDraining()
        guard first else { return }
        logger.info("draining", metadata: ["reason": "\(reason)", "graceMs": "\(configuration.shutdownGraceMs)"])
        Systemd.notify("STOPPING=1")
        DispatchQueue.global().async { [self] in
            if let channel = server.withLock({ $0 }) { try? channel.close().wait() }
            if ownsSocketFile.load(ordering: .relaxed) { unlink(configuration.socket) }   // systemd owns its own
            if let engine {
                engine.scheduler.drain(grace: .milliseconds(configuration.shutdownGraceMs))
                if !engine.scheduler.waitUntilStopped(timeout: .milliseconds(configuration.shutdownGraceMs + 2_000)) {
                    logger.warning("work did not stop in time")
                }
            }
            // Replies are written from each connection's queue: let them go out, then close.
            for connection in registry.open {
                connection.queue.sync {}
                try? connection.channel.close().wait()
            }
            done.signal()
        }
    }
}

/// Keeps dispatch sources (signals, the watchdog timer) alive for the daemon's life
/// (set once, from one thread).
private final class SignalSources: @unchecked Sendable {
    private var sources: [any DispatchSourceProtocol] = []
    func keep(_ sources: [any DispatchSourceProtocol]) { self.sources = sources }
    func keep(_ source: (any DispatchSourceProtocol)?) { if let source { sources = [source] } }
}
