import Foundation
import Logging
import Synchronization

/// Tells the service manager how loading goes: `STATUS=` for each phase, and
/// `EXTEND_TIMEOUT_USEC` once a second while loading makes progress (a new phase, a
/// step, or resident memory growing as the weights are paged in or converted). A slow
/// disk therefore does not run into `TimeoutStartSec=`, while a load that hangs stops
/// the extensions and still does.
final class StartupProgress: Sendable {
    static let tick: Duration = .seconds(1)
    /// How long each extension gives: several ticks, so one late tick does no harm.
    static let extensionLength: Duration = .seconds(10)

    private let steps = Atomic<Int>(0)
    private let finished = DispatchSemaphore(value: 0)
    private let send: @Sendable (String) -> Void
    private let residentBytes: @Sendable () -> Int

    init(send: @escaping @Sendable (String) -> Void = Systemd.notify,
         residentBytes: @escaping @Sendable () -> Int = ModelHost.residentBytes) {
        self.send = send
        self.residentBytes = residentBytes
    }

    /// Starts the once-a-second check (on its own thread) until `finish`.
    func start() {
        let initial = (steps: steps.load(ordering: .relaxed), resident: residentBytes())   // before any phase
        let thread = Thread { [self] in
            var last = initial
            while finished.wait(timeout: .now() + .milliseconds(Int(Self.tick.milliseconds))) == .timedOut {
                let now = (steps: steps.load(ordering: .relaxed), resident: residentBytes())
                if now.steps != last.steps || now.resident > last.resident {
                    send("EXTEND_TIMEOUT_USEC=\(Self.extensionLength.microseconds)")
                }
                last = now
            }
        }
        thread.name = "mambad-startup"
        thread.start()
    }

    /// A new phase of loading, shown by `systemctl status`.
    func phase(_ status: String) {
        steps.add(1, ordering: .relaxed)
        send(Systemd.status(status))
    }

    /// Progress within a phase.
    func step() { steps.add(1, ordering: .relaxed) }

    func finish() { finished.signal() }
}

/// Pings the systemd watchdog (`WATCHDOG=1`) at half its timeout, but only after a no-op
/// round trip through the scheduler thread came back (`probe`), so a wedged scheduler
/// stops the pings and systemd restarts the service, even though the event loop and
/// this thread still run.
final class Watchdog: Sendable {
    let interval: Duration
    private let probe: @Sendable (Duration) -> Bool
    private let ping: @Sendable () -> Void
    private let logger: Logger
    private let stopped = DispatchSemaphore(value: 0)

    /// `timeout` is systemd's (WATCHDOG_USEC); pings go out every half of it.
    init(timeout: Duration, logger: Logger, probe: @escaping @Sendable (Duration) -> Bool,
         ping: @escaping @Sendable () -> Void = { Systemd.notify("WATCHDOG=1") }) {
        interval = timeout / 2
        self.probe = probe
        self.ping = ping
        self.logger = logger
    }

    func start() {
        let thread = Thread { [self] in run() }
        thread.name = "mambad-watchdog"
        thread.start()
    }

    func stop() { stopped.signal() }

    private func run() {
        var missed = false
        while true {
            let started = ContinuousClock.now
            if probe(interval) {
                ping()
                if missed { logger.notice("the scheduler answers again: watchdog pings resumed") }
                missed = false
            } else if !missed {
                logger.error("the scheduler did not come round in time: no watchdog ping", metadata: ["waitedMs": "\(Int(interval.milliseconds))"])
                missed = true
            }
            let left = interval - (ContinuousClock.now - started)
            if stopped.wait(timeout: .now() + .milliseconds(max(0, Int(left.milliseconds)))) == .success { return }
        }
    }
}

extension Duration {
    var microseconds: Int64 { components.seconds * 1_000_000 + components.attoseconds / 1_000_000_000_000 }
}
