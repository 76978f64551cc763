#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// How the next token is chosen from the logits. Defaults select greedy decoding.
/// Order of application (as in Hugging Face transformers): repetition penalty,
/// temperature, top-k, top-p, min-p, then a draw from what is left.
public struct SamplingParameters: Sendable, Equatable {
    /// 0 = greedy (argmax after the repetition penalty).
    public var temperature: Float = 0
    /// Keep the k most likely tokens; 0 = off.
    public var topK: Int = 0
    /// Keep the smallest set of tokens whose probability adds up to p; 1 = off.
    public var topP: Float = 1
    /// Drop tokens less likely than minP times the most likely one; 0 = off.
    public var minP: Float = 0
    /// Divide positive (multiply negative) logits of recently seen tokens by this; 1 = off.
    public var repeatPenalty: Float = 1
    /// How many of the most recent tokens (prompt included) the penalty looks at.
    public var repeatLastN: Int = 64

    public init(temperature: Float = 0, topK: Int = 0, topP: Float = 1, minP: Float = 0,
                repeatPenalty: Float = 1, repeatLastN: Int = 64) {
        self.temperature = temperature
        self.topK = topK
        self.topP = topP
        self.minP = minP
        self.repeatPenalty = repeatPenalty
        self.repeatLastN = repeatLastN
    }

    public var isGreedy: Bool { temperature <= 0 }
}

/// xoshiro256** seeded through SplitMix64: small, fast, and the same sequence on every
/// platform, so the same seed gives the same completion.
public struct SeededGenerator: RandomNumberGenerator, Sendable {
    private var s: (UInt64, UInt64, UInt64, UInt64)

    public init(seed: UInt64) {
        var x = seed
        func splitMix() -> UInt64 {
            x &+= 0x9E37_79B9_7F4A_7C15
            var z = x
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        s = (splitMix(), splitMix(), splitMix(), splitMix())
    }

    public mutating func next() -> UInt64 {
        let result = ((s.1 &* 5) << 7 | (s.1 &* 5) >> 57) &* 9
        let t = s.1 << 17
        s.2 ^= s.0; s.3 ^= s.1; s.1 ^= s.2; s.0 ^= s.3
        s.2 ^= t
        s.3 = s.3 << 45 | s.3 >> 19
        return result
    }

    /// A uniform Double in [0, 1).
    public mutating func nextUnit() -> Double { Double(next() >> 11) * 0x1p-53 }
}

/// Chooses tokens from logits with `SamplingParameters` and its own seeded generator.
public struct Sampler: Sendable {
    public let parameters: SamplingParameters
    private var generator: SeededGenerator
    private var candidates: [(id: Int, logit: Float)] = []

    public init(parameters: SamplingParameters, seed: UInt64) {
        self.parameters = parameters
        generator = SeededGenerator(seed: seed)
    }

    /// The next token, given the logits of the last position and the tokens so far.
    public mutating func sample(_ logits: ArraySlice<Float>, history: some BidirectionalCollection<Int>) -> Int {
        let p = parameters
        var logits = Array(logits)
        if p.repeatPenalty != 1, p.repeatLastN > 0 {
            for token in Set(history.suffix(p.repeatLastN)) where logits.indices.contains(token) {
                logits[token] = logits[token] > 0 ? logits[token] / p.repeatPenalty : logits[token] * p.repeatPenalty
            }
        }
        guard !p.isGreedy else { return Self.argmax(logits) }

        // Tokens more than e^-30 below the best cannot change a float32 draw: skip them.
        let maxLogit = logits.max() ?? 0
        let floor = maxLogit - 30 * p.temperature
        candidates.removeAll(keepingCapacity: true)
        for (id, logit) in logits.enumerated() where logit >= floor { candidates.append((id, logit / p.temperature)) }
        candidates.sort { $0.logit > $1.logit || ($0.logit == $1.logit && $0.id < $1.id) }
        if p.topK > 0, candidates.count > p.topK { candidates.removeLast(candidates.count - p.topK) }

        let top = candidates[0].logit
        var probabilities = candidates.map { Double(expf($0.logit - top)) }
        var total = probabilities.reduce(0, +)
        var keep = probabilities.count
        if p.topP < 1 {
            var cumulative = 0.0
            for (i, q) in probabilities.enumerated() {
                cumulative += q / total
                if cumulative >= Double(p.topP) { keep = i + 1; break }
            }
        }
        if p.minP > 0 {
            // probabilities[0] is the largest, scaled to 1
            keep = min(keep, max(1, probabilities.prefix(keep).firstIndex { $0 < Double(p.minP) } ?? keep))
        }
        probabilities.removeLast(probabilities.count - keep)
        total = probabilities.reduce(0, +)
        let target = generator.nextUnit() * total
        var cumulative = 0.0
        for (i, q) in probabilities.enumerated() {
            cumulative += q
            if target < cumulative { return candidates[i].id }
        }
        return candidates[keep - 1].id
    }

    /// The index of the largest logit (the first one on ties): the greedy choice.
    public static func argmax(_ logits: some Collection<Float>) -> Int {
        var best = 0, bestValue = -Float.infinity
        for (i, v) in logits.enumerated() where v > bestValue { best = i; bestValue = v }
        return best
    }
}

/// log-softmax of a logit row: the model's own probabilities, before any sampling rule.
public struct LogProbabilities {
    let logits: ArraySlice<Float>
    let logSumExp: Float

    public init(_ logits: ArraySlice<Float>) {
        self.logits = logits
        let top = logits.max() ?? 0
        var sum = 0.0
        for v in logits { sum += Double(expf(v - top)) }
        logSumExp = top + Float(log(sum))
    }

    public func logprob(of token: Int) -> Float { logits[logits.startIndex + token] - logSumExp }

    /// The n most likely tokens, most likely first.
    public func top(_ n: Int) -> [(token: Int, logprob: Float)] {
        guard n > 0 else { return [] }
        var best: [(token: Int, logit: Float)] = []
        best.reserveCapacity(n + 1)
        for (i, v) in logits.enumerated() where best.count < n || v > best[best.count - 1].logit {
            let position = best.firstIndex { v > $0.logit } ?? best.count
            best.insert((i, v), at: position)
            if best.count > n { best.removeLast() }
        }
        return best.map { ($0.token, $0.logit - logSumExp) }
    }
}
