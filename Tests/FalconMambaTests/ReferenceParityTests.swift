import FalconMamba
import Testing

/// The engine reproduces transformers' FalconMambaForCausalLM on every checkpoint layout.
@Suite struct ReferenceParityTests {
    static let tolerance: Float = 1e-4

    @Test(arguments: Fixtures.names)
    func prefillMatchesReference(fixture name: String) throws {
        let model = try FalconMambaModel(directory: Fixtures.modelPath(name))
        let reference = try Fixtures.reference(name)
        for sequence in Fixtures.fixture(name).sequences {
            let i = sequence.index
            let ids = try #require(reference.tensors["seq\(i).input_ids"]).integers()
            #expect(ids.count == sequence.length)
            var state = model.newState()
            let output = try model.prefill(ids, state: &state, logits: .all)
            let logitError = relativeError(output.logits, try #require(reference.tensors["seq\(i).logits"]).floats())
            #expect(logitError <= Self.tolerance, "\(name) seq\(i): relative logit error \(logitError)")
            let hiddenError = relativeError(output.hidden, try #require(reference.tensors["seq\(i).hidden"]).floats())
            #expect(hiddenError <= Self.tolerance, "\(name) seq\(i): relative hidden error \(hiddenError)")
            #expect(state.tokenCount == ids.count)

            if i == 0 {
                for layer in 0..<model.layerCount {
                    let conv = try #require(reference.tensors["seq0.conv_state.\(layer)"]).floats()
                    let ssm = try #require(reference.tensors["seq0.ssm_state.\(layer)"]).floats()
                    #expect(relativeError(state.convState(layer: layer), conv) <= Self.tolerance, "\(name) conv state \(layer)")
                    #expect(relativeError(state.ssmState(layer: layer), ssm) <= Self.tolerance, "\(name) ssm state \(layer)")
                }
            }
        }
    }

    /// Greedy decoding through `decodeStep` gives the reference's tokens wherever the
    /// reference's top-2 gap is larger than float noise. The reference's own token is
    /// fed back (teacher forcing) so that a near-tie does not derail later steps.
    @Test(arguments: Fixtures.names)
    func greedyDecodeMatchesReference(fixture name: String) throws {
        let model = try FalconMambaModel(directory: Fixtures.modelPath(name))
        let reference = try Fixtures.reference(name)
        for sequence in Fixtures.fixture(name).sequences {
            let i = sequence.index
            let ids = try #require(reference.tensors["seq\(i).input_ids"]).integers()
            let greedy = try #require(reference.tensors["seq\(i).greedy"]).integers()
            var state = model.newState()
            var logits = try model.prefill(ids, state: &state).lastLogits
            var checked = 0
            for (step, expected) in greedy.enumerated() {
                if sequence.greedy_step_margins[step] > 1e-3 {
                    #expect(argmax(logits) == expected, "\(name) seq\(i) step \(step)")
                    checked += 1
                }
                logits = try model.decodeStep(expected, state: &state).lastLogits
            }
            #expect(checked > 0)
            #expect(state.tokenCount == ids.count + greedy.count)
        }
    }

    /// decodeStep, token by token, reproduces the reference's prefill logits too.
    @Test func decodeStepMatchesPrefillLogits() throws {
        let name = "tiny-fp4-like-7b"
        let model = try FalconMambaModel(directory: Fixtures.modelPath(name))
        let reference = try Fixtures.reference(name)
        let ids = try #require(reference.tensors["seq2.input_ids"]).integers()
        let expected = try #require(reference.tensors["seq2.logits"]).floats()
        var state = model.newState()
        var logits: [Float] = []
        for id in ids { logits += try model.decodeStep(id, state: &state).lastLogits }
        #expect(relativeError(logits, expected) <= Self.tolerance)
    }
}

/// The fast path (int8 activations, AVX-512 VNNI, every matrix packed, the lm_head in
/// int8) meets its stated, looser bound: relative logit error at most 1.2e-1 on these
/// fixtures, and the reference's greedy tokens wherever the reference's top-2 gap is
/// larger than twice that error. The tiny random models amplify weight perturbations
/// (their README: bf16 rounding alone moves their logits by ~1e-2), and their 64-wide
/// in_proj quantizes each activation block of a whole row at once. Which sequence comes
/// out worst moves with every change of rounding (uint8 block scales moved single
/// sequences between -25% and +35%): dense and FP4 fixtures reach ~7e-2, NF4 (an
/// irrational table in int8) ~9e-2 to 1.12e-1. On the full-size model the error is
/// ~1.2e-2 (docs/performance.md, `mambad bench --check-accuracy`).
@Suite struct FastPathAccuracyTests {
    static let bound: Float = 1.2e-1

    @Test(arguments: Fixtures.names)
    func fastPathStaysWithinItsBound(fixture name: String) throws {
        let model = try FalconMambaModel(directory: Fixtures.modelPath(name), precision: .fast, cache: nil)
        let reference = try Fixtures.reference(name)
        for sequence in Fixtures.fixture(name).sequences {
            let i = sequence.index
            let ids = try #require(reference.tensors["seq\(i).input_ids"]).integers()
            var state = model.newState()
            let output = try model.prefill(ids, state: &state, logits: .all)
            let expected = try #require(reference.tensors["seq\(i).logits"]).floats()
            let error = relativeError(output.logits, expected)
            #expect(error <= Self.bound, "\(name) seq\(i): relative logit error \(error)")

            let greedy = try #require(reference.tensors["seq\(i).greedy"]).integers()
            let scale = expected.map(abs).max()!
            var logits = output.lastLogits
            for (step, token) in greedy.enumerated() {
                if Float(sequence.greedy_step_margins[step]) > 2 * Self.bound * scale {
                    #expect(argmax(logits) == token, "\(name) seq\(i) step \(step)")
                }
                logits = try model.decodeStep(token, state: &state).lastLogits
            }
        }
    }
}

/// Decode steps quantize x_proj's and out_proj's inputs in the epilogues that write them,
/// each thread on whole blocks of the channels it computed; the logits are the same, bit
/// for bit, as when those products quantize their inputs themselves.
@Suite struct EpilogueQuantizationTests {
    @Test(arguments: ["tiny-fp4-like-7b", "tiny-nf4", "tiny-bf16"])
    func decodeIsTheSameWhereverTheInputsAreQuantized(fixture name: String) throws {
        let model = try FalconMambaModel(directory: Fixtures.modelPath(name), precision: .fast, cache: nil)
        #expect(model.packSource != .none)
        let prompts = [[1, 5, 9, 2], [7, 3], [4, 4, 8, 6, 1]].map { $0.map { $0 % model.vocabSize } }
        func decode() throws -> [[Float]] {
            var states = [SequenceState]()
            for prompt in prompts {
                var state = model.newState()
                _ = try model.prefill(prompt, state: &state, logits: .last)
                states.append(state)
            }
            var steps = [[Float]]()
            for step in 0..<6 {
                // one sequence alone, then all three in one batch
                steps.append(try model.decodeStep((3 * step + 2) % model.vocabSize, state: &states[0]).logits)
                let tokens = (0..<3).map { (5 * step + $0) % model.vocabSize }
                steps.append(try model.decodeBatch(tokens, states: &states).logits)
            }
            return steps
        }
        model.epiloguesQuantizeNext = false
        let quantizedByTheProducts = try decode()
        model.epiloguesQuantizeNext = true
        let quantizedByTheEpilogues = try decode()
        #expect(quantizedByTheEpilogues == quantizedByTheProducts)
        #expect(quantizedByTheEpilogues.allSatisfy { $0.allSatisfy(\.isFinite) })
    }
}

