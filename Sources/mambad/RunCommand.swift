import ArgumentParser
import FalconMamba
import Foundation
import MambaRPC

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Generate a completion in this process (no daemon).",
        discussion: """
            The prompt is text, or token ids with --tokens. Text is printed as it is generated; \
            --json prints one object shaped like the protocol's `complete` result instead.
            """)

    @OptionGroup var modelOptions: ModelOptions

    @Option(help: ArgumentHelp("The prompt as token ids, comma separated.", valueName: "ids"))
    var tokens: String?

    @Argument(help: "The prompt text.")
    var prompt: String?

    @Option(name: .customLong("max-tokens"), help: "Generate at most this many tokens.")
    var maxTokens = 64

    @Option(help: "0 = greedy.")
    var temperature: Float = 0

    @Option(name: .customLong("top-k"), help: "Keep the k most likely tokens (0 = off).")
    var topK = 0

    @Option(name: .customLong("top-p"), help: "Nucleus sampling threshold (1 = off).")
    var topP: Float = 1

    @Option(name: .customLong("min-p"), help: "Drop tokens below min-p times the best one's probability (0 = off).")
    var minP: Float = 0

    @Option(name: .customLong("repeat-penalty"), help: "Penalty for recently seen tokens (1 = off).")
    var repeatPenalty: Float = 1

    @Option(name: .customLong("repeat-last-n"), help: "How many recent tokens the penalty covers.")
    var repeatLastN = 64

    @Option(help: "Random seed: the same seed gives the same output (default: random).")
    var seed: UInt64?

    @Option(help: "Report the top-N alternatives with log-probabilities for each token.")
    var logprobs = 0

    @Flag(name: .customLong("ignore-eos"), help: "Keep generating past the end-of-sequence token.")
    var ignoreEOS = false

    @Flag(help: "Print the result as JSON (the protocol's complete result).")
    var json = false

    func validate() throws {
        guard (tokens == nil) != (prompt == nil) else {
            throw ValidationError("give exactly one of a prompt text or --tokens")
        }
        guard maxTokens >= 0 else { throw ValidationError("--max-tokens must be >= 0") }
        guard temperature >= 0 else { throw ValidationError("--temperature must be >= 0") }
        guard topK >= 0 else { throw ValidationError("--top-k must be >= 0") }
        guard topP > 0, topP <= 1 else { throw ValidationError("--top-p must be in (0, 1]") }
        guard minP >= 0, minP < 1 else { throw ValidationError("--min-p must be in [0, 1)") }
        guard repeatPenalty > 0 else { throw ValidationError("--repeat-penalty must be > 0") }
        guard repeatLastN >= 0 else { throw ValidationError("--repeat-last-n must be >= 0") }
        guard logprobs >= 0, logprobs <= 20 else { throw ValidationError("--logprobs must be in [0, 20]") }
    }

    func run() throws {
        let model = try modelOptions.load()
        let text = try TextCodec(modelDirectory: modelOptions.model, vocabSize: model.vocabSize)
        let promptTokens: [Int]
        if let tokens {
            promptTokens = try parseTokenList(tokens)
        } else {
            promptTokens = try text.encode(prompt ?? "")
        }
        guard !promptTokens.isEmpty else { throw ValidationError("the prompt has no tokens") }

        let request = GenerationRequest(
            prompt: promptTokens, maxTokens: maxTokens,
            sampling: SamplingParameters(temperature: temperature, topK: topK, topP: topP, minP: minP,
                                         repeatPenalty: repeatPenalty, repeatLastN: repeatLastN),
            seed: seed ?? UInt64.random(in: .min ... .max), logprobs: logprobs, stopAtEndOfSequence: !ignoreEOS)

        var stream = text.stream()
        let result = try model.generate(request) { token in
            if !json {
                let delta = stream.append(token.id)
                FileHandle.standardOutput.write(Data(delta.utf8))
            }
            return true
        }
        let ids = result.tokens.map(\.id)
        if json {
            let output = CompleteResult(
                text: text.decode(ids), tokens: ids,
                finishReason: result.finishReason == .stop ? .stop : .length,
                usage: .init(promptTokens: result.promptTokens, cachedTokens: 0, completionTokens: ids.count),
                timings: .init(queueMs: 0, prefillMs: result.prefillSeconds * 1e3, firstTokenMs: result.firstTokenSeconds * 1e3,
                               decodeMs: result.decodeSeconds * 1e3,
                               tokensPerSecond: result.decodeSeconds > 0 ? Double(ids.count) / result.decodeSeconds : 0),
                logprobs: logprobs > 0 ? result.tokens.map { token in
                    .init(token: token.id, text: text.piece(token.id), logprob: token.logprob,
                          top: token.top.map { .init(token: $0.id, text: text.piece($0.id), logprob: $0.logprob) })
                } : nil)
            FileHandle.standardOutput.write(try WireJSON.encode(output) + Data("\n".utf8))
        } else {
            FileHandle.standardOutput.write(Data((stream.finish() + "\n").utf8))
            let prefillRate = Double(result.promptTokens) / max(result.prefillSeconds, 1e-9)
            let decodeRate = Double(ids.count) / max(result.decodeSeconds, 1e-9)
            FileHandle.standardError.write(Data(String(
                format: "prompt %d tokens in %.1f ms (%.1f tok/s), generated %d tokens in %.1f ms (%.2f tok/s), finish: %@\n",
                result.promptTokens, result.prefillSeconds * 1e3, prefillRate, ids.count, result.decodeSeconds * 1e3, decodeRate,
                result.finishReason.rawValue).utf8))
        }
    }
}

/// "1,2,3" or "1 2 3" -> [1, 2, 3].
func parseTokenList(_ text: String) throws -> [Int] {
    try text.split(whereSeparator: { $0 == "," || $0 == " " }).map { item in
        guard let id = Int(item) else { throw ValidationError("'\(item)' is not a token id") }
        return id
    }
}
