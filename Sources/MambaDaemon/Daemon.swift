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
///
/// Under systemd (see docs/systemd.md): a socket-activated listening fd is adopted
/// instead of binding, clients wait in its backlog until the model is ready, and its
/// file is left to systemd; `Type=notify` hears STATUS= while loading (with
/// EXTEND_TIMEOUT_USEC while loading progresses), READY=1, WATCHDOG=1 after each round
/// trip through the scheduler, and STOPPING=1.
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
    private let watchdog = Mutex<Watchdog?>(nil)
    private let activated = Atomic<Bool>(false)

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
        let inherited = try Systemd.listeningSocket()
        activated.store(inherited != nil, ordering: .relaxed)
        if inherited == nil { try SocketListener.clearStale(configuration.socket) }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let channel: any Channel
        do {
            channel = try SocketListener.bind(path: configuration.socket, mode: configuration.socketMode, inherited: inherited,
                                              accepting: inherited == nil, group: group, context: context, registry: registry)
        } catch {
            try? group.syncShutdownGracefully()
            throw ServeError.socket("cannot listen on \(configuration.socket): \(error)")
        }
        server.withLock { $0 = channel }
        if let inherited {
            logger.info("listening", metadata: ["socket": "systemd fd \(inherited)", "accepting": "once ready"])
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
        let progress = StartupProgress()
        if Systemd.notificationsWanted { progress.start() }
        defer { progress.finish() }
        if configuration.debugLoadDelayMs > 0 {
            progress.phase("waiting \(configuration.debugLoadDelayMs) ms before loading (debug-load-delay-ms)")
            let end = ContinuousClock.now + .milliseconds(configuration.debugLoadDelayMs)
            while ContinuousClock.now < end {
                Thread.sleep(forTimeInterval: min(0.1, Double((end - ContinuousClock.now).milliseconds) / 1000))
                progress.step()
            }
        }
        let start = ContinuousClock.now
        do {
            let engine = try Engine.load(configuration, logger: logger, phase: progress.phase)
            host.ready(engine)
            guard case .ready = host.current else { return }   // a signal came while loading
            if activated.load(ordering: .relaxed), let channel = server.withLock({ $0 }) { SocketListener.startAccepting(channel) }
            Systemd.notify("READY=1\n" + Systemd.status("serving \(engine.info.name)"))
            startWatchdog(engine.scheduler)
            logger.info("ready", metadata: ["model": "\(engine.info.path)", "quantization": "\(engine.info.quantization)",
                                            "loadMs": "\(Int((ContinuousClock.now - start).milliseconds))"])
        } catch {
            logger.critical("cannot load the model", metadata: ["error": "\(error)"])
            Systemd.notify(Systemd.status("cannot load the model: \(error)"))
            exitCode.store(1, ordering: .relaxed)
            shutdown(reason: "model load failed")
        }
    }

    /// With `WatchdogSec=`, pings at half the timeout after each scheduler round trip.
    private func startWatchdog(_ scheduler: Scheduler) {
        guard let timeout = Systemd.watchdogTimeout() else { return }
        let dog = Watchdog(timeout: timeout, logger: logger, probe: { scheduler.heartbeat(timeout: $0) })
        watchdog.withLock { $0 = dog }
        dog.start()
        logger.info("watchdog on", metadata: ["pingEveryMs": "\(Int(dog.interval.milliseconds))"])
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
        watchdog.withLock { $0?.stop() }
        Systemd.notify("STOPPING=1\n" + Systemd.status("draining (\(reason))"))
        DispatchQueue.global().async { [self] in
            if let channel = server.withLock({ $0 }) { try? channel.close().wait() }
            if !activated.load(ordering: .relaxed) { unlink(configuration.socket) }   // systemd owns its own
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

/// Keeps the signal dispatch sources alive for the daemon's life
/// (set once, from one thread).
private final class SignalSources: @unchecked Sendable {
    private var sources: [any DispatchSourceProtocol] = []
    func keep(_ sources: [any DispatchSourceProtocol]) { self.sources = sources }
}
