/// A `Decodable` mirror of the parts of a Hugging Face `tokenizer.json` that matter for encoding and
/// decoding. Each component decodes its `type` first and only then the fields of the kinds we know, so
/// that a file naming an unknown kind (whose fields may have any shape) still loads far enough to be
/// rejected with `TokenizerError.unsupported` rather than a generic JSON error.
struct TokenizerFile: Decodable {
    var addedTokens: [AddedTokenSpec]
    var normalizer: NormalizerSpec?
    var preTokenizer: PreTokenizerSpec?
    var model: ModelSpec
    var postProcessor: PostProcessorSpec?
    var decoder: DecoderSpec?
    var hasTruncation: Bool
    var hasPadding: Bool

    enum CodingKeys: String, CodingKey {
        case addedTokens = "added_tokens", normalizer, preTokenizer = "pre_tokenizer", model
        case postProcessor = "post_processor", decoder, truncation, padding
    }

    init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        addedTokens = try c.decodeIfPresent([AddedTokenSpec].self, forKey: .addedTokens) ?? []
        normalizer = try c.decodeIfPresent(NormalizerSpec.self, forKey: .normalizer)
        preTokenizer = try c.decodeIfPresent(PreTokenizerSpec.self, forKey: .preTokenizer)
        model = try c.decode(ModelSpec.self, forKey: .model)
        postProcessor = try c.decodeIfPresent(PostProcessorSpec.self, forKey: .postProcessor)
        self.decoder = try c.decodeIfPresent(DecoderSpec.self, forKey: .decoder)
        hasTruncation = try !c.decodeNil(forKeyIfPresent: .truncation)
        hasPadding = try !c.decodeNil(forKeyIfPresent: .padding)
    }
}

extension KeyedDecodingContainer {
    /// True when the key is absent or `null`.
    func decodeNil(forKeyIfPresent key: Key) throws -> Bool {
        contains(key) ? try decodeNil(forKey: key) : true
    }
}

struct AddedTokenSpec: Decodable {
    /// Informative only: ids are assigned as the crate assigns them (see `Tokenizer.init`).
    var id: Int?
    var content: String
    var singleWord: Bool
    var lstrip: Bool
    var rstrip: Bool
    var normalized: Bool
    var special: Bool

    enum CodingKeys: String, CodingKey {
        case id, content, singleWord = "single_word", lstrip, rstrip, normalized, special
    }

    init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        id = try c.decodeIfPresent(Int.self, forKey: .id)
        content = try c.decode(String.self, forKey: .content)
        singleWord = try c.decodeIfPresent(Bool.self, forKey: .singleWord) ?? false
        lstrip = try c.decodeIfPresent(Bool.self, forKey: .lstrip) ?? false
        rstrip = try c.decodeIfPresent(Bool.self, forKey: .rstrip) ?? false
        special = try c.decodeIfPresent(Bool.self, forKey: .special) ?? false
        // The tokenizers crate defaults `normalized` to `!special`.
        normalized = try c.decodeIfPresent(Bool.self, forKey: .normalized) ?? !special
    }
}

struct NormalizerSpec: Decodable {
    var type: String
}

/// `{"Regex": "..."}` or `{"String": "..."}` in a `Split` pre-tokenizer.
enum PatternSpec: Decodable, Equatable {
    case regex(String)
    case string(String)

    enum CodingKeys: String, CodingKey { case regex = "Regex", string = "String" }

    init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        if let r = try c.decodeIfPresent(String.self, forKey: .regex) {
            self = .regex(r)
        } else {
            self = .string(try c.decode(String.self, forKey: .string))
        }
    }
}

struct PreTokenizerSpec: Decodable {
    var type: String
    var behavior: String?
    var addPrefixSpace: Bool?
    var useRegex: Bool?
    var individualDigits: Bool?
    var pattern: PatternSpec?
    var invert: Bool?
    var pretokenizers: [PreTokenizerSpec]?

    enum CodingKeys: String, CodingKey {
        case type, behavior, addPrefixSpace = "add_prefix_space", useRegex = "use_regex"
        case individualDigits = "individual_digits", pattern, invert, pretokenizers
    }

    init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        type = try c.decode(String.self, forKey: .type)
        switch type {
        case "Sequence":
            pretokenizers = try c.decode([PreTokenizerSpec].self, forKey: .pretokenizers)
        case "Punctuation":
            behavior = try c.decodeIfPresent(String.self, forKey: .behavior)
        case "ByteLevel":
            addPrefixSpace = try c.decodeIfPresent(Bool.self, forKey: .addPrefixSpace)
            useRegex = try c.decodeIfPresent(Bool.self, forKey: .useRegex)
        case "Digits":
            individualDigits = try c.decodeIfPresent(Bool.self, forKey: .individualDigits)
        case "Split":
            pattern = try c.decode(PatternSpec.self, forKey: .pattern)
            behavior = try c.decode(String.self, forKey: .behavior)
            invert = try c.decodeIfPresent(Bool.self, forKey: .invert)
        default:
            break
        }
    }
}

