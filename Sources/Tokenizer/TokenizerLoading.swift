import Foundation

// Loading from files, data and the bundled Falcon copy. The only file of the target that uses
// Foundation (JSONDecoder, Data, URL, Bundle).
//
// Resources/falcon-tokenizer.json (notice kept here: another file in Resources/ would need an
// `exclude:` in Package.swift): the Hugging Face tokenizer.json of TII's Falcon-7B / -7B-Instruct /
// -40B, byte for byte, from `tiiuae/falcon-7b-instruct`, git blob
// 24f2d2e20d26ae4f0729da0d008e0ee6d81fc560 (commit bacaa8a883d7eced821ab877344eaa840f39004f,
// 2023-05-24, "Upload tokenizer"); sha256 d6c5cdac1421ea998722aa88ea1cb630b2a9ec63bf8a85331bb3d9d321507186.
// Copyright Technology Innovation Institute, licensed under the Apache License 2.0 (model card:
// `license: apache-2.0`). How it was obtained and checked: Tests/Fixtures/tokenizer/README.md.

extension Tokenizer {
    /// Loads a `tokenizer.json`.
    public convenience init(contentsOf url: URL) throws(TokenizerError) {
        let data: Data
        do {
            data = try Data(contentsOf: url)
        } catch {
            throw .unreadableFile(path: url.path, reason: "\(error.localizedDescription)")
        }
        try self.init(data: data)
    }

    /// Parses the bytes of a `tokenizer.json`.
    public convenience init(data: Data) throws(TokenizerError) {
        let file: TokenizerFile
        do {
            file = try JSONDecoder().decode(TokenizerFile.self, from: data)
        } catch let error as DecodingError {
            throw .malformedJSON(Self.describe(error))
        } catch {
            throw .malformedJSON("\(error)")
        }
        try self.init(file: file)
    }

    /// Falcon-7B's tokenizer (65,024 ids), bundled with this target (provenance at the top of this file).
    public static func falcon() throws(TokenizerError) -> Tokenizer {
        guard let url = Bundle.module.url(forResource: "falcon-tokenizer", withExtension: "json") else {
            throw .missingResource("falcon-tokenizer.json")
        }
        return try Tokenizer(contentsOf: url)
    }

    /// The tokenizer of a model directory: `DIR/tokenizer.json` when present, else the bundled
    /// Falcon tokenizer.
    public static func load(modelDirectory: URL) throws(TokenizerError) -> Tokenizer {
        let file = modelDirectory.appendingPathComponent("tokenizer.json")
        if FileManager.default.fileExists(atPath: file.path) {
            return try Tokenizer(contentsOf: file)
        }
        return try falcon()
    }

    private static func describe(_ error: DecodingError) -> String {
        func path(_ c: DecodingError.Context) -> String {
            let p = c.codingPath.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined()
            return p.isEmpty ? "" : " at \(p.hasPrefix(".") ? String(p.dropFirst()) : p)"
        }
        switch error {
        case .dataCorrupted(let c): return "\(c.debugDescription)\(path(c))"
        case .keyNotFound(let key, let c): return "missing key \(key.stringValue)\(path(c))"
        case .typeMismatch(_, let c): return "\(c.debugDescription)\(path(c))"
        case .valueNotFound(_, let c): return "\(c.debugDescription)\(path(c))"
        @unknown default: return "\(error)"
        }
    }
}
