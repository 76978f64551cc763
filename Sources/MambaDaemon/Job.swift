import FalconMamba
import MambaRPC
import Synchronization

/// Why a job stops before its natural end.
enum CancelReason: Sendable, Equatable {
    /// `$/cancelRequest`.
    case request
    /// A newer request with the same `session`.
    case superseded
    /// The client went away: nothing is written back.
    case disconnected
    /// The daemon is shutting down.
    case shutdown

    var message: String {
        switch self {
        case .request: "by $/cancelRequest"
        case .superseded: "superseded by a newer request of the same session"
        case .disconnected: "the client disconnected"
        case .shutdown: "the daemon is shutting down"
        }
    }
}

/// How a job ended, handed to its connection.
enum JobOutcome: Sendable {
    case completion(CompleteResult)
    case embedding(EmbedResult)
    case failure(RPCError)
    /// The client disconnected: no reply.
    case dropped
}

/// A completion as the scheduler runs it: tokens already checked against the model.
struct CompletionRequest: Sendable {
    var prompt: [Int]
    var params: CompleteParams
    var seed: UInt64
}

/// An embedding request: one token list per input, none empty.
struct EmbeddingRequest: Sendable {
    var inputs: [[Int]]
    var pooling: EmbedParams.Pooling
    var normalize: Bool
}

/// One request's work, shared by the connection (which may cancel it) and the
/// scheduler thread (which runs it). Only the cancellation flag is mutable.
final class Job: Sendable {
    enum Work: Sendable {
        case complete(CompletionRequest)
        case embed(EmbeddingRequest)
    }

    let work: Work
    /// For logs: "conn/id".
    let label: String
    let received: ContinuousClock.Instant
    let deadline: ContinuousClock.Instant?
    /// A streamed text delta and its tokens (called on the scheduler thread).
    let onProgress: @Sendable (String, [Int]) -> Void
    /// Called exactly once (through `finish`), with the job itself.
    private let onFinish: @Sendable (Job, JobOutcome) -> Void
    private let cancellation = Mutex<CancelReason?>(nil)

    init(work: Work, label: String, received: ContinuousClock.Instant = .now, deadline: ContinuousClock.Instant? = nil,
         onProgress: @escaping @Sendable (String, [Int]) -> Void = { _, _ in },
         onFinish: @escaping @Sendable (Job, JobOutcome) -> Void) {
        self.work = work
        self.label = label
        self.received = received
        self.deadline = deadline
        self.onProgress = onProgress
        self.onFinish = onFinish
    }

    /// Asks the job to stop; the first reason wins. Takes effect at the next decode step.
    func cancel(_ reason: CancelReason) {
        cancellation.withLock { if $0 == nil { $0 = reason } }
    }

    var cancelReason: CancelReason? { cancellation.withLock { $0 } }

    /// Hands the outcome to the connection; the scheduler calls it once per job.
    func finish(_ outcome: JobOutcome) { onFinish(self, outcome) }
}
