import ArgumentParser
import Foundation
import Tokenizer

// Tokenizer commands of `mambad`, for the main command to register as subcommands:
// `Tokenize`, `Detokenize` and `TokenizerBench` (`bench-tokenizer`).

/// `--tokenizer FILE | --model DIR`, shared by the tokenizer commands.
struct TokenizerSource: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("A tokenizer.json file.", valueName: "file"))
    var tokenizer: String?

    @Option(name: .long, help: ArgumentHelp(
        "A model directory: its tokenizer.json if present, else the bundled Falcon tokenizer.",
        valueName: "dir"))
    var model: String?

    func validate() throws {
        if tokenizer != nil && model != nil {
            throw ValidationError("Give --tokenizer or --model, not both.")
        }
    }

    /// The chosen tokenizer; the bundled Falcon one by default.
    func load() throws -> Tokenizer {
        if let tokenizer { return try Tokenizer(contentsOf: URL(fileURLWithPath: tokenizer)) }
        if let model { return try Tokenizer.load(modelDirectory: URL(fileURLWithPath: model, isDirectory: true)) }
        return try Tokenizer.falcon()
    }
}

/// Reads all of standard input as UTF-8 (ill-formed bytes become U+FFFD).
private func readStandardInput() -> String {
    String(decoding: FileHandle.standardInput.readDataToEndOfFile(), as: UTF8.self)
}

/// Writes to standard output without a trailing newline.
private func writeOut(_ text: String) {
    FileHandle.standardOutput.write(Data(text.utf8))
}

/// A piece made printable on one line: backslash, C0 controls and DEL are escaped.
func escapedPiece(_ piece: String) -> String {
    var out = ""
    for s in piece.unicodeScalars {
        switch s {
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        case "\u{00}"..."\u{1F}", "\u{7F}":
            let hex = String(s.value, radix: 16)
            out += "\\x" + (hex.count == 1 ? "0" : "") + hex
        default: out.unicodeScalars.append(s)
        }
    }
    return out
}

struct Tokenize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the token ids of a text.",
        discussion: """
            With no TEXT or with -, reads standard input (all of it, trailing newline included). \
            Prints the ids space-separated; with --pieces one `id 'piece'` line per token (\\n, \\t, \\r, \
            \\\\ and other control characters escaped); with --json {"tokens":[...],"pieces":[...]}.
            """)

    @OptionGroup var source: TokenizerSource

    @Flag(help: "Print one `id 'piece'` line per token.")
    var pieces = false

    @Flag(help: "Print {\"tokens\":[...],\"pieces\":[...]}.")
    var json = false

    @Argument(help: "The text, or - for standard input.")
    var text: String?

    func run() throws {
        let tokenizer = try source.load()
        let input = (text == nil || text == "-") ? readStandardInput() : text!
        let ids = tokenizer.encode(input, addSpecialTokens: true)
        if json {
            struct Output: Encodable {
                var tokens: [Int]
                var pieces: [String]
            }
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.withoutEscapingSlashes]
            let data = try encoder.encode(Output(tokens: ids, pieces: try tokenizer.pieces(ids)))
            print(String(decoding: data, as: UTF8.self))
        } else if pieces {
            for (id, piece) in zip(ids, try tokenizer.pieces(ids)) {
                print("\(id) '\(escapedPiece(piece))'")
            }
        } else {
            print(ids.map(String.init).joined(separator: " "))
        }
    }
}

struct Detokenize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the text of token ids.",
        discussion: "IDS are separated by commas and/or spaces; with none or -, they are read from standard input.")

    @OptionGroup var source: TokenizerSource

    @Flag(name: .customLong("skip-special"), help: "Leave out special tokens such as <|endoftext|>.")
    var skipSpecial = false

    @Argument(help: "Token ids, e.g. 9856,1079 or \"9856 1079\".")
    var ids: [String] = []

    func run() throws {
        let tokenizer = try source.load()
        let words = (ids.isEmpty || ids == ["-"]) ? [readStandardInput()] : ids
        var parsed: [Int] = []
        for word in words {
            for field in word.split(whereSeparator: { $0 == "," || $0.isWhitespace }) {
                guard let id = Int(field) else { throw ValidationError("Not a token id: \(field)") }
                parsed.append(id)
            }
        }
        let text = try tokenizer.decode(parsed, skipSpecialTokens: skipSpecial)
        // The text exactly; a newline only to keep a terminal prompt tidy.
        writeOut(isatty(STDOUT_FILENO) != 0 ? text + "\n" : text)
    }
}

