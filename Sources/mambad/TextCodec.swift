import ArgumentParser
import Foundation
import Tokenizer

/// Text <-> token ids for a model folder: its own tokenizer.json, else the bundled
/// Falcon tokenizer when the vocabularies agree, else none (token ids only).
struct TextCodec {
    let tokenizer: Tokenizer?

    init(modelDirectory: String, vocabSize: Int) throws {
        let own = URL(fileURLWithPath: modelDirectory).appendingPathComponent("tokenizer.json")
        if FileManager.default.fileExists(atPath: own.path) {
            tokenizer = try Tokenizer(contentsOf: own)
        } else if let falcon = try? Tokenizer.falcon(), falcon.vocabSize == vocabSize {
            tokenizer = falcon
        } else {
            tokenizer = nil
        }
    }

    func encode(_ text: String) throws -> [Int] {
        guard let tokenizer else {
            throw ValidationError("this model has no tokenizer.json and its vocabulary is not Falcon's: give the prompt with --tokens")
        }
        return tokenizer.encode(text, addSpecialTokens: true)
    }

    func decode(_ ids: [Int]) -> String { (try? tokenizer?.decode(ids)) ?? "" }

    func piece(_ id: Int) -> String { (try? tokenizer?.pieces([id]).first) ?? "" }

    func stream() -> Stream { Stream(detokenizer: tokenizer?.streamingDetokenizer()) }

    /// Text deltas as tokens arrive; without a tokenizer, the ids at the end.
    struct Stream {
        var detokenizer: StreamingDetokenizer?
        var ids: [Int] = []

        mutating func append(_ id: Int) -> String {
            guard detokenizer != nil else { ids.append(id); return "" }
            return (try? detokenizer!.append(id)) ?? ""
        }

        mutating func finish() -> String {
            guard detokenizer != nil else { return ids.map(String.init).joined(separator: " ") }
            return detokenizer!.finish()
        }
    }
}
