/// Params of `tokenize`.
public struct TokenizeParams: Codable, Sendable, Equatable {
    public var text: String
    public var addSpecialTokens: Bool = false
    public var pieces: Bool = false

    public init(text: String, addSpecialTokens: Bool = false, pieces: Bool = false) {
        self.text = text
        self.addSpecialTokens = addSpecialTokens
        self.pieces = pieces
    }

    enum CodingKeys: String, CodingKey { case text, addSpecialTokens, pieces }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        text = try c.decode(String.self, forKey: .text)
        addSpecialTokens = try c.value(.addSpecialTokens, or: false)
        pieces = try c.value(.pieces, or: false)
    }
}

/// Result of `tokenize`; `pieces` only when asked for.
public struct TokenizeResult: Codable, Sendable, Equatable {
    public var tokens: [Int]
    public var pieces: [String]?

    public init(tokens: [Int], pieces: [String]? = nil) {
        self.tokens = tokens
        self.pieces = pieces
    }
}

/// Params of `detokenize`.
public struct DetokenizeParams: Codable, Sendable, Equatable {
    public var tokens: [Int]
    public var skipSpecialTokens: Bool = false

    public init(tokens: [Int], skipSpecialTokens: Bool = false) {
        self.tokens = tokens
        self.skipSpecialTokens = skipSpecialTokens
    }

    enum CodingKeys: String, CodingKey { case tokens, skipSpecialTokens }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        tokens = try c.decode([Int].self, forKey: .tokens)
        skipSpecialTokens = try c.value(.skipSpecialTokens, or: false)
    }
}

/// Result of `detokenize`.
public struct DetokenizeResult: Codable, Sendable, Equatable {
    public var text: String
    public init(text: String) { self.text = text }
}

/// Params of `$/cancelRequest`.
public struct CancelParams: Codable, Sendable, Equatable {
    public var id: RPCID
    public init(id: RPCID) { self.id = id }
}
