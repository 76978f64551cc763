import ArgumentParser

/// Text <-> token ids for a model folder. Pending the tokenizer: ids only.
struct TextCodec {
    init(modelDirectory: String, vocabSize: Int) throws {}

    func encode(_ text: String) throws -> [Int] {
        throw ValidationError("text prompts need the tokenizer; use --tokens")
    }

    func decode(_ ids: [Int]) -> String { "" }
    func piece(_ id: Int) -> String { "" }
    func stream() -> Stream { Stream() }

    struct Stream {
        var ids: [Int] = []
        mutating func append(_ id: Int) -> String { ids.append(id); return "" }
        mutating func finish() -> String { ids.map(String.init).joined(separator: " ") }
    }
}
