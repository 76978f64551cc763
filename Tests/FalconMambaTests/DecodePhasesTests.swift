import FalconMamba
import Testing

/// Decode steps measured phase by phase (`ForwardOutput.phases`, `mambad bench --phases`).
@Suite struct DecodePhasesTests {
    /// Measuring changes nothing a step computes, and every phase of every step is counted.
    @Test(arguments: [Precision.fast, .exact])
    func measuredStepsComputeTheSame(precision: Precision) throws {
        let model = try FalconMambaModel(directory: Fixtures.modelPath("tiny-fp4-like-7b"), precision: precision,
                                         pool: ComputePool(threads: 2), cache: nil)
        var plain = (0..<2).map { _ in model.newState() }, measured = plain
        var plainOutput = ForwardOutput(), measuredOutput = ForwardOutput()
        measuredOutput.phases = DecodePhases()
        var tokens = [5, 12]
        for _ in 0..<3 {
            try model.decodeBatch(tokens, states: &plain, into: &plainOutput)
            try model.decodeBatch(tokens, states: &measured, into: &measuredOutput)
            #expect(measuredOutput.logits == plainOutput.logits)
            tokens = (0..<2).map { Sampler.argmax(plainOutput.logits[$0 * model.vocabSize..<($0 + 1) * model.vocabSize]) }
        }
        #expect(plain == measured)
        #expect(plainOutput.phases == nil)
        let phases = try #require(measuredOutput.phases)
        #expect(phases.steps == 3)
        for phase in DecodePhases.Phase.allCases {
            #expect(phases.millisecondsPerStep(phase) > 0, "\(phase.name)")
        }
    }

    /// The phases' bytes are the step's: their sum is `bytesReadPerToken` for one sequence,
    /// and every further sequence adds its state (what `mambad bench` counts bandwidth by).
    @Test func phaseBytesAddUpToTheStep() throws {
        for precision in [Precision.fast, .exact] {
            let model = try FalconMambaModel(directory: Fixtures.modelPath("tiny-fp4-like-7b"), precision: precision, cache: nil)
            for batch in [1, 3] {
                let sum = DecodePhases.Phase.allCases.reduce(0) { $0 + model.bytesRead(by: $1, batch: batch) }
                #expect(sum == model.bytesReadPerToken + (batch - 1) * model.config.stateBytesPerSequence)
            }
            // The SSM state and the decay rates are read in the scan; the conv state in in_proj's epilogue.
            let ssm = model.config.numHiddenLayers * model.innerSize * model.config.stateSize * 4
            #expect(model.bytesRead(by: .dtProj, batch: 2) - model.bytesRead(by: .dtProj, batch: 1) == ssm)
            #expect(model.bytesRead(by: .xProj, batch: 2) == model.bytesRead(by: .xProj, batch: 1))
        }
    }

}