struct TokenizerBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-tokenizer",
        abstract: "Measure single-threaded encode throughput on text files.",
        discussion: """
            Each run encodes every file as one string (or, with --lines, line by line); the median of \
            the runs is reported as MB/s (10^6 bytes of UTF-8 per second) and tokens/s.
            """)

    @Option(name: .long, help: ArgumentHelp("A tokenizer.json file (default: the bundled Falcon one).",
                                            valueName: "file"))
    var tokenizer: String?

    @Option(name: .customLong("repeat"), help: "Number of timed runs.")
    var repetitions = 5

    @Flag(help: "Encode each line on its own instead of each file as one string.")
    var lines = false

    @Option(name: .customLong("dump-ids"), help: ArgumentHelp(
        "Write the ids of the last run here, space-separated, one line per file.", valueName: "file"))
    var dumpIds: String?

    @Argument(help: "Text files to encode.")
    var files: [String]

    func validate() throws {
        if repetitions < 1 { throw ValidationError("--repeat must be at least 1.") }
        if files.isEmpty { throw ValidationError("Give at least one file.") }
    }

    /// The lines of `text`, each with its "\n" (the last one may lack it); they add up to `text`.
    static func splitLines(_ text: String) -> [String] {
        var lines: [String] = []
        let utf8 = text.utf8
        var start = utf8.startIndex
        for i in utf8.indices where utf8[i] == 0x0A {
            let next = utf8.index(after: i)
            lines.append(String(text[start..<next]))
            start = next
        }
        if start < utf8.endIndex { lines.append(String(text[start...])) }
        return lines
    }

    func run() throws {
        let loadStart = ContinuousClock.now
        let tok = try tokenizer.map { try Tokenizer(contentsOf: URL(fileURLWithPath: $0)) } ?? Tokenizer.falcon()
        let loadTime = ContinuousClock.now - loadStart
        let texts = try files.map { path in
            String(decoding: try Data(contentsOf: URL(fileURLWithPath: path)), as: UTF8.self)
        }
        let inputs: [[String]] = lines ? texts.map(Self.splitLines) : texts.map { [$0] }
        let bytes = texts.reduce(0) { $0 + $1.utf8.count }

        var seconds: [Double] = []
        var tokenCount = 0
        var lastIds: [[Int]] = []
        for _ in 0..<repetitions {
            var ids: [[Int]] = []
            let start = ContinuousClock.now
            for chunks in inputs {
                var fileIds: [Int] = []
                for chunk in chunks { fileIds += tok.encode(chunk, addSpecialTokens: false) }
                ids.append(fileIds)
            }
            let elapsed = ContinuousClock.now - start
            seconds.append(Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18)
            tokenCount = ids.reduce(0) { $0 + $1.count }
            lastIds = ids
        }
        seconds.sort()
        let median = seconds[seconds.count / 2]
        if let dumpIds {
            let text = lastIds.map { $0.map(String.init).joined(separator: " ") }.joined(separator: "\n") + "\n"
            try Data(text.utf8).write(to: URL(fileURLWithPath: dumpIds))
        }
        print("load: \(String(format: "%.1f", Double(loadTime.components.attoseconds) * 1e-15 + Double(loadTime.components.seconds) * 1e3)) ms")
        print("input: \(bytes) bytes in \(files.count) file(s)\(lines ? ", line by line" : ""), \(tokenCount) tokens")
        print("median of \(repetitions): \(String(format: "%.3f", median)) s, "
            + "\(String(format: "%.2f", Double(bytes) / median / 1e6)) MB/s, "
            + "\(String(format: "%.0f", Double(tokenCount) / median)) tokens/s")
    }
}
