import FoundationEssentials

/// config.json of a FalconMamba checkpoint, field for field as Hugging Face writes it.
///
/// The published file has quirks, handled here: `expand: 16` in the 7B file is wrong
/// (`intermediate_size` is right, and the tensor shapes are checked against it),
/// `mixer_rms_eps` may be absent (1e-6), `time_step_rank` may be "auto".
public struct FalconMambaConfig: Sendable, Equatable {
    public var modelType: String
    public var architectures: [String]
    public var hiddenSize: Int
    public var numHiddenLayers: Int
    public var intermediateSize: Int
    public var stateSize: Int
    public var convKernel: Int
    public var timeStepRank: Int
    public var vocabSize: Int
    public var layerNormEpsilon: Float
    public var mixerRMSEpsilon: Float
    public var tieWordEmbeddings: Bool
    public var useConvBias: Bool
    public var useBias: Bool
    public var bosTokenId: Int?
    public var eosTokenId: Int?
    public var padTokenId: Int?
    public var torchDType: String?
    public var quantization: QuantizationConfig?

    /// `quantization_config` as bitsandbytes writes it (informational: each tensor's
    /// own quant_state is what the loader trusts).
    public struct QuantizationConfig: Sendable, Equatable, Decodable {
        public var quantMethod: String?
        public var loadIn4bit: Bool?
        public var quantType: String?
        public var useDoubleQuant: Bool?
        public var computeDType: String?
        enum CodingKeys: String, CodingKey {
            case quantMethod = "quant_method", loadIn4bit = "load_in_4bit"
            case quantType = "bnb_4bit_quant_type", useDoubleQuant = "bnb_4bit_use_double_quant"
            case computeDType = "bnb_4bit_compute_dtype"
        }
    }

    /// Parse config.json; `path` is only used in error messages.
    public init(data: Data, path: String) throws(CheckpointError) {
        let raw: RawConfig
        do {
            raw = try JSONDecoder().decode(RawConfig.self, from: data)
        } catch let DecodingError.keyNotFound(key, _) {
            throw .invalidConfig(path: path, field: key.stringValue, reason: "missing")
        } catch let DecodingError.typeMismatch(_, context) {
            throw .invalidConfig(path: path, field: context.codingPath.map(\.stringValue).joined(separator: "."),
                                 reason: "wrong type")
        } catch let DecodingError.valueNotFound(_, context) {
            throw .invalidConfig(path: path, field: context.codingPath.map(\.stringValue).joined(separator: "."),
                                 reason: "null")
        } catch {
            throw .invalidConfig(path: path, field: "", reason: "not valid JSON")
        }
        guard raw.model_type == "falcon_mamba" else {
            throw .unsupportedArchitecture(path: path, modelType: raw.model_type)
        }
        func positive(_ value: Int?, _ field: String) throws(CheckpointError) -> Int {
            guard let value else { throw .invalidConfig(path: path, field: field, reason: "missing") }
            guard value > 0 else { throw .invalidConfig(path: path, field: field, reason: "must be positive, is \(value)") }
            return value
        }
        modelType = raw.model_type
        architectures = raw.architectures ?? []
        let hidden = try positive(raw.hidden_size, "hidden_size")
        hiddenSize = hidden
        numHiddenLayers = try positive(raw.num_hidden_layers, "num_hidden_layers")
        intermediateSize = try positive(raw.intermediate_size ?? raw.expand.map { $0 * hidden }, "intermediate_size")
        stateSize = try positive(raw.state_size ?? 16, "state_size")
        convKernel = try positive(raw.conv_kernel ?? 4, "conv_kernel")
        guard convKernel <= 16 else {
            throw .invalidConfig(path: path, field: "conv_kernel", reason: "at most 16 is supported, is \(convKernel)")
        }
        switch raw.time_step_rank {
        case .auto, nil: timeStepRank = (hidden + 15) / 16
        case .value(let rank): timeStepRank = try positive(rank, "time_step_rank")
        }
        vocabSize = try positive(raw.vocab_size, "vocab_size")
        layerNormEpsilon = raw.layer_norm_epsilon ?? 1e-5
        mixerRMSEpsilon = raw.mixer_rms_eps ?? 1e-6
        tieWordEmbeddings = raw.tie_word_embeddings ?? true
        useConvBias = raw.use_conv_bias ?? true
        useBias = raw.use_bias ?? false
        bosTokenId = raw.bos_token_id
        eosTokenId = raw.eos_token_id
        padTokenId = raw.pad_token_id
        torchDType = raw.torch_dtype ?? raw.dtype
        quantization = raw.quantization_config
    }

    /// Parameters the model has (counting each 4-bit weight once).
    public var parameterCount: Int {
        let h = hiddenSize, d = intermediateSize, n = stateSize, r = timeStepRank, k = convKernel
        let perLayer = h + 2 * d * h + d * k + (useConvBias ? d : 0) + (r + 2 * n) * d + d * r + d + d * n + d + h * d
        return vocabSize * h * (tieWordEmbeddings ? 1 : 2) + numHiddenLayers * perLayer + h
    }

    /// Bytes of recurrent state one sequence carries: conv and SSM state, float32, every layer.
    public var stateBytesPerSequence: Int {
        numHiddenLayers * intermediateSize * (convKernel + stateSize) * MemoryLayout<Float>.size
    }
}

/// The JSON exactly as written; optional wherever real files omit a field.
private struct RawConfig: Decodable {
    enum Rank: Decodable {
        case auto, value(Int)
        init(from decoder: any Decoder) throws {
            let container = try decoder.singleValueContainer()
            if let value = try? container.decode(Int.self) { self = .value(value); return }
            let text = try container.decode(String.self)
            guard text == "auto" else {
                throw DecodingError.typeMismatch(Int.self, .init(codingPath: decoder.codingPath,
                                                                 debugDescription: "expected an integer or \"auto\""))
            }
            self = .auto
        }
    }
    var model_type: String
    var architectures: [String]?
    var hidden_size: Int?
    var num_hidden_layers: Int?
    var intermediate_size: Int?
    var expand: Int?
    var state_size: Int?
    var conv_kernel: Int?
    var time_step_rank: Rank?
    var vocab_size: Int?
    var layer_norm_epsilon: Float?
    var mixer_rms_eps: Float?
    var tie_word_embeddings: Bool?
    var use_conv_bias: Bool?
    var use_bias: Bool?
    var bos_token_id: Int?
    var eos_token_id: Int?
    var pad_token_id: Int?
    var torch_dtype: String?
    var dtype: String?
    var quantization_config: FalconMambaConfig.QuantizationConfig?
}
