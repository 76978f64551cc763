import CKernels
@testable import FalconMamba
import Testing

/// The 4-bit lm_head (`LMHeadPrecision.rescored4bit`): a coarse pass over the
/// vocabulary, then the likeliest tokens' logits computed exactly.
@Suite struct RescoredLMHeadTests {
    @Test func largestFindsTheTopK() {
        var seed: UInt64 = 3
        var values = (0..<5000).map { _ -> Float in
            seed = seed &* 6364136223846793005 &+ 1442695040888963407
            return Float(seed >> 40) / Float(1 << 24)
        }
        values[17] = values[4000]  // a tie
        for k in [1, 7, 64] {
            var out = [Int](repeating: -1, count: k)
            values.withUnsafeBufferPointer { v in
                out.withUnsafeMutableBufferPointer { FalconMambaModel.largest(k, of: v.baseAddress!, count: v.count, into: $0.baseAddress!) }
            }
            let expected = values.indices.sorted { values[$0] > values[$1] || (values[$0] == values[$1] && $0 < $1) }.prefix(k)
            #expect(Set(out) == Set(expected), "k \(k)")
        }
    }

    @Test(.enabled(if: mk_q8_available() != 0, "needs an int8 kernel (AVX2 or AVX-512 VNNI)"), arguments: ["tiny-fp4-like-7b", "tiny-falcon-vocab-nf4"])
    func likeliestTokensGetExactLogits(fixture name: String) throws {
        let model = try FalconMambaModel(directory: Fixtures.modelPath(name), precision: .fast, lmHead: .rescored4bit, cache: nil)
        let head = try model.checkpoint.tensor(model.checkpoint.tensors["lm_head.weight"] != nil ? "lm_head.weight"
                                                                                                 : "backbone.embeddings.weight").floats()
        let v = model.vocabSize, h = model.hiddenSize, k = min(LMHeadPrecision.rescoredTokens, v)
        var state = model.newState()
        let output = try model.prefill([1, 17, 300, 5, 999, 42, 7, 64, 3], state: &state, logits: .all)
        for position in 0..<output.logitRows {
            let logits = output.logits[(position * v)..<((position + 1) * v)]
            let hidden = output.hidden[(position * h)..<((position + 1) * h)]
            let exact = (0..<v).map { row in zip(hidden, head[(row * h)..<((row + 1) * h)]).reduce(Float(0)) { $0 + $1.0 * $1.1 } }
            let scale = exact.map(abs).max()!
            // rescored tokens are the k largest; every other one is capped at the lowest of them
            let floor = logits.sorted(by: >)[k - 1]
            let top = logits.indices.filter { logits[$0] > floor }
            #expect(top.count < k && top.count >= k / 2, "\(name) position \(position): \(top.count) above the floor")
            for i in top { #expect(abs(logits[i] - exact[i - position * v]) <= 1e-5 * scale, "\(name) position \(position) token \(i)") }
            // the others keep the coarse estimate (within a sixteenth of the weights' range)
            var worst: Float = 0
            for i in logits.indices where logits[i] <= floor {
                worst = max(worst, abs(logits[i] - min(exact[i - position * v], floor)))
            }
            #expect(worst <= 0.15 * scale, "\(name) position \(position): coarse error \(worst / scale)")
            // greedy: the exact best token is among the rescored ones, so it wins
            #expect(Sampler.argmax(logits) == Sampler.argmax(exact), "\(name) position \(position)")
        }
    }
}
