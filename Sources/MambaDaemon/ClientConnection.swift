import Dispatch
import Logging
import MambaRPC
import NIOCore
import Synchronization

/// What every connection shares: the model host, settings, sessions, logging.
final class DaemonContext: Sendable {
    let configuration: DaemonConfiguration
    let host: ModelHost
    let sessions = SessionRegistry()
    let logger: Logger
    let version: String

    init(configuration: DaemonConfiguration, host: ModelHost, logger: Logger, version: String) {
        self.configuration = configuration
        self.host = host
        self.logger = logger
        self.version = version
    }
}

/// `session` keys of running requests: a new request with the same key cancels the old one.
final class SessionRegistry: Sendable {
    private let jobs = Mutex<[String: Job]>([:])

    func supersede(_ session: String, with job: Job) {
        let previous = jobs.withLock { map in
            defer { map[session] = job }
            return map[session]
        }
        previous?.cancel(.superseded)
    }

    func finished(_ session: String, _ job: Job) {
        jobs.withLock { map in if map[session] === job { map[session] = nil } }
    }
}

/// One client. Bytes arrive on the NIO event loop and are framed there; everything
/// else (JSON, tokenization, replies) runs on this connection's serial queue, so the
/// messages of a connection are handled in the order they came. Replies go out when
/// ready (out of order across requests) and never to a closed channel.
final class ClientConnection: @unchecked Sendable {
    let number: Int
    let channel: any Channel
    let context: DaemonContext
    let queue: DispatchQueue
    let logger: Logger

    // Confined to `queue`.
    private(set) var framing = Framing.ndjson
    private var pendingReplies = 0
    private var inputClosed = false
    private var closing = false

    /// Requests in flight by id: `$/cancelRequest` and a disconnect reach them here.
    let inflight = Mutex<[RPCID: Job]>([:])
    private let disconnected = Atomic<Bool>(false)
    /// Bytes received and not yet handled on the queue (for read backpressure).
    private let inbox = Atomic<Int>(0)
    /// Set once by the channel handler: called when the inbox has drained.
    nonisolated(unsafe) var onInboxDrained: @Sendable () -> Void = {}

    var inboxBytes: Int { inbox.load(ordering: .relaxed) }

    init(number: Int, channel: any Channel, context: DaemonContext) {
        self.number = number
        self.channel = channel
        self.context = context
        queue = DispatchQueue(label: "mambad.connection.\(number)")
        var logger = context.logger
        logger[metadataKey: "conn"] = "\(number)"
        self.logger = logger
    }

    // MARK: From the event loop

    func detected(_ framing: Framing) {
        queue.async { self.framing = framing }
        logger.debug("framing detected", metadata: ["framing": "\(framing.rawValue)"])
    }

    func received(_ body: [UInt8]) {
        let at = ContinuousClock.now
        inbox.add(body.count, ordering: .relaxed)
        queue.async {
            self.handle(body, receivedAt: at)
            if self.inbox.subtract(body.count, ordering: .relaxed).newValue == 0 { self.onInboxDrained() }
        }
    }

    /// The stream is broken (bad framing, oversize): one error, then close.
    func fatal(_ error: RPCError, framing: Framing) {
        logger.warning("closing connection", metadata: ["error": "\(error)"])
        queue.async {
            self.framing = framing
            self.closing = true
            guard !self.disconnected.load(ordering: .relaxed) else { return }
            let bytes = framing.frame(RPCOutbound.error(id: .null, error))
            let channel = self.channel
            channel.writeAndFlush(channel.allocator.buffer(bytes: bytes)).whenComplete { _ in channel.close(promise: nil) }
        }
    }

    /// The client shut its write side: answer what is pending, then close.
    func inputEnded() {
        queue.async {
            self.inputClosed = true
            self.closeIfDone()
        }
    }

