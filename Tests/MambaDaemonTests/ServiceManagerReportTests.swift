import FalconMamba
import Foundation
import Logging
@testable import MambaDaemon
import MambaRPC
import Synchronization
import Testing

/// What the daemon tells systemd, without systemd: the scheduler's heartbeat, the
/// watchdog that pings only on it, and the start-timeout extensions while loading.
@Suite struct ServiceManagerReportTests {
    /// The heartbeat is a round trip through the real scheduler thread: answered while a
    /// long completion runs (between two steps), refused once the loop has stopped.
    @Test func heartbeatAnswersBetweenStepsAndNotAfterDrain() throws {
        let scheduler = SchedulerTests().scheduler()
        #expect(scheduler.heartbeat(timeout: .seconds(5)), "an idle scheduler wakes for it")
        let finished = DispatchSemaphore(value: 0)
        var params = CompleteParams(tokens: [1, 2, 3], maxTokens: 4000)
        params.cache = false
        try scheduler.submit(Job(work: .complete(CompletionRequest(prompt: [1, 2, 3], params: params, seed: 1)), label: "t/1",
                                 onFinish: { _, _ in finished.signal() }))
        #expect(scheduler.heartbeat(timeout: .seconds(5)), "a busy scheduler answers between steps")
        scheduler.drain(grace: .zero)
        #expect(finished.wait(timeout: .now() + 30) == .success)
        #expect(scheduler.waitUntilStopped(timeout: .seconds(10)))
        #expect(!scheduler.heartbeat(timeout: .milliseconds(100)), "a stopped loop answers nothing")
    }

    /// A probe that stops answering (a wedged scheduler) stops the pings; they resume
    /// when it answers again.
    @Test func watchdogPingsOnlyWhileTheSchedulerAnswers() {
        let answering = Atomic<Bool>(true)
        let pings = Atomic<Int>(0)
        let watchdog = Watchdog(timeout: .milliseconds(100), logger: Logger(label: "test"), probe: { wait in
            if answering.load(ordering: .relaxed) { return true }
            Thread.sleep(forTimeInterval: Double(wait.components.seconds) + Double(wait.components.attoseconds) / 1e18)
            return false
        }, ping: { pings.add(1, ordering: .relaxed) })
        #expect(watchdog.interval == .milliseconds(50), "half of the timeout")
        watchdog.start()
        defer { watchdog.stop() }
        Thread.sleep(forTimeInterval: 0.5)
        #expect(pings.load(ordering: .relaxed) >= 3)
        answering.store(false, ordering: .relaxed)
        Thread.sleep(forTimeInterval: 0.2)   // a probe already answered may still ping
        let wedged = pings.load(ordering: .relaxed)
        Thread.sleep(forTimeInterval: 0.5)
        #expect(pings.load(ordering: .relaxed) == wedged, "no pings while the scheduler is wedged")
        answering.store(true, ordering: .relaxed)
        Thread.sleep(forTimeInterval: 0.5)
        #expect(pings.load(ordering: .relaxed) > wedged, "pings resume")
    }

    /// STATUS= for each phase at once; EXTEND_TIMEOUT_USEC each second that saw progress,
    /// none for a second that did not (so a hung load still meets TimeoutStartSec=).
    @Test func startTimeoutIsExtendedOnlyWhileLoadingProgresses() {
        let sent = Mutex<[String]>([])
        let resident = Atomic<Int>(1 << 20)
        let progress = StartupProgress(send: { message in sent.withLock { $0.append(message) } },
                                       residentBytes: { resident.load(ordering: .relaxed) })
        progress.start()
        defer { progress.finish() }
        progress.phase("mapping the model:\nsecond line")
        #expect(sent.withLock { $0 } == ["STATUS=mapping the model: second line"], "one line, sent at once")
        Thread.sleep(forTimeInterval: 1.5)
        let extend = "EXTEND_TIMEOUT_USEC=10000000"
        #expect(sent.withLock { $0.filter { $0 == extend }.count } == 1, "the phase was progress")
        Thread.sleep(forTimeInterval: 1.0)
        #expect(sent.withLock { $0.filter { $0 == extend }.count } == 1, "a second without progress extends nothing")
        resident.add(4096, ordering: .relaxed)   // weights being paged in
        Thread.sleep(forTimeInterval: 1.0)
        #expect(sent.withLock { $0.filter { $0 == extend }.count } == 2, "growing memory is progress")
    }
}
