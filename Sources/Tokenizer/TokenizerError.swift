/// Everything that can go wrong while loading a `tokenizer.json` or decoding ids.
///
/// Loading never guesses: a component kind or option that this target does not implement is
/// reported with the JSON path of the field that names it, instead of producing silently wrong ids.
public enum TokenizerError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The bytes are not JSON, or not the shape of a Hugging Face `tokenizer.json`.
    case malformedJSON(String)
    /// A component type we do not implement, e.g. `field: "normalizer.type", kind: "NFKC"`.
    case unsupported(field: String, kind: String)
    /// A supported component with an option value we do not implement,
    /// e.g. `field: "pre_tokenizer.pretokenizers[1].add_prefix_space", value: "true"`.
    case unsupportedOption(field: String, value: String)
    /// The vocabulary or merges are inconsistent (a merge names a token that is not in the vocab, …).
    case invalidVocabulary(String)
    /// `decode`, `pieces` or the streaming detokenizer got an id that has no token.
    case unknownTokenId(Int)
    /// The file could not be read.
    case unreadableFile(path: String, reason: String)
    /// The bundled Falcon tokenizer is missing from the resource bundle.
    case missingResource(String)

    public var description: String {
        switch self {
        case .malformedJSON(let why): "malformed tokenizer.json: \(why)"
        case .unsupported(let field, let kind): "unsupported \(field): \(kind)"
        case .unsupportedOption(let field, let value): "unsupported value for \(field): \(value)"
        case .invalidVocabulary(let why): "invalid vocabulary: \(why)"
        case .unknownTokenId(let id): "unknown token id \(id)"
        case .unreadableFile(let path, let reason): "cannot read \(path): \(reason)"
        case .missingResource(let name): "missing bundled resource \(name)"
        }
    }
}
