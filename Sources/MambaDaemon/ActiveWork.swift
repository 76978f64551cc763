import FalconMamba
import MambaRPC
import Tokenizer

/// A completion admitted to the scheduler: its recurrent state and everything it has
/// produced. Touched only by the scheduler thread.
final class ActiveCompletion {
    enum Phase { case prefill, decode, finished }

    let job: Job
    let request: CompletionRequest
    var phase = Phase.prefill
    var state: SequenceState
    /// Prompt tokens already in `state`.
    var position = 0
    var cachedTokens = 0
    /// Where a snapshot is kept besides the end of the prompt: a few tokens back, so a
    /// prompt whose last word is retokenized when it grows (an editor keystroke) still hits.
    var snapshotPoint: Int?
    /// The logits after the prompt (before the first sample).
    var promptLogits: [Float] = []
    var sampler: Sampler
    var history: [Int]
    var generated: [Int] = []
    var logprobs: [CompleteResult.TokenLogprob] = []
    var text: CompletionText
    /// Tokens generated since the last progress notification.
    var unsentTokens: [Int] = []
    /// The token to feed at the next decode step.
    var pendingToken = 0
    let admitted: ContinuousClock.Instant
    var prefillEnd: ContinuousClock.Instant?
    var firstToken: ContinuousClock.Instant?

    static let snapshotTail = 8

    init(job: Job, request: CompletionRequest, state: SequenceState, tokenizer: Tokenizer?) {
        self.job = job
        self.request = request
        self.state = state
        sampler = Sampler(parameters: SamplingParameters(
            temperature: request.params.temperature, topK: request.params.topK, topP: request.params.topP,
            minP: request.params.minP, repeatPenalty: request.params.repeatPenalty,
            repeatLastN: request.params.repeatLastN), seed: request.seed)
        history = request.prompt
        text = CompletionText(tokenizer: tokenizer, stop: request.params.stop, singleLine: request.params.singleLine)
        admitted = .now
    }

    /// Hands the state to a batch without a second reference (which would force a copy).
    func takeState(placeholder: SequenceState) -> SequenceState {
        var taken = placeholder
        swap(&taken, &state)
        return taken
    }
}

/// An embedding request admitted to the scheduler: its inputs go through prefill one
/// after the other, pooled as they go.
final class ActiveEmbedding {
    let job: Job
    let request: EmbeddingRequest
    var state: SequenceState
    var input = 0
    var position = 0
    var sum: [Double]
    var last: [Float]
    var vectors: [[Float]] = []
    var finished = false

    init(job: Job, request: EmbeddingRequest, state: SequenceState, hiddenSize: Int) {
        self.job = job
        self.request = request
        self.state = state
        sum = [Double](repeating: 0, count: hiddenSize)
        last = [Float](repeating: 0, count: hiddenSize)
    }

    var promptTokens: Int { request.inputs.reduce(0) { $0 + $1.count } }

    /// Adds the hidden states of a prefill slice ([rows, hiddenSize]).
    func accumulate(_ hidden: [Float], hiddenSize h: Int) {
        let rows = hidden.count / h
        guard rows > 0 else { return }
        hidden.withUnsafeBufferPointer { p in
            for r in 0..<rows {
                for i in 0..<h { sum[i] += Double(p[r * h + i]) }
            }
            for i in 0..<h { last[i] = p[(rows - 1) * h + i] }
        }
    }

    /// The pooled (and maybe normalized) vector of the current input.
    func pooled(tokens: Int) -> [Float] {
        var v: [Float] = switch request.pooling {
        case .mean: sum.map { Float($0 / Double(max(tokens, 1))) }
        case .last: last
        }
        if request.normalize {
            let norm = v.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
            if norm > 0 { v = v.map { Float(Double($0) / norm) } }
        }
        return v
    }
}