/// Merges come as `"a b"` strings (older files) or `["a", "b"]` pairs (tokenizers ≥ 0.20).
enum MergeSpec: Decodable {
    case joined(String)
    case pair([String])

    init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let s = try? c.decode(String.self) {
            self = .joined(s)
        } else {
            self = .pair(try c.decode([String].self))
        }
    }
}

struct ModelSpec: Decodable {
    var type: String
    var vocab: [String: Int] = [:]
    var merges: [MergeSpec] = []
    var dropout: Double?
    var unkToken: String?
    var continuingSubwordPrefix: String?
    var endOfWordSuffix: String?
    var fuseUnk: Bool = false
    var byteFallback: Bool = false
    var ignoreMerges: Bool = false

    enum CodingKeys: String, CodingKey {
        case type, vocab, merges, dropout, unkToken = "unk_token"
        case continuingSubwordPrefix = "continuing_subword_prefix", endOfWordSuffix = "end_of_word_suffix"
        case fuseUnk = "fuse_unk", byteFallback = "byte_fallback", ignoreMerges = "ignore_merges"
    }

    init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        // Old files omit `type`; the tokenizers crate then recognises BPE by its `merges`.
        if let t = try c.decodeIfPresent(String.self, forKey: .type) {
            type = t
        } else {
            type = c.contains(.merges) ? "BPE" : "(none)"
        }
        guard type == "BPE" else { return }
        vocab = try c.decode([String: Int].self, forKey: .vocab)
        merges = try c.decodeIfPresent([MergeSpec].self, forKey: .merges) ?? []
        dropout = try c.decodeIfPresent(Double.self, forKey: .dropout)
        unkToken = try c.decodeIfPresent(String.self, forKey: .unkToken)
        continuingSubwordPrefix = try c.decodeIfPresent(String.self, forKey: .continuingSubwordPrefix)
        endOfWordSuffix = try c.decodeIfPresent(String.self, forKey: .endOfWordSuffix)
        fuseUnk = try c.decodeIfPresent(Bool.self, forKey: .fuseUnk) ?? false
        byteFallback = try c.decodeIfPresent(Bool.self, forKey: .byteFallback) ?? false
        ignoreMerges = try c.decodeIfPresent(Bool.self, forKey: .ignoreMerges) ?? false
    }
}

struct DecoderSpec: Decodable {
    var type: String
}

/// Post-processors: `TemplateProcessing`, `BertProcessing`, `RobertaProcessing`, `ByteLevel`
/// (ids unchanged) and `Sequence` of those.
struct PostProcessorSpec: Decodable {
    var type: String
    var single: [TemplatePieceSpec]?
    var specialTokens: [String: TemplateSpecialTokenSpec]?
    var cls: ClsSepSpec?
    var sep: ClsSepSpec?
    var processors: [PostProcessorSpec]?

    enum CodingKeys: String, CodingKey {
        case type, single, specialTokens = "special_tokens", cls, sep, processors
    }

    init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        type = try c.decode(String.self, forKey: .type)
        switch type {
        case "TemplateProcessing":
            single = try c.decode([TemplatePieceSpec].self, forKey: .single)
            specialTokens = try c.decodeIfPresent([String: TemplateSpecialTokenSpec].self, forKey: .specialTokens)
        case "BertProcessing", "RobertaProcessing":
            cls = try c.decode(ClsSepSpec.self, forKey: .cls)
            sep = try c.decode(ClsSepSpec.self, forKey: .sep)
        case "Sequence":
            processors = try c.decode([PostProcessorSpec].self, forKey: .processors)
        default:
            break
        }
    }
}

/// `["[CLS]", 101]`
struct ClsSepSpec: Decodable {
    var token: String
    var id: Int
    init(from decoder: any Decoder) throws {
        var c = try decoder.unkeyedContainer()
        token = try c.decode(String.self)
        id = try c.decode(Int.self)
    }
}

/// `{"SpecialToken": {"id": "<s>", "type_id": 0}}` or `{"Sequence": {"id": "A", "type_id": 0}}`.
enum TemplatePieceSpec: Decodable {
    case specialToken(String)
    case sequence(String)

    enum CodingKeys: String, CodingKey { case specialToken = "SpecialToken", sequence = "Sequence" }
    struct Inner: Decodable { var id: String }

    init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        if let s = try c.decodeIfPresent(Inner.self, forKey: .specialToken) {
            self = .specialToken(s.id)
        } else {
            self = .sequence(try c.decode(Inner.self, forKey: .sequence).id)
        }
    }
}

struct TemplateSpecialTokenSpec: Decodable {
    var id: String
    var ids: [Int]
}
