/// What the `post_processor` adds around a single sequence when `addSpecialTokens` is true.
///
/// `TemplateProcessing`, `BertProcessing` and `RobertaProcessing` put fixed ids before and after the
/// sequence; `ByteLevel` only adjusts offsets, which we do not report; `Sequence` applies its
/// processors in order. Pair templates are not needed: we encode one sequence at a time.
struct PostProcessor: Sendable {
    var prefix: [Int] = []
    var suffix: [Int] = []

    init(_ spec: PostProcessorSpec?, field: String = "post_processor") throws(TokenizerError) {
        guard let spec else { return }
        switch spec.type {
        case "ByteLevel":
            break
        case "BertProcessing", "RobertaProcessing":
            if let cls = spec.cls, let sep = spec.sep {
                prefix = [cls.id]
                suffix = [sep.id]
            }
        case "TemplateProcessing":
            var seenSequence = false
            for piece in spec.single ?? [] {
                switch piece {
                case .sequence:
                    seenSequence = true
                case .specialToken(let name):
                    guard let ids = spec.specialTokens?[name]?.ids else {
                        throw .malformedJSON("\(field).special_tokens lacks \(name)")
                    }
                    if seenSequence { suffix += ids } else { prefix += ids }
                }
            }
        case "Sequence":
            for (i, inner) in (spec.processors ?? []).enumerated() {
                let p = try PostProcessor(inner, field: "\(field).processors[\(i)]")
                prefix = p.prefix + prefix
                suffix += p.suffix
            }
        default:
            throw .unsupported(field: "\(field).type", kind: spec.type)
        }
    }
}
