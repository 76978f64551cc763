import CSystemd
import Foundation

/// What systemd gives and wants, when it is there (all calls are no-ops otherwise):
/// a listening socket from socket activation (fd 3), readiness and stopping
/// notifications for `Type=notify`, and watchdog pings.
enum Systemd {
    /// The listening socket passed by socket activation, if any (LISTEN_FDS/LISTEN_PID).
    static func inheritedSocket() -> Int32? {
        let count = sd_listen_fds(1)
        guard count >= 1 else { return nil }
        let fd = SD_LISTEN_FDS_START
        guard sd_is_socket_unix(fd, Int32(SOCK_STREAM.rawValue), 1, nil, 0) > 0 else { return nil }
        return fd
    }

    static func notify(_ state: String) {
        _ = sd_notify(0, state)
    }

    /// Pings the watchdog at half its interval while `alive` says the scheduler moves.
    static func startWatchdog(alive: @escaping @Sendable () -> Bool) -> (any DispatchSourceTimer)? {
        var microseconds: UInt64 = 0
        guard sd_watchdog_enabled(0, &microseconds) > 0, microseconds > 0 else { return nil }
        let timer = DispatchSource.makeTimerSource(queue: .global())
        let interval = DispatchTimeInterval.microseconds(Int(microseconds / 2))
        timer.schedule(deadline: .now() + interval, repeating: interval)
        timer.setEventHandler { if alive() { notify("WATCHDOG=1") } }
        timer.resume()
        return timer
    }
}
