import Foundation
import Testing
import Tokenizer

/// A small byte-level BPE `tokenizer.json`, modified per test.
private func tokenizerJSON(_ modify: (inout [String: Any]) -> Void = { _ in }) -> Data {
    var file: [String: Any] = [
        "version": "1.0",
        "truncation": NSNull(),
        "padding": NSNull(),
        "added_tokens": [
            ["id": 0, "content": "<s>", "single_word": false, "lstrip": false, "rstrip": false,
             "normalized": false, "special": true],
        ],
        "normalizer": NSNull(),
        "pre_tokenizer": ["type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true],
        "post_processor": NSNull(),
        "decoder": ["type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true],
        "model": [
            "type": "BPE", "dropout": NSNull(), "unk_token": NSNull(), "continuing_subword_prefix": NSNull(),
            "end_of_word_suffix": NSNull(), "fuse_unk": false,
            "vocab": ["<s>": 0, "a": 1, "b": 2, "c": 3, "Ġ": 4, "ab": 5, "abc": 6, "Ġa": 7],
            "merges": ["a b", "ab c", "Ġ a"],
        ] as [String: Any],
    ]
    modify(&file)
    return try! JSONSerialization.data(withJSONObject: file)
}

private func setModel(_ file: inout [String: Any], _ key: String, _ value: Any) {
    var model = file["model"] as! [String: Any]
    model[key] = value
    file["model"] = model
}

@Suite struct LoadingTests {
    @Test func smallByteLevelBPEMergesByRank() throws {
        let tokenizer = try Tokenizer(data: tokenizerJSON())
        // " ab": "a b" (rank 0) wins over "Ġ a" (rank 2), and "Ġ ab" does not merge.
        #expect(tokenizer.encode("abc ab", addSpecialTokens: false) == [6, 4, 5])
        #expect(try tokenizer.decode([6, 4, 5]) == "abc ab")
        #expect(tokenizer.encode("<s>ab", addSpecialTokens: false) == [0, 5])
        #expect(tokenizer.vocabSize == 8)
        #expect(tokenizer.eosTokenId == nil)
    }

    @Test func mergesAsPairsEqualMergesAsStrings() throws {
        let tokenizer = try Tokenizer(data: tokenizerJSON { setModel(&$0, "merges", [["a", "b"], ["ab", "c"], ["Ġ", "a"]]) })
        #expect(tokenizer.encode("abc ab", addSpecialTokens: false) == [6, 4, 5])
    }

    @Test func prefixSpace() throws {
        let tokenizer = try Tokenizer(data: tokenizerJSON {
            $0["pre_tokenizer"] = ["type": "ByteLevel", "add_prefix_space": true, "use_regex": true]
        })
        #expect(tokenizer.encode("ab", addSpecialTokens: false) == [4, 5])
        #expect(tokenizer.encode(" ab", addSpecialTokens: false) == [4, 5])
    }

    @Test func templatePostProcessorAddsIdsOnlyWhenAsked() throws {
        let tokenizer = try Tokenizer(data: tokenizerJSON {
            $0["post_processor"] = [
                "type": "TemplateProcessing",
                "single": [["SpecialToken": ["id": "<s>", "type_id": 0]], ["Sequence": ["id": "A", "type_id": 0]]],
                "pair": [["Sequence": ["id": "A", "type_id": 0]], ["Sequence": ["id": "B", "type_id": 1]]],
                "special_tokens": ["<s>": ["id": "<s>", "ids": [0], "tokens": ["<s>"]]],
            ] as [String: Any]
        })
        #expect(tokenizer.encode("ab", addSpecialTokens: true) == [0, 5])
        #expect(tokenizer.encode("ab", addSpecialTokens: false) == [5])
    }

    /// Expected values from Python tokenizers 0.23.3 on the same file.
    @Test(arguments: [
        ("a <mask> b", [1, 8, 2], "a<mask>b", "ab"),  // lstrip and rstrip take the spaces
        ("a  <mask>\n\nb", [1, 8, 2], "a<mask>b", "ab"),
        ("a\u{3000}<mask>", [1, 8], "a<mask>", "a"),
        ("<mask><mask>", [8, 8], "<mask><mask>", ""),
        ("abc bc", [6, 4, 9], "abc bc", "abc bc"),  // single_word: "bc" alone is matched…
        ("bc", [9], "bc", "bc"),
        ("a bc c", [1, 4, 9, 4, 3], "a bc c", "a bc c"),
        ("abc", [6], "abc", "abc"),  // … inside a word it is not
        ("bca", [2, 3, 1], "bca", "bca"),  // and the search resumes after the rejected match
        ("cabc", [10, 2, 3], "cabc", "cabc"),
    ])
    func addedTokenFlags(text: String, ids: [Int], decoded: String, withoutSpecial: String) throws {
        let tokenizer = try Tokenizer(data: tokenizerJSON {
            func token(_ content: String, single: Bool = false, strip: Bool = false, normalized: Bool,
                       special: Bool) -> [String: Any] {
                ["id": 0, "content": content, "single_word": single, "lstrip": strip, "rstrip": strip,
                 "normalized": normalized, "special": special]
            }
            $0["added_tokens"] = [
                token("<s>", normalized: false, special: true),
                token("<mask>", strip: true, normalized: false, special: true),
                token("bc", single: true, normalized: true, special: false),
                token("ca", normalized: true, special: false),
            ]
        })
        #expect(tokenizer.encode(text, addSpecialTokens: false) == ids)
        #expect(try tokenizer.decode(ids) == decoded)
        #expect(try tokenizer.decode(ids, skipSpecialTokens: true) == withoutSpecial)
    }

    @Test func rawScalarModelWithUnknownTokenAndNoDecoder() throws {
        let tokenizer = try Tokenizer(data: tokenizerJSON {
            $0["pre_tokenizer"] = NSNull()
            $0["decoder"] = NSNull()
            setModel(&$0, "vocab", ["<unk>": 0, "a": 1, "b": 2, "ab": 3, "é": 4])
            setModel(&$0, "merges", ["a b"])
            setModel(&$0, "unk_token", "<unk>")
            setModel(&$0, "fuse_unk", true)
            $0["added_tokens"] = []
        })
        #expect(tokenizer.encode("abzzéb", addSpecialTokens: false) == [3, 0, 4, 2])
        #expect(try tokenizer.decode([3, 1, 4]) == "ab a é")  // no decoder: joined with spaces
    }

    /// (top-level key, its JSON value, the field the error must name, the kind it must name)
    @Test(arguments: [
        ("normalizer", #"{"type": "NFC"}"#, "normalizer.type", "NFC"),
        ("pre_tokenizer",
         #"{"type": "Sequence", "pretokenizers": [{"type": "ByteLevel"}, {"type": "Metaspace", "replacement": "▁"}]}"#,
         "pre_tokenizer.pretokenizers[1].type", "Metaspace"),
        ("pre_tokenizer", #"{"type": "Split", "pattern": {"Regex": "\\p{L}+"}, "behavior": "Isolated", "invert": false}"#,
         "pre_tokenizer.pattern.Regex", #"\p{L}+"#),
        ("pre_tokenizer", #"{"type": "Punctuation", "behavior": "Sideways"}"#, "pre_tokenizer.behavior", "Sideways"),
        ("model", #"{"type": "Unigram", "unk_id": 0, "vocab": [["a", -1.0]]}"#, "model.type", "Unigram"),
        ("model", #"{"type": "WordPiece", "unk_token": "[UNK]", "vocab": {"a": 0}}"#, "model.type", "WordPiece"),
        ("decoder", #"{"type": "Metaspace", "replacement": "▁"}"#, "decoder.type", "Metaspace"),
        ("post_processor", #"{"type": "Frobnicate"}"#, "post_processor.type", "Frobnicate"),
    ])
    func unsupportedComponentsAreNamed(key: String, json: String, field: String, kind: String) throws {
        let value = try JSONSerialization.jsonObject(with: Data(json.utf8))
        let data = tokenizerJSON { $0[key] = value }
        #expect(throws: TokenizerError.unsupported(field: field, kind: kind)) { try Tokenizer(data: data) }
    }

    @Test func unsupportedOptionsAreNamed() {
        #expect(throws: TokenizerError.unsupportedOption(field: "model.dropout", value: "0.1")) {
            try Tokenizer(data: tokenizerJSON { setModel(&$0, "dropout", 0.1) })
        }
        #expect(throws: TokenizerError.unsupportedOption(field: "model.continuing_subword_prefix", value: "##")) {
            try Tokenizer(data: tokenizerJSON { setModel(&$0, "continuing_subword_prefix", "##") })
        }
        #expect(throws: TokenizerError.unsupported(field: "truncation", kind: "non-null")) {
            try Tokenizer(data: tokenizerJSON { $0["truncation"] = ["max_length": 8] })
        }
    }

    @Test(arguments: ["{not json", "[]", "", "{\"model\": 3}", "{\"added_tokens\": []}"])
    func malformedJSONIsATypedError(text: String) {
        let error = #expect(throws: TokenizerError.self) { try Tokenizer(data: Data(text.utf8)) }
        guard case .malformedJSON? = error else {
            Issue.record("expected malformedJSON, got \(String(describing: error))")
            return
        }
    }

    @Test func truncatedFalconFileIsMalformed() throws {
        let url = Fixtures.tinyModelDirectory.appendingPathComponent("tokenizer.json")
        let data = try Data(contentsOf: url)
        let error = #expect(throws: TokenizerError.self) { try Tokenizer(data: data.prefix(100_000)) }
        guard case .malformedJSON? = error else {
            Issue.record("expected malformedJSON, got \(String(describing: error))")
            return
        }
    }

    @Test func inconsistentMergesAreRejected() {
        let error = #expect(throws: TokenizerError.self) {
            try Tokenizer(data: tokenizerJSON { setModel(&$0, "merges", ["a q"]) })
        }
        guard case .invalidVocabulary? = error else {
            Issue.record("expected invalidVocabulary, got \(String(describing: error))")
            return
        }
    }

    @Test func missingFileIsATypedError() {
        let error = #expect(throws: TokenizerError.self) {
            try Tokenizer(contentsOf: URL(fileURLWithPath: "/nonexistent/tokenizer.json"))
        }
        guard case .unreadableFile(let path, _)? = error else {
            Issue.record("expected unreadableFile, got \(String(describing: error))")
            return
        }
        #expect(path == "/nonexistent/tokenizer.json")
    }

    @Test func modelDirectoryUsesItsTokenizerElseTheBundledOne() throws {
        let own = try Tokenizer.load(modelDirectory: Fixtures.tinyModelDirectory)
        #expect(own.encode("Hello world", addSpecialTokens: false) == [9856, 1079])
        let bundled = try Tokenizer.load(modelDirectory: Fixtures.root.appendingPathComponent("models/tiny-bf16"))
        #expect(bundled.encode("Hello world", addSpecialTokens: false) == [9856, 1079])
        #expect(bundled.vocabSize == 65024)
    }
}
