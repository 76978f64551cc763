/// A JSON-RPC error object with the codes of PROTOCOL.md. `data` is kept as JSON.
public struct RPCError: Error, Sendable, Equatable, Codable, CustomStringConvertible {
    public var code: Int
    public var message: String
    public var data: JSONValue?

    public init(code: Int, message: String, data: JSONValue? = nil) {
        self.code = code
        self.message = message
        self.data = data
    }

    public enum Code {
        public static let parseError = -32700
        public static let invalidRequest = -32600
        public static let methodNotFound = -32601
        public static let invalidParams = -32602
        public static let internalError = -32603
        public static let cancelled = -32800
        public static let overloaded = -32001
        public static let tooLarge = -32002
        public static let notReady = -32003
    }

    public static func parseError(_ reason: String) -> RPCError {
        RPCError(code: Code.parseError, message: "Parse error: \(reason)")
    }

    public static func invalidRequest(_ reason: String) -> RPCError {
        RPCError(code: Code.invalidRequest, message: "Invalid request: \(reason)")
    }

    public static func methodNotFound(_ method: String) -> RPCError {
        RPCError(code: Code.methodNotFound, message: "Method not found: \(method)")
    }

    /// Bad params: `data: {field, reason}`.
    public static func invalidParams(field: String, reason: String) -> RPCError {
        RPCError(code: Code.invalidParams, message: "Invalid params: \(field.isEmpty ? "params" : field) \(reason)",
                 data: .object(["field": .string(field), "reason": .string(reason)]))
    }

    public static func internalError(_ reason: String) -> RPCError {
        RPCError(code: Code.internalError, message: "Internal error: \(reason)")
    }

    /// Cancelled, with what was produced so far: `data: {text, tokens}`.
    public static func cancelled(_ reason: String, text: String, tokens: [Int]) -> RPCError {
        RPCError(code: Code.cancelled, message: "Request cancelled: \(reason)",
                 data: .object(["text": .string(text), "tokens": .array(tokens.map { .integer(Int64($0)) })]))
    }

    public static func overloaded(retryAfterMs: Int) -> RPCError {
        RPCError(code: Code.overloaded, message: "Server overloaded: the queue is full",
                 data: .object(["retryAfterMs": .integer(Int64(retryAfterMs))]))
    }

    public static func tooLarge(_ what: String, limit: Int) -> RPCError {
        RPCError(code: Code.tooLarge, message: "Too large: \(what) is over the limit of \(limit)",
                 data: .object(["limit": .integer(Int64(limit))]))
    }

    public static func notReady(_ reason: String = "the model is still loading") -> RPCError {
        RPCError(code: Code.notReady, message: "Not ready: \(reason)")
    }

    public var description: String { "\(code) \(message)" }
}
