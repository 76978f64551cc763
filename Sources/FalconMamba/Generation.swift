/// One generation job: a prompt in token ids and how to continue it.
public struct GenerationRequest: Sendable {
    public var prompt: [Int]
    public var maxTokens: Int
    public var sampling: SamplingParameters
    public var seed: UInt64
    /// Return this many top alternatives (with log-probabilities) per generated token.
    public var logprobs: Int
    /// Stop when the model produces its end-of-sequence token (not included in the output).
    public var stopAtEndOfSequence: Bool

    public init(prompt: [Int], maxTokens: Int = 64, sampling: SamplingParameters = .init(),
                seed: UInt64 = 0, logprobs: Int = 0, stopAtEndOfSequence: Bool = true) {
        self.prompt = prompt
        self.maxTokens = maxTokens
        self.sampling = sampling
        self.seed = seed
        self.logprobs = logprobs
        self.stopAtEndOfSequence = stopAtEndOfSequence
    }
}

public struct GeneratedToken: Sendable, Equatable {
    public var id: Int
    /// log-probability of this token under the model (before sampling rules); 0 unless asked for.
    public var logprob: Float
    public var top: [Alternative]

    public struct Alternative: Sendable, Equatable {
        public var id: Int
        public var logprob: Float
    }
}

public enum FinishReason: String, Sendable {
    /// The model ended the sequence, or the caller stopped it.
    case stop
    /// maxTokens reached.
    case length
}

public struct GenerationResult: Sendable {
    public var tokens: [GeneratedToken]
    public var finishReason: FinishReason
    public var promptTokens: Int
    public var prefillSeconds: Double
    /// From the start of the call to the first generated token.
    public var firstTokenSeconds: Double
    public var decodeSeconds: Double
}

extension FalconMambaModel {
    /// Prefill the prompt, then sample and decode until maxTokens, end of sequence, or
    /// `onToken` returns false. Generation continues from `state` (e.g. a snapshot of a
    /// prefix of the prompt's context), which is left untouched.
    public func generate(_ request: GenerationRequest, from state: SequenceState? = nil,
                         onToken: (GeneratedToken) -> Bool = { _ in true }) throws(ModelError) -> GenerationResult {
        let clock = ContinuousClock()
        let start = clock.now
        var state = state ?? newState()
        var logits = try prefill(request.prompt, state: &state).lastLogits
        let prefillSeconds = (clock.now - start).seconds
        var sampler = Sampler(parameters: request.sampling, seed: request.seed)
        var history = request.prompt
        var tokens: [GeneratedToken] = []
        var finish = FinishReason.length
        var firstTokenSeconds = prefillSeconds
        while tokens.count < request.maxTokens {
            let id = sampler.sample(logits, history: history)
            if request.stopAtEndOfSequence, id == config.eosTokenId {
                finish = .stop
                break
            }
            var token = GeneratedToken(id: id, logprob: 0, top: [])
            if request.logprobs > 0 {
                let distribution = LogProbabilities(logits)
                token.logprob = distribution.logprob(of: id)
                token.top = distribution.top(request.logprobs).map { .init(id: $0.token, logprob: $0.logprob) }
            }
            tokens.append(token)
            history.append(id)
            if tokens.count == 1 { firstTokenSeconds = (clock.now - start).seconds }
            guard onToken(token) else { finish = .stop; break }
            if tokens.count < request.maxTokens {
                logits = try decodeStep(id, state: &state).lastLogits
            }
        }
        let total = (clock.now - start).seconds
        return GenerationResult(tokens: tokens, finishReason: finish, promptTokens: request.prompt.count,
                                prefillSeconds: prefillSeconds, firstTokenSeconds: firstTokenSeconds,
                                decodeSeconds: total - prefillSeconds)
    }
}

extension Duration {
    var seconds: Double {
        let (s, attoseconds) = components
        return Double(s) + Double(attoseconds) * 1e-18
    }
}
