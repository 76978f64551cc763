import ArgumentParser
import FalconMamba

@main
struct Mambad: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mambad",
        abstract: "A local Falcon-Mamba language-model daemon and its tools.",
        version: "0.1.0",
        subcommands: [Serve.self, Inspect.self, Run.self, Tokenize.self, Detokenize.self, TokenizerBench.self, Bench.self,
                      ServeBench.self])
}

/// Options shared by every command that loads a model.
struct ModelOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("A Hugging Face model folder (config.json, *.safetensors).", valueName: "dir"))
    var model: String

    @Option(help: ArgumentHelp("4-bit products: fast (int8 activations, AVX-512 VNNI) or exact (bitsandbytes-identical).",
                               valueName: "fast|exact"))
    var precision: Precision = .fast

    @Option(name: .customLong("lm-head"), help: LMHeadPrecision.optionHelp)
    var lmHead: LMHeadPrecision = .int8

    func load() throws -> FalconMambaModel {
        try FalconMambaModel(directory: model, precision: precision, lmHead: lmHead)
    }
}

extension Precision: ExpressibleByArgument {}
extension LMHeadPrecision: ExpressibleByArgument {
    /// `--lm-head`'s help, the same for run, bench and serve.
    static var optionHelp: ArgumentHelp {
        ArgumentHelp("The fast path's lm_head: int8, or 4bit (a 4-bit pass, the 64 likeliest tokens rescored exactly).",
                     valueName: "int8|4bit")
    }
}
