/// Params of `embed`: one text or several, pooled over their tokens' final hidden states.
public struct EmbedParams: Codable, Sendable, Equatable {
    public enum Pooling: String, Codable, Sendable { case mean, last }

    public var input: [String]
    /// Whether `input` was a single string (it is still answered as one embedding).
    public var single: Bool
    public var pooling: Pooling = .mean
    public var normalize: Bool = true

    public static let maxInputs = 64

    public init(input: [String], pooling: Pooling = .mean, normalize: Bool = true) {
        self.input = input
        self.single = false
        self.pooling = pooling
        self.normalize = normalize
    }

    public init(input: String, pooling: Pooling = .mean, normalize: Bool = true) {
        self.input = [input]
        self.single = true
        self.pooling = pooling
        self.normalize = normalize
    }

    enum CodingKeys: String, CodingKey { case input, pooling, normalize }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        if let text = try? c.decode(String.self, forKey: .input) {
            input = [text]
            single = true
        } else {
            input = try c.decode([String].self, forKey: .input)
            single = false
        }
        if let raw = try c.decodeIfPresent(String.self, forKey: .pooling) {
            guard let p = Pooling(rawValue: raw) else {
                throw RPCError.invalidParams(field: "pooling", reason: "must be \"mean\" or \"last\"")
            }
            pooling = p
        }
        normalize = try c.value(.normalize, or: true)
        try Check.that(!input.isEmpty, "input", "must not be empty")
        try Check.that(input.count <= Self.maxInputs, "input", "at most \(Self.maxInputs) strings")
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        if single, let only = input.first { try c.encode(only, forKey: .input) } else { try c.encode(input, forKey: .input) }
        try c.encode(pooling, forKey: .pooling)
        try c.encode(normalize, forKey: .normalize)
    }
}

/// Result of `embed`. Written by hand (`json`): thousands of floats per vector.
public struct EmbedResult: Codable, Sendable, Equatable {
    public struct Usage: Codable, Sendable, Equatable {
        public var promptTokens: Int
        public init(promptTokens: Int) { self.promptTokens = promptTokens }
    }

    public var embeddings: [[Float]]
    public var dimensions: Int
    public var usage: Usage

    public init(embeddings: [[Float]], dimensions: Int, usage: Usage) {
        self.embeddings = embeddings
        self.dimensions = dimensions
        self.usage = usage
    }

    /// The same JSON as `WireJSON.encode(self)` (keys sorted), without JSONEncoder.
    public var json: [UInt8] {
        var w = JSONWriter(capacity: 64 + embeddings.reduce(0) { $0 + $1.count * 12 })
        w.raw(#"{"dimensions":"#)
        w.integer(dimensions)
        w.raw(#","embeddings":["#)
        for (i, vector) in embeddings.enumerated() {
            if i > 0 { w.raw(",") }
            w.floats(vector)
        }
        w.raw(#"],"usage":{"promptTokens":"#)
        w.integer(usage.promptTokens)
        w.raw("}}")
        return w.bytes
    }
}
