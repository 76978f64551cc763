import Foundation
import Logging
import MambaRPC
import NIOCore
import NIOPosix
import Synchronization

/// Bytes only, on the event loop: frames the stream and hands messages to the
/// connection's queue.
final class ConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private var decoder: FrameDecoder
    private let connection: ClientConnection
    private var paused = false
    /// Bytes handed to the connection's queue and not yet handled: reading stops above it.
    let inboxLimit: Int

    init(connection: ClientConnection, limits: FrameLimits) {
        self.connection = connection
        decoder = FrameDecoder(limits: limits)
        inboxLimit = max(limits.maxMessageBytes, 1 << 20) * 2
    }

    func handlerAdded(context: ChannelHandlerContext) {
        let loop = context.eventLoop
        let handler = NIOLoopBound(self, eventLoop: loop)
        let contextBox = NIOLoopBound(context, eventLoop: loop)
        connection.onInboxDrained = {
            loop.execute { handler.value.resumeIfPossible(contextBox.value) }
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        deliver(decoder.feed(buffer.readableBytesView))
        // Backpressure: a client that sends faster than its messages are handled, or
        // does not read its replies, is not read from until that clears.
        if connection.inboxBytes > inboxLimit || !context.channel.isWritable { pause(context) }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        resumeIfPossible(context)
        context.fireChannelWritabilityChanged()
    }

    private func pause(_ context: ChannelHandlerContext) {
        guard !paused else { return }
        paused = true
        context.channel.setOption(ChannelOptions.autoRead, value: false).whenFailure { _ in }
    }

    func resumeIfPossible(_ context: ChannelHandlerContext) {
        guard paused, context.channel.isActive, context.channel.isWritable, connection.inboxBytes <= inboxLimit / 2 else { return }
        paused = false
        context.channel.setOption(ChannelOptions.autoRead, value: true).whenFailure { _ in }
        context.read()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, event == .inputClosed {
            deliver(decoder.finish())
            connection.inputEnded()
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        connection.channelClosed()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        connection.logger.debug("connection error", metadata: ["error": "\(error)"])
        context.close(promise: nil)
    }

    private func deliver(_ events: [FrameEvent]) {
        for event in events {
            switch event {
            case .detected(let framing): connection.detected(framing)
            case .message(let body): connection.received(body)
            case .fatal(let error, let framing): connection.fatal(error, framing: framing)
            }
        }
    }
}

/// The listening Unix socket: stale-file handling, permissions, accepting clients.
enum SocketListener {
    /// Removes a stale socket file; refuses when a live daemon answers on it, or when
    /// the path is something other than a socket.
    static func clearStale(_ path: String) throws(ServeError) {
        var info = stat()
        guard lstat(path, &info) == 0 else { return }
        guard (info.st_mode & S_IFMT) == S_IFSOCK else { throw .notASocket(path) }
        if canConnect(path) { throw .alreadyRunning(path) }
        unlink(path)
    }

    /// Whether something accepts connections on the Unix socket at `path`.
    static func canConnect(_ path: String) -> Bool {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { return false }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        return withUnsafePointer(to: &address) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) == 0 }
        }
    }

    /// Binds and listens (or adopts `inherited`, a socket systemd already listens on);
    /// each accepted client gets a `ClientConnection`. With `accepting: false` clients
    /// wait in the kernel's backlog until `startAccepting` (used under socket activation:
    /// the client that started the daemon waits for the model instead of getting -32003).
    static func bind(path: String, mode: Int, inherited: Int32?, accepting: Bool = true, group: any EventLoopGroup,
                     context: DaemonContext, registry: ConnectionRegistry) throws -> any Channel {
        let limits = context.configuration.frameLimits
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.autoRead, value: accepting)
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            .childChannelInitializer { channel in
                let connection = registry.add(channel: channel, context: context)
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ConnectionHandler(connection: connection, limits: limits))
                }
            }
        if let inherited { return try bootstrap.withBoundSocket(inherited).wait() }
        let channel = try bootstrap.bind(unixDomainSocketPath: path).wait()
        guard chmod(path, mode_t(mode)) == 0 else {
            throw ServeError.socket("cannot set mode \(String(mode, radix: 8)) on \(path): \(String(cString: strerror(errno)))")
        }
        return channel
    }

    /// Accepts the clients waiting in the backlog, and every later one.
    static func startAccepting(_ channel: any Channel) {
        channel.setOption(.autoRead, value: true).whenSuccess { channel.read() }
    }
}

/// Every open connection, for logging and for closing them at shutdown.
final class ConnectionRegistry: Sendable {
    private let state = Mutex<(next: Int, open: [Int: ClientConnection])>((1, [:]))

    func add(channel: any Channel, context: DaemonContext) -> ClientConnection {
        let connection = state.withLock { s in
            let c = ClientConnection(number: s.next, channel: channel, context: context)
            s.next += 1
            s.open[c.number] = c
            return c
        }
        connection.logger.debug("client connected")
        channel.closeFuture.whenComplete { [self] _ in
            _ = state.withLock { $0.open.removeValue(forKey: connection.number) }
            connection.logger.debug("client closed")
        }
        return connection
    }

    var open: [ClientConnection] { state.withLock { Array($0.open.values) } }
}
