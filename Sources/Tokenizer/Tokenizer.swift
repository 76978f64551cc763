import Synchronization

/// A Hugging Face `tokenizer.json` tokenizer for byte-level BPE models such as Falcon.
///
/// Encoding follows the tokenizers crate step by step: added tokens are matched first, the rest goes
/// through the pre-tokenizer steps and the BPE merges (see `PreTokenizer.swift`, `GPT2Pattern.swift`,
/// `BPE.swift`). A file that names a component we do not implement fails to load with
/// `TokenizerError.unsupported` instead of giving different ids.
///
/// Thread-safe: `encode` may be called from several threads at once (each call borrows its own
/// scratch space and word cache from a small pool).
public final class Tokenizer: Sendable {
    /// Number of ids: one more than the largest id of the vocabulary or the added tokens
    /// (65,024 for Falcon).
    public let vocabSize: Int
    /// The end-of-sequence id, when a special token with a well-known end-of-text name exists
    /// (`<|endoftext|>` for Falcon: 11). Prefer the model's `generation_config.json` when present.
    public let eosTokenId: Int?

    let model: BPEModel
    let addedTokens: AddedTokens
    let tokenTexts: TokenTexts
    let postProcessor: PostProcessor
    private let tables: EncoderTables
    private let tokens: [String?]
    private let special: [Bool]
    private let addedIds: [String: Int]
    private let workspaces = Mutex<[EncoderWorkspace]>([])

    init(file: TokenizerFile) throws(TokenizerError) {
        if let n = file.normalizer { throw .unsupported(field: "normalizer.type", kind: n.type) }
        if file.hasTruncation { throw .unsupported(field: "truncation", kind: "non-null") }
        if file.hasPadding { throw .unsupported(field: "padding", kind: "non-null") }
        let pipeline = try PreTokenizerPipeline(file.preTokenizer)
        model = try BPEModel(file.model, mapped: pipeline.modelSeesMappedBytes)
        postProcessor = try PostProcessor(file.postProcessor)

        // Added tokens get their ids as `AddedVocabulary::add_tokens` gives them, whatever `id` the
        // file says (files written by the crate agree): the id of the same content if known, else
        // the next id after the model vocab and the added tokens so far.
        var addedIds: [String: Int] = [:]
        var specialContents = Set<String>()
        var matchable: [(token: AddedTokens.Token, normalized: Bool)] = []
        let modelSize = model.vocab.count
        var maxAdded = -1
        for spec in file.addedTokens where !spec.content.isEmpty {
            let id: Int
            if let known = addedIds[spec.content] ?? model.vocab[spec.content] {
                id = known
            } else if maxAdded >= 0 && (maxAdded >= modelSize || modelSize == 0) {
                id = maxAdded + 1
            } else {
                id = modelSize
            }
            addedIds[spec.content] = id
            maxAdded = max(maxAdded, id)
            if spec.special { specialContents.insert(spec.content) }
            let token = AddedTokens.Token(id: id, bytes: Array(spec.content.utf8), singleWord: spec.singleWord,
                                          lstrip: spec.lstrip, rstrip: spec.rstrip)
            matchable.append((token, spec.normalized))
        }
        addedTokens = AddedTokens(matchable)
        self.addedIds = addedIds

        let maxId = max(model.vocab.values.max() ?? -1, addedIds.values.max() ?? -1)
        var tokens = [String?](repeating: nil, count: maxId + 1)
        for (token, id) in model.vocab { tokens[id] = token }
        for (token, id) in addedIds { tokens[id] = token }
        let special = tokens.map { $0.map { specialContents.contains($0) } ?? false }
        self.tokens = tokens
        self.special = special
        vocabSize = tokens.count
        tokenTexts = try TokenTexts(file.decoder, tokens: tokens, special: special)
        eosTokenId = ["<|endoftext|>", "</s>", "<|end_of_text|>", "<|im_end|>", "<eos>", "<|eot_id|>"]
            .lazy.compactMap { specialContents.contains($0) ? addedIds[$0] : nil }.first
        tables = EncoderTables(pipeline)
    }

    // MARK: Encoding

