import FoundationEssentials

/// One message as the daemon received it, after the JSON-RPC 2.0 envelope was checked.
public enum RPCInbound: Sendable, Equatable {
    /// Has an id: gets exactly one reply.
    case request(id: RPCID, method: String, params: JSONValue?)
    /// No id: never gets a reply, not even an error.
    case notification(method: String, params: JSONValue?)
    /// Not a valid request: reply with this error (id null when it could not be read).
    case invalid(id: RPCID, error: RPCError)

    /// Classifies one element (a whole message, or one element of a batch).
    public init(_ value: JSONValue) {
        guard case .object(let members) = value else {
            self = .invalid(id: .null, error: .invalidRequest("a request is a JSON object"))
            return
        }
        var id: RPCID?
        if let raw = members["id"] {
            guard let parsed = RPCID(raw) else {
                self = .invalid(id: .null, error: .invalidRequest("id must be a number, a string or null"))
                return
            }
            id = parsed
        }
        guard members["jsonrpc"] == .string("2.0") else {
            self = .invalid(id: id ?? .null, error: .invalidRequest("jsonrpc must be \"2.0\""))
            return
        }
        guard case .string(let method)? = members["method"] else {
            self = .invalid(id: id ?? .null, error: .invalidRequest("method must be a string"))
            return
        }
        let params = members["params"]
        if let id {
            self = .request(id: id, method: method, params: params)
        } else {
            self = .notification(method: method, params: params)
        }
    }
}

/// What one frame's bytes hold: a single message, a batch (JSON-RPC 2.0 §6), or
/// something that gets one error reply with id null.
public enum RPCPayload: Sendable, Equatable {
    case single(RPCInbound)
    case batch([RPCInbound])
    case failure(RPCError)

    /// Parses a frame. `maxBatch` bounds the elements of a batch (-32002 over it).
    public static func parse(_ bytes: some Collection<UInt8>, maxBatch: Int = 256) -> RPCPayload {
        let value: JSONValue
        do {
            value = try JSONDecoder().decode(JSONValue.self, from: Data(bytes))
        } catch {
            return .failure(.parseError("the message is not valid JSON"))
        }
        guard case .array(let elements) = value else { return .single(RPCInbound(value)) }
        guard !elements.isEmpty else { return .failure(.invalidRequest("an empty batch")) }
        guard elements.count <= maxBatch else { return .failure(.tooLarge("the batch", limit: maxBatch)) }
        return .batch(elements.map(RPCInbound.init))
    }
}

/// Builds outgoing message bodies (without framing). Keys come in a fixed order:
/// jsonrpc, id, then result or error (or method, params for a notification).
public enum RPCOutbound {
    /// A success reply; `result` is already-encoded JSON.
    public static func response(id: RPCID, rawResult result: [UInt8]) -> [UInt8] {
        var writer = JSONWriter()
        writer.raw(#"{"jsonrpc":"2.0","id":"#)
        writer.id(id)
        writer.raw(#","result":"#)
        writer.bytes.append(contentsOf: result)
        writer.raw("}")
        return writer.bytes
    }

    /// A success reply with an Encodable result.
    public static func response(id: RPCID, result: some Encodable) -> [UInt8] {
        do {
            return response(id: id, rawResult: [UInt8](try WireJSON.encode(result)))
        } catch {
            return self.error(id: id, .internalError("the result could not be encoded: \(error)"))
        }
    }

    /// An error reply.
    public static func error(id: RPCID, _ error: RPCError) -> [UInt8] {
        var writer = JSONWriter()
        writer.raw(#"{"jsonrpc":"2.0","id":"#)
        writer.id(id)
        writer.raw(#","error":"#)
        writer.bytes.append(contentsOf: (try? WireJSON.encode(error)).map { [UInt8]($0) }
            ?? Array(#"{"code":-32603,"message":"Internal error"}"#.utf8))
        writer.raw("}")
        return writer.bytes
    }

    /// A notification (no id, no reply expected).
    public static func notification(method: String, params: [UInt8]) -> [UInt8] {
        var writer = JSONWriter()
        writer.raw(#"{"jsonrpc":"2.0","method":"#)
        writer.string(method)
        writer.raw(#","params":"#)
        writer.bytes.append(contentsOf: params)
        writer.raw("}")
        return writer.bytes
    }

    /// The replies of a batch, as one JSON array.
    public static func batch(_ replies: [[UInt8]]) -> [UInt8] {
        var bytes: [UInt8] = [UInt8(ascii: "[")]
        for (i, reply) in replies.enumerated() {
            if i > 0 { bytes.append(UInt8(ascii: ",")) }
            bytes.append(contentsOf: reply)
        }
        bytes.append(UInt8(ascii: "]"))
        return bytes
    }
}

/// The method names of PROTOCOL.md.
public enum RPCMethod {
    public static let initialize = "initialize"
    public static let initialized = "initialized"
    public static let modelInfo = "model/info"
    public static let tokenize = "tokenize"
    public static let detokenize = "detokenize"
    public static let complete = "complete"
    public static let completeProgress = "complete/progress"
    public static let embed = "embed"
    public static let status = "status"
    public static let cancelRequest = "$/cancelRequest"
    public static let shutdown = "shutdown"
    public static let exit = "exit"

    /// Every request method the daemon answers (as `initialize` lists them).
    public static let all = [initialize, modelInfo, tokenize, detokenize, complete, embed, status,
                             cancelRequest, shutdown, exit]
}
