import Foundation
import Testing

/// Runs the real `mambad` executable built next to the test bundle.
struct Mambad {
    static let executable: URL = {
        let exe = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        return exe.deletingLastPathComponent().appendingPathComponent("mambad")
    }()

    static let fixtures = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fixtures")

    static func model(_ name: String) -> String { fixtures.appendingPathComponent("models/\(name)").path }

    struct Output {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    /// The fast path's packed-weights cache for these runs: a folder of this test process,
    /// removed when it exits, so the tests leave nothing in the user's ~/.cache.
    static let cacheHome: String = {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("mambad-cli-tests-\(getpid())").path
        atexit { try? FileManager.default.removeItem(atPath: Mambad.cacheHome) }
        return path
    }()

    static func run(_ arguments: [String], stdin: String? = nil) throws -> Output {
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        var environment = ProcessInfo.processInfo.environment
        environment["XDG_CACHE_HOME"] = cacheHome
        environment.removeValue(forKey: "CACHE_DIRECTORY")
        process.environment = environment
        let out = Pipe(), err = Pipe(), input = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = input
        try process.run()
        if let stdin { input.fileHandleForWriting.write(Data(stdin.utf8)) }
        try input.fileHandleForWriting.close()
        // read both pipes before waiting, so a large output cannot block the child
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        let errData = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Output(status: process.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
                      stderr: String(decoding: errData, as: UTF8.self))
    }
}

/// Reads the greedy continuation of a reference sequence from the fixture manifest's safetensors.
func referenceTokens(_ fixture: String, _ tensor: String) throws -> [Int] {
    let data = try Data(contentsOf: Mambad.fixtures.appendingPathComponent("reference/\(fixture).safetensors"))
    let length = Int(data.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
    let header = try JSONSerialization.jsonObject(with: data.subdata(in: 8..<(8 + length))) as! [String: Any]
    let entry = header[tensor] as! [String: Any]
    let offsets = entry["data_offsets"] as! [Int]
    return data.subdata(in: (8 + length + offsets[0])..<(8 + length + offsets[1])).withUnsafeBytes { raw in
        (0..<(offsets[1] - offsets[0]) / 4).map { Int(raw.loadUnaligned(fromByteOffset: $0 * 4, as: Int32.self)) }
    }
}

@Suite struct CommandLineTests {
    @Test func inspectDescribesTheModel() throws {
        let output = try Mambad.run(["inspect", "--model", Mambad.model("tiny-fp4-like-7b")])
        #expect(output.status == 0, "\(output.stderr)")
        #expect(output.stdout.contains("falcon_mamba"))
        #expect(output.stdout.contains("3 layers, hidden 64, inner 128"))
        #expect(output.stdout.contains("fp4 block 64, float16"))
        #expect(output.stdout.contains("backbone.layers.*.mixer.in_proj.weight"))
        #expect(output.stdout.contains("mapped"))
    }

    @Test func runJSONMatchesTheReferenceGreedyTokens() throws {
        let prompt = try referenceTokens("tiny-nf4", "seq1.input_ids")
        let greedy = try referenceTokens("tiny-nf4", "seq1.greedy")
        // exact products: the reference's 12 greedy steps include near-ties that the int8
        // path's error may flip (FastPathAccuracyTests checks it where margins allow)
        let output = try Mambad.run(["run", "--model", Mambad.model("tiny-nf4"), "--precision", "exact", "--tokens",
                                     prompt.map(String.init).joined(separator: ","),
                                     "--max-tokens", "12", "--ignore-eos", "--json", "--logprobs", "2"])
        #expect(output.status == 0, "\(output.stderr)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(output.stdout.utf8)) as? [String: Any])
        #expect(object["tokens"] as? [Int] == greedy)
        #expect(object["finishReason"] as? String == "length")
        let usage = try #require(object["usage"] as? [String: Int])
        #expect(usage["promptTokens"] == prompt.count)
        #expect(usage["completionTokens"] == 12)
        let logprobs = try #require(object["logprobs"] as? [[String: Any]])
        #expect(logprobs.count == 12)
        #expect((logprobs[0]["top"] as? [[String: Any]])?.count == 2)
        #expect((logprobs[0]["top"] as? [[String: Any]])?.first?["token"] as? Int == greedy[0])
        for key in ["queueMs", "prefillMs", "firstTokenMs", "decodeMs", "tokensPerSecond"] {
            #expect((object["timings"] as? [String: Any])?[key] is Double, "timings.\(key)")
        }
    }

    /// `bench` on a tiny checkpoint: the table, and with --each a line a round that says
    /// batch 1's share of the round's probe and batch 2's multiple of batch 1.
    @Test func benchPrintsTheTableAndEveryRound() throws {
        let lines = try bench(["--threads", "1", "--repeat", "2", "--each"])
        #expect(lines.contains { $0.hasPrefix("threads") && $0.contains("tg b=1 tok/s") && $0.contains("tg b=2 tok/s") })
        let rounds = lines.filter { $0.hasPrefix("  round ") }
        #expect(rounds.count == 2, "\(lines)")
        for line in rounds {
            #expect(line.contains("prefetch auto: probe "), "\(line)")
            let summary = try #require(line.firstRange(of: "(b=1 at ").map { line[$0.lowerBound...] }, "\(line)")
            #expect(summary.contains("% of the probe, b=2 ") && summary.hasSuffix("x b=1)"), "\(line)")
        }
        #expect(lines.contains { $0.hasPrefix("1        fast       auto") }, "\(lines)")
    }

    /// `mambad bench` of the fast path on a tiny checkpoint, 3 decode steps at batch 1 and
    /// 2 after a 4-token prompt, with `arguments` besides; its output's lines.
    func bench(_ arguments: [String]) throws -> [String] {
        let output = try Mambad.run(["bench", "--model", Mambad.model("tiny-fp4-like-7b"), "--batch", "1,2", "--tokens", "3",
                                     "--prompt", "4", "--precision", "fast"] + arguments)
        #expect(output.status == 0, "\(output.stderr)")
        return output.stdout.split(separator: "\n").map(String.init)
    }

    /// `bench --phases`: a line a batch size with every phase's ms a step and share of the
    /// probe, and the rest of the step.
    @Test func benchPrintsDecodePhases() throws {
        let lines = try bench(["--threads", "2", "--repeat", "1", "--phases"])
        for batch in [1, 2] {
            let line = try #require(lines.first { $0.hasPrefix("  phases at b=\(batch), ") }, "\(lines)")
            for phase in ["in_proj+conv", "x_proj", "dt_proj+scan", "out_proj", "lm_head"] {
                #expect(line.contains(", \(phase) ") || line.contains(": \(phase) "), "\(phase): \(line)")
            }
            #expect(line.contains(" ms a step: ") && line.contains(", other "), "\(line)")
        }
    }

    @Test func sameSeedSameOutput() throws {
        let arguments = ["run", "--model", Mambad.model("tiny-bf16"), "--tokens", "4,5,6", "--max-tokens", "16",
                         "--temperature", "1", "--top-p", "0.9", "--seed", "99", "--json"]
        let a = try Mambad.run(arguments), b = try Mambad.run(arguments)
        #expect(a.status == 0)
        let tokens = { (o: Mambad.Output) in (try JSONSerialization.jsonObject(with: Data(o.stdout.utf8)) as? [String: Any])?["tokens"] as? [Int] }
        #expect(try tokens(a) == tokens(b))
        #expect(try tokens(a)?.count ?? 0 > 0)
    }

    @Test func badModelFolderNamesTheFile() throws {
        let missing = FileManager.default.temporaryDirectory.appendingPathComponent("no-such-model-\(UUID())").path
        let output = try Mambad.run(["inspect", "--model", missing])
        #expect(output.status != 0)
        #expect(output.stderr.contains(missing + "/config.json"))
    }

    @Test func badArgumentsAreRejected() throws {
        let model = Mambad.model("tiny-bf16")
        #expect(try Mambad.run(["run", "--model", model, "--tokens", "1", "--max-tokens", "-1"]).status != 0)
        #expect(try Mambad.run(["run", "--model", model, "--tokens", "1,x"]).status != 0)
        let outOfRange = try Mambad.run(["run", "--model", model, "--tokens", "5000"])
        #expect(outOfRange.status != 0)
        #expect(outOfRange.stderr.contains("5000"))
    }
}

/// The text cases of the Falcon-vocabulary fixture (prompt, ids, greedy continuation).
struct FalconVocabCase: Decodable {
    let prompt: String
    let prompt_ids: [Int]
    let greedy_ids: [Int]
    let greedy_text: String

    static let all: [FalconVocabCase] = {
        struct File: Decodable { let cases: [FalconVocabCase] }
        let url = Mambad.fixtures.appendingPathComponent("reference/tiny-falcon-vocab-nf4.json")
        return try! JSONDecoder().decode(File.self, from: Data(contentsOf: url)).cases
    }()
}

@Suite struct TextCommandLineTests {
    @Test(arguments: FalconVocabCase.all.indices)
    func runWithATextPromptMatchesTheReference(index: Int) throws {
        let c = FalconVocabCase.all[index]
        let output = try Mambad.run(["run", "--model", Mambad.model("tiny-falcon-vocab-nf4"), "--max-tokens", "\(c.greedy_ids.count)",
                                     "--ignore-eos", "--precision", "exact", "--json", c.prompt])
        #expect(output.status == 0, "\(output.stderr)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(output.stdout.utf8)) as? [String: Any])
        #expect(object["tokens"] as? [Int] == c.greedy_ids)
        #expect(object["text"] as? String == c.greedy_text)
        #expect((object["usage"] as? [String: Int])?["promptTokens"] == c.prompt_ids.count)
    }

    @Test(arguments: ["fast", "exact"]) func streamedTextEqualsTheJSONText(precision: String) throws {
        let c = FalconVocabCase.all[0]
        let arguments = ["run", "--model", Mambad.model("tiny-falcon-vocab-nf4"), "--max-tokens", "16", "--ignore-eos",
                         "--precision", precision, c.prompt]
        let plain = try Mambad.run(arguments)
        #expect(plain.status == 0)
        let json = try Mambad.run(arguments + ["--json"])
        let object = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any])
        let text = try #require(object["text"] as? String)
        #expect(!text.isEmpty)
        #expect(plain.stdout == text + "\n")
        if precision == "exact" { #expect(text == c.greedy_text) }
    }

    @Test func tokenizeAndDetokenize() throws {
        let c = FalconVocabCase.all[0]
        let tokens = try Mambad.run(["tokenize", "--model", Mambad.model("tiny-falcon-vocab-nf4"), c.prompt])
        #expect(tokens.status == 0, "\(tokens.stderr)")
        #expect(tokens.stdout.split(whereSeparator: { $0 == " " || $0 == "\n" || $0 == "," }).compactMap { Int($0) } == c.prompt_ids)
        let text = try Mambad.run(["detokenize", "--model", Mambad.model("tiny-falcon-vocab-nf4"), c.prompt_ids.map(String.init).joined(separator: ",")])
        #expect(text.status == 0, "\(text.stderr)")
        #expect(text.stdout.hasPrefix(c.prompt))
    }

    @Test func textPromptWithoutATokenizerIsAClearError() throws {
        let output = try Mambad.run(["run", "--model", Mambad.model("tiny-bf16"), "hello"])
        #expect(output.status != 0)
        #expect(output.stderr.contains("--tokens"))
    }
}