    /// The ids of `text`. With `addSpecialTokens`, the post-processor's ids (e.g. a BOS token) are
    /// added around them; Falcon's post-processor is null, so it changes nothing there.
    public func encode(_ text: String, addSpecialTokens: Bool = true) -> [Int] {
        let workspace = workspaces.withLock { $0.popLast() } ?? EncoderWorkspace(stepCount: tables.stepCount)
        defer {
            workspaces.withLock { pool in
                if pool.count < 8 { pool.append(workspace) }
            }
        }
        var ids: [Int] = addSpecialTokens ? postProcessor.prefix : []
        var text = text
        text.withUTF8 { utf8 in
            guard let base = utf8.baseAddress, utf8.count > 0 else { return }
            ids.reserveCapacity(ids.count + utf8.count / 3)
            var encoder = PieceEncoder(out: ids, cache: workspace.cache, scratch: workspace.scratch,
                                       prefixBuffers: workspace.prefixBuffers,
                                       prefixCapacities: workspace.prefixCapacities,
                                       steps: UnsafeBufferPointer(start: tables.steps, count: tables.stepCount),
                                       literals: tables.literals, model: model,
                                       classTable: CharacterClassTable.shared.bmp,
                                       mappedClasses: tables.mappedClasses)
            ids = []
            var gap = 0
            for m in addedTokens.matches(base, 0, utf8.count) {
                if gap < m.start { encoder.run(0, base, gap, m.start) }
                encoder.out.append(m.id)
                gap = m.end
            }
            if gap < utf8.count { encoder.run(0, base, gap, utf8.count) }
            swap(&ids, &encoder.out)
            workspace.cache = encoder.cache
            workspace.scratch = encoder.scratch
            workspace.prefixBuffers = encoder.prefixBuffers
            workspace.prefixCapacities = encoder.prefixCapacities
        }
        if addSpecialTokens { ids += postProcessor.suffix }
        return ids
    }

    // MARK: Decoding

    /// The text of `ids`, as the tokenizers crate's `decode`. Throws `unknownTokenId` for an id
    /// with no token (the crate would silently skip it).
    public func decode(_ ids: [Int], skipSpecialTokens: Bool = false) throws(TokenizerError) -> String {
        try tokenTexts.decode(ids, skipSpecial: skipSpecialTokens)
    }

    /// The decoded text of each id on its own; a token holding part of a UTF-8 character shows as
    /// U+FFFD.
    public func pieces(_ ids: [Int]) throws(TokenizerError) -> [String] {
        var out: [String] = []
        out.reserveCapacity(ids.count)
        for id in ids { out.append(try tokenTexts.decode([id], skipSpecial: false)) }
        return out
    }

    /// A detokenizer that turns ids into text deltas one id at a time.
    public func streamingDetokenizer(skipSpecialTokens: Bool = false) -> StreamingDetokenizer {
        StreamingDetokenizer(tokenizer: self, skipSpecialTokens: skipSpecialTokens)
    }

    // MARK: Vocabulary

    /// The id of a token given as it is spelled in `tokenizer.json` (byte-level: `"Ġthe"`), or of
    /// an added token (`"<|endoftext|>"`).
    public func id(forToken token: String) -> Int? {
        addedIds[token] ?? model.vocab[token]
    }

    /// The token string of an id, as spelled in `tokenizer.json`.
    public func token(forId id: Int) -> String? {
        id >= 0 && id < tokens.count ? tokens[id] : nil
    }

    /// Whether `id` is a special added token (skipped by `decode(_:skipSpecialTokens: true)`).
    public func isSpecial(_ id: Int) -> Bool {
        id >= 0 && id < special.count && special[id]
    }
}

/// The compiled pipeline, in memory that stays put for the hot loop.
final class EncoderTables: @unchecked Sendable {
    let steps: UnsafeMutablePointer<CompiledStep>
    let stepCount: Int
    let literals: [[UInt8]?]
    let mappedClasses: UnsafeMutablePointer<UInt8>

    init(_ pipeline: PreTokenizerPipeline) {
        let (steps, literals) = CompiledStep.compile(pipeline)
        stepCount = steps.count
        self.steps = .allocate(capacity: max(1, steps.count))
        self.steps.initialize(from: steps, count: steps.count)
        self.literals = literals
        mappedClasses = .allocate(capacity: 256)
        mappedClasses.initialize(from: ByteLevel.mappedClasses, count: 256)
    }

    deinit {
        steps.deallocate()
        mappedClasses.deallocate()
    }
}
