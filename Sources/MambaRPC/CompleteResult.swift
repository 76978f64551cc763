/// The result of `complete` (PROTOCOL.md): what the daemon returns and what
/// `mambad run --json` prints, field for field.
public struct CompleteResult: Codable, Sendable, Equatable {
    public enum FinishReason: String, Codable, Sendable {
        case stop, length, deadline
    }

    public struct Usage: Codable, Sendable, Equatable {
        public var promptTokens: Int
        public var cachedTokens: Int
        public var completionTokens: Int

        public init(promptTokens: Int, cachedTokens: Int, completionTokens: Int) {
            self.promptTokens = promptTokens
            self.cachedTokens = cachedTokens
            self.completionTokens = completionTokens
        }
    }

    /// Milliseconds, except tokensPerSecond (generated tokens over decode time).
    public struct Timings: Codable, Sendable, Equatable {
        public var queueMs: Double
        public var prefillMs: Double
        public var firstTokenMs: Double
        public var decodeMs: Double
        public var tokensPerSecond: Double

        public init(queueMs: Double, prefillMs: Double, firstTokenMs: Double, decodeMs: Double, tokensPerSecond: Double) {
            self.queueMs = queueMs
            self.prefillMs = prefillMs
            self.firstTokenMs = firstTokenMs
            self.decodeMs = decodeMs
            self.tokensPerSecond = tokensPerSecond
        }
    }

    public struct Alternative: Codable, Sendable, Equatable {
        public var token: Int
        public var text: String
        public var logprob: Float

        public init(token: Int, text: String, logprob: Float) {
            self.token = token
            self.text = text
            self.logprob = logprob
        }
    }

    public struct TokenLogprob: Codable, Sendable, Equatable {
        public var token: Int
        public var text: String
        public var logprob: Float
        /// The most likely tokens at this position, most likely first.
        public var top: [Alternative]

        public init(token: Int, text: String, logprob: Float, top: [Alternative]) {
            self.token = token
            self.text = text
            self.logprob = logprob
            self.top = top
        }
    }

    public var text: String
    public var tokens: [Int]
    public var finishReason: FinishReason
    public var usage: Usage
    public var timings: Timings
    /// Present only when the request asked for logprobs.
    public var logprobs: [TokenLogprob]?

    public init(text: String, tokens: [Int], finishReason: FinishReason, usage: Usage, timings: Timings,
                logprobs: [TokenLogprob]? = nil) {
        self.text = text
        self.tokens = tokens
        self.finishReason = finishReason
        self.usage = usage
        self.timings = timings
        self.logprobs = logprobs
    }
}

extension CompleteResult {
    /// The same JSON as `WireJSON.encode(self)` (sorted keys), written by hand: a long
    /// completion with logprobs holds thousands of objects, and NaN or infinity can
    /// never reach the wire.
    public var json: [UInt8] {
        var w = JSONWriter(capacity: 256 + tokens.count * 8 + (logprobs?.count ?? 0) * 64)
        w.raw(#"{"finishReason":"#)
        w.string(finishReason.rawValue)
        if let logprobs {
            w.raw(#","logprobs":["#)
            for (i, entry) in logprobs.enumerated() {
                if i > 0 { w.raw(",") }
                w.raw(#"{"logprob":"#)
                w.float(entry.logprob)
                w.raw(#","text":"#)
                w.string(entry.text)
                w.raw(#","token":"#)
                w.integer(entry.token)
                w.raw(#","top":["#)
                for (j, alternative) in entry.top.enumerated() {
                    if j > 0 { w.raw(",") }
                    w.raw(#"{"logprob":"#)
                    w.float(alternative.logprob)
                    w.raw(#","text":"#)
                    w.string(alternative.text)
                    w.raw(#","token":"#)
                    w.integer(alternative.token)
                    w.raw("}")
                }
                w.raw("]}")
            }
            w.raw("]")
        }
        w.raw(#","text":"#)
        w.string(text)
        w.raw(#","timings":{"decodeMs":"#)
        w.double(timings.decodeMs)
        w.raw(#","firstTokenMs":"#)
        w.double(timings.firstTokenMs)
        w.raw(#","prefillMs":"#)
        w.double(timings.prefillMs)
        w.raw(#","queueMs":"#)
        w.double(timings.queueMs)
        w.raw(#","tokensPerSecond":"#)
        w.double(timings.tokensPerSecond)
        w.raw(#"},"tokens":["#)
        for (i, token) in tokens.enumerated() {
            if i > 0 { w.raw(",") }
            w.integer(token)
        }
        w.raw(#"],"usage":{"cachedTokens":"#)
        w.integer(usage.cachedTokens)
        w.raw(#","completionTokens":"#)
        w.integer(usage.completionTokens)
        w.raw(#","promptTokens":"#)
        w.integer(usage.promptTokens)
        w.raw("}}")
        return w.bytes
    }
}
