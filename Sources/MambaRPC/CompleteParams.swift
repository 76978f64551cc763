/// Params of `complete` (PROTOCOL.md), with its defaults. Decoding checks types and
/// ranges; limits that depend on the daemon (vocabulary, maxTokens ceiling, prompt
/// length) are checked by the daemon.
public struct CompleteParams: Codable, Sendable, Equatable {
    public var prompt: String?
    public var tokens: [Int]?
    public var maxTokens: Int = 64
    public var temperature: Float = 0
    public var topK: Int = 0
    public var topP: Float = 1
    public var minP: Float = 0
    public var repeatPenalty: Float = 1
    public var repeatLastN: Int = 64
    public var seed: UInt64?
    public var stop: [String] = []
    public var singleLine: Bool = false
    public var stream: Bool = false
    public var logprobs: Int = 0
    public var deadlineMs: Int?
    public var cache: Bool = true
    public var session: String?

    public static let maxStopStrings = 16
    public static let maxStopBytes = 256
    public static let maxLogprobs = 20

    public init(prompt: String? = nil, tokens: [Int]? = nil, maxTokens: Int = 64) {
        self.prompt = prompt
        self.tokens = tokens
        self.maxTokens = maxTokens
    }

    enum CodingKeys: String, CodingKey {
        case prompt, tokens, maxTokens, temperature, topK, topP, minP, repeatPenalty, repeatLastN, seed
        case stop, singleLine, stream, logprobs, deadlineMs, cache, session
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        prompt = try c.optional(.prompt)
        tokens = try c.optional(.tokens)
        maxTokens = try c.value(.maxTokens, or: 64)
        temperature = try c.value(.temperature, or: 0)
        topK = try c.value(.topK, or: 0)
        topP = try c.value(.topP, or: 1)
        minP = try c.value(.minP, or: 0)
        repeatPenalty = try c.value(.repeatPenalty, or: 1)
        repeatLastN = try c.value(.repeatLastN, or: 64)
        seed = try c.optional(.seed)
        stop = try c.value(.stop, or: [])
        singleLine = try c.value(.singleLine, or: false)
        stream = try c.value(.stream, or: false)
        logprobs = try c.value(.logprobs, or: 0)
        deadlineMs = try c.optional(.deadlineMs)
        cache = try c.value(.cache, or: true)
        session = try c.optional(.session)
        try validate()
    }

    /// The range checks of PROTOCOL.md; -32602 with the field on failure.
    public func validate() throws(RPCError) {
        try Check.that((prompt == nil) != (tokens == nil), prompt == nil ? "tokens" : "prompt",
                       "give exactly one of prompt or tokens")
        try Check.that(maxTokens >= 0, "maxTokens", "must be >= 0")
        try Check.that(temperature.isFinite && temperature >= 0, "temperature", "must be >= 0")
        try Check.that(topK >= 0, "topK", "must be >= 0")
        try Check.that(topP > 0 && topP <= 1, "topP", "must be in (0, 1]")
        try Check.that(minP >= 0 && minP < 1, "minP", "must be in [0, 1)")
        try Check.that(repeatPenalty.isFinite && repeatPenalty > 0, "repeatPenalty", "must be > 0")
        try Check.that(repeatLastN >= 0, "repeatLastN", "must be >= 0")
        try Check.that(logprobs >= 0 && logprobs <= Self.maxLogprobs, "logprobs", "must be in [0, \(Self.maxLogprobs)]")
        try Check.that(deadlineMs.map { $0 > 0 } ?? true, "deadlineMs", "must be > 0")
        try Check.that(stop.count <= Self.maxStopStrings, "stop", "at most \(Self.maxStopStrings) strings")
        for (i, s) in stop.enumerated() {
            try Check.that(!s.isEmpty && s.utf8.count <= Self.maxStopBytes, "stop[\(i)]",
                           "must be 1 to \(Self.maxStopBytes) bytes")
        }
    }
}

/// The `complete/progress` notification's params: a text delta and its tokens.
public struct CompleteProgress: Codable, Sendable, Equatable {
    public var id: RPCID
    public var text: String
    public var tokens: [Int]

    public init(id: RPCID, text: String, tokens: [Int]) {
        self.id = id
        self.text = text
        self.tokens = tokens
    }
}
