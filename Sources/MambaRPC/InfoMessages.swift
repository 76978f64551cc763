/// Result of `model/info`.
public struct ModelInfo: Codable, Sendable, Equatable {
    public var name: String
    public var architecture: String
    public var path: String
    public var quantization: String
    public var parameters: Int
    public var vocabSize: Int
    public var hiddenSize: Int
    public var layers: Int
    public var stateSize: Int
    public var bosTokenId: Int?
    public var eosTokenId: Int?
    public var mappedBytes: Int
    public var stateBytesPerSequence: Int

    public init(name: String, architecture: String = "falcon_mamba", path: String, quantization: String, parameters: Int,
                vocabSize: Int, hiddenSize: Int, layers: Int, stateSize: Int, bosTokenId: Int?, eosTokenId: Int?,
                mappedBytes: Int, stateBytesPerSequence: Int) {
        self.name = name
        self.architecture = architecture
        self.path = path
        self.quantization = quantization
        self.parameters = parameters
        self.vocabSize = vocabSize
        self.hiddenSize = hiddenSize
        self.layers = layers
        self.stateSize = stateSize
        self.bosTokenId = bosTokenId
        self.eosTokenId = eosTokenId
        self.mappedBytes = mappedBytes
        self.stateBytesPerSequence = stateBytesPerSequence
    }
}

/// Params of `initialize` (LSP clients send much more; it is ignored).
public struct InitializeParams: Codable, Sendable, Equatable {
    public struct ClientInfo: Codable, Sendable, Equatable {
        public var name: String?
        public var version: String?
        public init(name: String? = nil, version: String? = nil) {
            self.name = name
            self.version = version
        }
    }

    public var clientInfo: ClientInfo?
    public init(clientInfo: ClientInfo? = nil) { self.clientInfo = clientInfo }
}

/// Result of `initialize`.
public struct InitializeResult: Codable, Sendable, Equatable {
    public struct ServerInfo: Codable, Sendable, Equatable {
        public var name: String
        public var version: String
        public init(name: String, version: String) {
            self.name = name
            self.version = version
        }
    }

    public struct Capabilities: Codable, Sendable, Equatable {
        public var framing: [String]
        public var methods: [String]
        public var streaming: Bool
        public init(framing: [String] = Framing.allCases.map(\.rawValue), methods: [String] = RPCMethod.all,
                    streaming: Bool = true) {
            self.framing = framing
            self.methods = methods
            self.streaming = streaming
        }
    }

    public var serverInfo: ServerInfo
    public var model: ModelInfo
    public var capabilities: Capabilities

    public init(serverInfo: ServerInfo, model: ModelInfo, capabilities: Capabilities = .init()) {
        self.serverInfo = serverInfo
        self.model = model
        self.capabilities = capabilities
    }
}

/// Result of `status`.
public struct StatusResult: Codable, Sendable, Equatable {
    public enum State: String, Codable, Sendable { case loading, ready, draining }

    public struct Model: Codable, Sendable, Equatable {
        public var name: String
        public var path: String
        public var quantization: String
        public init(name: String, path: String, quantization: String) {
            self.name = name
            self.path = path
            self.quantization = quantization
        }
    }

    public struct Requests: Codable, Sendable, Equatable {
        public var active = 0, queued = 0, completed = 0, cancelled = 0, failed = 0
        public init() {}
    }

    public struct Cache: Codable, Sendable, Equatable {
        public var entries = 0, bytes = 0, hits = 0, misses = 0
        public init() {}
    }

    public struct Memory: Codable, Sendable, Equatable {
        public var rssBytes = 0, mappedBytes = 0
        public init() {}
    }

    /// Work done by the model (beyond PROTOCOL.md's fields): shows that work stops.
    public struct Engine: Codable, Sendable, Equatable {
        public var prefillTokens = 0, generatedTokens = 0, decodeSteps = 0, batchedSequences = 0
        public init() {}
    }

    public var state: State
    public var uptimeSeconds: Double
    public var model: Model?
    public var requests = Requests()
    public var cache = Cache()
    public var memory = Memory()
    public var engine = Engine()

    public init(state: State, uptimeSeconds: Double, model: Model?) {
        self.state = state
        self.uptimeSeconds = uptimeSeconds
        self.model = model
    }
}
