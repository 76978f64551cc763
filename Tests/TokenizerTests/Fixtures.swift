import Foundation
import Tokenizer

/// Test data under `Tests/Fixtures/`, found from this file's path so the tests need nothing outside
/// the repository.
enum Fixtures {
    static let root = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fixtures")
    static let tokenizerDirectory = root.appendingPathComponent("tokenizer")
    static let tinyModelDirectory = root.appendingPathComponent("models/tiny-falcon-vocab-nf4")

    struct Vector: Decodable, Sendable {
        var text: String
        var ids: [Int]
        var decoded: String
    }

    /// The 578 lines of `vectors.jsonl`, with their 1-based line numbers.
    static let vectors: [(line: Int, vector: Vector)] = {
        let url = tokenizerDirectory.appendingPathComponent("vectors.jsonl")
        let text = try! String(contentsOf: url, encoding: .utf8)
        let decoder = JSONDecoder()
        return text.split(separator: "\n", omittingEmptySubsequences: true).enumerated().map { i, line in
            (i + 1, try! decoder.decode(Vector.self, from: Data(line.utf8)))
        }
    }()

    /// llama.cpp's `ggml-vocab-falcon.gguf.inp` / `.out`: inputs joined by
    /// `"\n__ggml_vocab_test__\n"` (which also follows the last one), one id line per input.
    static let llamaCppCases: [(text: String, ids: [Int])] = {
        let inp = try! String(contentsOf: tokenizerDirectory.appendingPathComponent("llama.cpp-ggml-vocab-falcon.gguf.inp"),
                              encoding: .utf8)
        let out = try! String(contentsOf: tokenizerDirectory.appendingPathComponent("llama.cpp-ggml-vocab-falcon.gguf.out"),
                              encoding: .utf8)
        var texts = inp.components(separatedBy: "\n__ggml_vocab_test__\n")
        if texts.last == "" { texts.removeLast() }
        var lines = out.components(separatedBy: "\n")
        if lines.last == "" { lines.removeLast() }
        precondition(texts.count == lines.count, "\(texts.count) inputs, \(lines.count) outputs")
        return zip(texts, lines).map { text, line in
            (text, line.split(separator: " ").map { Int($0)! })
        }
    }()

    /// Loaded once for the whole test run.
    static let falcon: Tokenizer = try! Tokenizer.falcon()
}