    /// The connection is gone: stop its work, write nothing more.
    func channelClosed() {
        disconnected.store(true, ordering: .relaxed)
        let jobs = inflight.withLock { map in
            defer { map.removeAll() }
            return Array(map.values)
        }
        for job in jobs { job.cancel(.disconnected) }
        if !jobs.isEmpty { logger.info("client disconnected, work cancelled", metadata: ["requests": "\(jobs.count)"]) }
    }

    // MARK: Replies (on `queue`)

    /// Where the reply of one request goes: straight out, or into its batch's array.
    enum Slot: @unchecked Sendable {
        case direct
        case batch(BatchReplies, Int)
    }

    final class BatchReplies: @unchecked Sendable {
        var replies: [[UInt8]?]
        var missing: Int
        init(count: Int) {
            replies = Array(repeating: nil, count: count)
            missing = count
        }
    }

    func reply(_ body: [UInt8], to slot: Slot) {
        dispatchPrecondition(condition: .onQueue(queue))
        switch slot {
        case .direct:
            write(body)
            pendingReplies -= 1
        case .batch(let batch, let index):
            batch.replies[index] = body
            batch.missing -= 1
            if batch.missing == 0 {
                write(RPCOutbound.batch(batch.replies.compactMap { $0 }))
                pendingReplies -= 1
            }
        }
        closeIfDone()
    }

    func write(_ body: [UInt8]) {
        guard !body.isEmpty, !disconnected.load(ordering: .relaxed), !closing else { return }
        channel.writeAndFlush(channel.allocator.buffer(bytes: framing.frame(body)), promise: nil)
    }

    /// A notification that is not a reply (e.g. `complete/progress`).
    func notify(_ method: String, params: some Encodable) {
        guard let data = try? WireJSON.encode(params) else { return }
        write(RPCOutbound.notification(method: method, params: Array(data)))
    }

    func close() {
        closing = true
        channel.close(promise: nil)
    }

    private func closeIfDone() {
        if inputClosed, pendingReplies == 0, !closing { close() }
    }

    // MARK: Messages

    private func handle(_ body: [UInt8], receivedAt: ContinuousClock.Instant) {
        guard !closing else { return }
        switch RPCPayload.parse(body, maxBatch: context.configuration.maxBatch) {
        case .failure(let error):
            pendingReplies += 1
            reply(RPCOutbound.error(id: .null, error), to: .direct)
        case .single(let message):
            if case .notification = message {} else { pendingReplies += 1 }
            dispatch(message, slot: .direct, receivedAt: receivedAt)
        case .batch(let messages):
            let requests = messages.filter { if case .notification = $0 { false } else { true } }.count
            let batch = BatchReplies(count: requests)
            if requests > 0 { pendingReplies += 1 }
            var index = 0
            for message in messages {
                if case .notification = message {
                    dispatch(message, slot: .direct, receivedAt: receivedAt)
                } else {
                    dispatch(message, slot: .batch(batch, index), receivedAt: receivedAt)
                    index += 1
                }
            }
        }
    }

    private func dispatch(_ message: RPCInbound, slot: Slot, receivedAt: ContinuousClock.Instant) {
        switch message {
        case .invalid(let id, let error):
            reply(RPCOutbound.error(id: id, error), to: slot)
        case .notification(let method, let params):
            handleNotification(method, params: params)
        case .request(let id, let method, let params):
            if pendingReplies > context.configuration.maxPendingPerConnection {
                reply(RPCOutbound.error(id: id, .overloaded(retryAfterMs: 100)), to: slot)
                return
            }
            do {
                try handleRequest(id: id, method: method, params: params, slot: slot, receivedAt: receivedAt)
            } catch {
                if error.code == RPCError.Code.internalError {
                    logger.error("internal error", metadata: ["req": "\(id)", "method": "\(method)", "error": "\(error)"])
                } else {
                    logger.debug("request refused", metadata: ["req": "\(id)", "method": "\(method)", "error": "\(error)"])
                }
                reply(RPCOutbound.error(id: id, error), to: slot)
            }
        }
    }
}
