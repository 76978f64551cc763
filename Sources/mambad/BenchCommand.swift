import ArgumentParser
import FalconMamba
import Foundation

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure prefill and decode speed, and decode bandwidth against a read probe.",
        discussion: """
            Runs, for each thread count and precision: a read-bandwidth probe over the mapped \
            checkpoint, prefill of --prompt random tokens (pp), and --tokens decode steps (tg) \
            at each batch size, interleaved --repeat times (memory bandwidth drifts on shared \
            hosts, so runs alternate rather than follow each other); medians are printed.
            """)

    @Option(name: .long, help: ArgumentHelp("A Hugging Face model folder.", valueName: "dir"))
    var model: String

    @Option(help: "Prompt tokens for the prefill measurement.")
    var prompt = 512

    @Option(help: "Decode steps per measurement.")
    var tokens = 32

    @Option(help: "Comma-separated thread counts.")
    var threads = "1,2"

    @Option(help: "Comma-separated batch sizes for decode.")
    var batch = "1,2,4,8"

    @Option(help: "Comma-separated precisions: fast, exact.")
    var precision = "fast,exact"

    @Option(name: .customLong("lm-head"), help: LMHeadPrecision.optionHelp)
    var lmHead: LMHeadPrecision = .int8

    @Option(help: ArgumentHelp(
        "Comma-separated prefetch plans for the decode products: 0 (none), BYTES or l2:BYTES (into L2), nta:BYTES (non-temporal); several alternate step by step (default: MAMBAD_PREFETCH, else auto: raced on the decode steps, as serve does).",
        valueName: "plans"))
    var prefetch: String?

    @Option(help: "Interleaved repetitions (medians are reported).")
    var `repeat` = 3

    @Option(name: .customLong("packed-cache"), help: ArgumentHelp(
        "Folder for the fast path's packed weights, or none to pack into memory (default as for serve).", valueName: "dir"))
    var packedCache: String?

    var cache: PackedWeightsCache? {
        switch packedCache {
        case nil: PackedWeightsCache.defaultDirectory.map(PackedWeightsCache.init)
        case "none"?: nil
        case let dir?: PackedWeightsCache(directory: dir)
        }
    }

    @Flag(help: "Also print every repetition's probe and decode speeds (to tell the host's bandwidth states apart).")
    var each = false

    @Flag(help: "Also report the fast path's relative logit error against the exact path.")
    var checkAccuracy = false

    @Flag(help: "Also print where decode steps spend their time: each phase's ms a step, and its GB/s against the probe.")
    var phases = false

    func run() throws {
        let threadCounts = try parseTokenList(threads)
        // nil: the models' tuner picks (what serve does)
        let plans: [PrefetchPlan?] = try prefetch.map { list in
            try list.split(separator: ",").map { text in
                guard let plan = PrefetchPlan(String(text)) else {
                    throw ValidationError("bad prefetch plan '\(text)': want 0, BYTES, l2:BYTES or nta:BYTES, up to 64K")
                }
                return plan
            }
        } ?? [ComputePool.fixedPrefetch]
        let batches = try parseTokenList(batch)
        let precisions = try precision.split(separator: ",").map { name in
            guard let p = Precision(rawValue: String(name)) else { throw ValidationError("unknown precision '\(name)'") }
            return p
        }
        var generator = SeededGenerator(seed: 42)
        var promptTokens: [Int] = []
        let probeModel = try FalconMambaModel(directory: model, precision: .exact, pool: ComputePool(threads: 1))
        for _ in 0..<prompt { promptTokens.append(Int(generator.next() % UInt64(probeModel.vocabSize))) }
        print("model \(model): \(String(format: "%.2f", Double(probeModel.checkpoint.mappedBytes) / 1e9)) GB of checkpoint, " +
              "\(ProcessInfo.processInfo.activeProcessorCount) cores, kernels \(ComputePool.instructionSet)")
        var header = pad("threads", 9) + pad("precision", 11) + pad("prefetch", 11) + pad("load s", 8) + pad("GB/step", 9)
        header += pad("probe GB/s", 12) + pad("pp\(prompt) tok/s", 15)
        header += batches.map { pad("tg b=\($0) tok/s", 16) }.joined()
        header += pad("tg GB/s", 9) + pad("of probe", 10) + "RSS beyond weights"
        print(header)

        for count in threadCounts {
            let pool = ComputePool(threads: count)
            for p in precisions {
                let clock = ContinuousClock(), loadStart = clock.now
                let engine = try FalconMambaModel(directory: model, precision: p, lmHead: lmHead, pool: pool, cache: cache)
                let loadSeconds = (clock.now - loadStart).seconds
                let bytesPerStep = Double(engine.bytesReadPerToken)
                // For each prefetch plan: probes, prefills, and decodes at each batch size.
                var probes = plans.map { _ in [Double]() }, prefills = probes
                var decodes = plans.map { _ in batches.map { _ in [Double]() } }
                // every plan's steps together: their phases, and their whole time in seconds
                var stepPhases = batches.map { _ in DecodePhases() }, stepSeconds = batches.map { _ in 0.0 }
                for round in 0..<self.repeat {
                    for (d, plan) in plans.enumerated() {
                        ComputePool.fixedPrefetch = plan
                        probes[d].append(engine.probeReadBandwidth())
                        prefills[d].append(try measurePrefill(engine, promptTokens))
                    }
                    for (i, b) in batches.enumerated() {
                        let (rates, measured, seconds) = try measureDecode(engine, batch: b, steps: tokens, plans: plans)
                        for d in plans.indices { decodes[d][i].append(rates[d]) }
                        if let measured {
                            stepPhases[i] += measured
                            stepSeconds[i] += seconds
                        }
                    }
                    if each {
                        let line = plans.indices.map { d in
                            "prefetch \(Self.name(plans[d])): probe " + String(format: "%.1f", probes[d][round] / 1e9) + " tg "
                                + batches.indices.map { String(format: "%.2f", decodes[d][$0][round]) }.joined(separator: "/")
                                + Self.roundSummary(batches: batches, rates: decodes[d].map { $0[round] }, probe: probes[d][round],
                                                    bytesPerStep: bytesPerStep, stateBytes: engine.config.stateBytesPerSequence)
                        }
                        print("  round \(round + 1): " + line.joined(separator: ", "))
                    }
                }
                ComputePool.fixedPrefetch = plans[0]
                // Resident memory that is not weights: anonymous pages, less the packed copy
                // when it lives there (file-backed pages, the checkpoint's or the packed
                // cache file's, are the weights themselves).
                let anonymousWeights = engine.packSource == .packed(cacheFile: nil) ? engine.packedBytes : 0
                let beyond = Double(Self.statusKilobytes("RssAnon") * 1024 - anonymousWeights) / 1e6
                for (d, plan) in plans.enumerated() {
                    let probe = median(probes[d])
                    let gbps = Self.readRate(tokensPerSecond: median(decodes[d][0]), batch: batches[0],
                                             bytesPerStep: bytesPerStep, stateBytes: engine.config.stateBytesPerSequence) / 1e9
                    var row = pad("\(count)", 9) + pad(p.rawValue, 11) + pad(Self.name(plan), 11)
                    row += pad(String(format: "%.2f", loadSeconds), 8)
                    row += pad(String(format: "%.2f", bytesPerStep / 1e9), 9) + pad(String(format: "%.1f", probe / 1e9), 12)
                    row += pad(String(format: "%.1f", median(prefills[d])), 15)
                    row += decodes[d].map { pad(String(format: "%.2f", median($0)), 16) }.joined()
                    row += pad(String(format: "%.1f", gbps), 9) + pad(String(format: "%.0f%%", 100 * gbps * 1e9 / probe), 10)
                    print(row + String(format: "%.0f MB", beyond))
                }
                print("  " + Self.describe(engine.packSource) + (engine.packedPages.map { ": " + $0.description } ?? ""))
                if phases {
                    let probe = median(plans.indices.flatMap { probes[$0] })
                    for (i, b) in batches.enumerated() {
                        print("  " + Self.phaseSummary(engine, batch: b, stepPhases[i], probe: probe,
                                                       stepMilliseconds: 1e3 * stepSeconds[i] / Double(max(1, stepPhases[i].steps))))
                    }
                }
                if plans == [nil], !engine.prefetchChoices.isEmpty {
                    print("  prefetch races won: " + engine.prefetchChoices.joined(separator: "; "))
                }
            }
        }
        if checkAccuracy { try reportAccuracy(promptTokens) }
    }

    /// What one round says about the goals: the first batch size's share of the round's
    /// own probe, and every other batch size's tokens/s as a multiple of batch 1's.
    static func roundSummary(batches: [Int], rates: [Double], probe: Double, bytesPerStep: Double, stateBytes: Int) -> String {
        guard let first = batches.first, let firstRate = rates.first, probe > 0 else { return "" }
        let read = readRate(tokensPerSecond: firstRate, batch: first, bytesPerStep: bytesPerStep, stateBytes: stateBytes)
        var parts = [String(format: "b=%d at %.0f%% of the probe", first, 100 * read / probe)]
        if let one = batches.firstIndex(of: 1), rates[one] > 0 {
            for (b, rate) in zip(batches, rates) where b != 1 {
                parts.append(String(format: "b=%d %.2fx b=1", b, rate / rates[one]))
            }
        }
        return " (" + parts.joined(separator: ", ") + ")"
    }

    /// Bytes a second that decoding `batch` sequences at `tokensPerSecond` (all of them
    /// together) reads: one pass over the weights a step, and each sequence's state.
    static func readRate(tokensPerSecond: Double, batch: Int, bytesPerStep: Double, stateBytes: Int) -> Double {
        tokensPerSecond / Double(batch) * (bytesPerStep + Double((batch - 1) * stateBytes))
    }

    /// One batch size's decode steps phase by phase: ms a step, and the phase's bytes
    /// (`bytesRead(by:batch:)`) a second as a share of the probe; "other" is the rest of
    /// a step (the calls around the layers, and the Swift between the phases).
    static func phaseSummary(_ engine: FalconMambaModel, batch: Int, _ phases: DecodePhases, probe: Double,
                             stepMilliseconds: Double) -> String {
        var parts: [String] = []
        for phase in DecodePhases.Phase.allCases {
            let ms = phases.millisecondsPerStep(phase)
            let rate = ms > 0 ? Double(engine.bytesRead(by: phase, batch: batch)) / (ms / 1e3) : 0
            parts.append(String(format: "%@ %.2f ms %.1f GB/s (%.0f%%)", phase.name, ms, rate / 1e9, probe > 0 ? 100 * rate / probe : 0))
        }
        let measured = DecodePhases.Phase.allCases.reduce(0) { $0 + phases.millisecondsPerStep($1) }
        parts.append(String(format: "other %.2f ms", stepMilliseconds - measured))
        return String(format: "phases at b=%d, %.2f ms a step: ", batch, stepMilliseconds) + parts.joined(separator: ", ")
    }

    /// A prefetch plan as the table shows it, or "auto" (the tuner's).
    static func name(_ plan: PrefetchPlan?) -> String { plan.map { "\($0)" } ?? "auto" }

    static func describe(_ source: FalconMambaModel.PackSource) -> String {
        switch source {
        case .none: "weights read from the checkpoint mapping"
        case .cacheFile(let path): "packed weights mapped from \(path)"
        case .packed(let path?): "weights packed during load, saved to \(path)"
        case .packed(nil): "weights packed into memory during load (no cache folder)"
        }
    }

    /// A "Key: N kB" line of /proc/self/status, in kilobytes (0 where unavailable).
    static func statusKilobytes(_ key: String) -> Int {
        let lines = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8))?.split(separator: "\n") ?? []
        guard let line = lines.first(where: { $0.hasPrefix(key + ":") }) else { return 0 }
        return Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "") ?? 0
    }

    /// Prompt tokens per second for one prefill from the empty state.
    func measurePrefill(_ engine: FalconMambaModel, _ prompt: [Int]) throws -> Double {
        var state = engine.newState()
        let clock = ContinuousClock(), start = clock.now
        _ = try engine.prefill(prompt, state: &state)
        return Double(prompt.count) / (clock.now - start).seconds
    }

    /// Generated tokens per second (all sequences together) for `batch` sequences decoding
    /// in step, `steps` steps by each prefetch plan. With several plans the steps
    /// alternate between them, so that each sees the same bandwidth state of the host.
    /// With --phases, also where the steps spent their time; and the steps' seconds, all
    /// plans together.
    func measureDecode(_ engine: FalconMambaModel, batch: Int, steps: Int,
                       plans: [PrefetchPlan?]) throws -> (rates: [Double], phases: DecodePhases?, seconds: Double) {
        var states = (0..<batch).map { _ in engine.newState() }
        var next = (0..<batch).map { 100 + $0 }
        _ = try engine.decodeBatch(next, states: &states)  // warm up
        var seconds = plans.map { _ in 0.0 }
        let clock = ContinuousClock()
        var output = ForwardOutput()  // reused: steps allocate nothing, as in the daemon
        if phases { output.phases = DecodePhases() }
        for step in 0..<(steps * plans.count) {
            let d = step % plans.count
            if plans.count > 1 { ComputePool.fixedPrefetch = plans[d] }
            let start = clock.now
            try engine.decodeBatch(next, states: &states, into: &output)
            seconds[d] += (clock.now - start).seconds
            for b in 0..<batch { next[b] = Sampler.argmax(output.logits[b * engine.vocabSize..<(b + 1) * engine.vocabSize]) }
        }
        return (seconds.map { Double(batch * steps) / $0 }, output.phases, seconds.reduce(0, +))
    }

    /// Both precisions on the same tokens (the exact path's greedy continuation fed to both).
    func reportAccuracy(_ prompt: [Int]) throws {
        let pool = ComputePool(threads: ProcessInfo.processInfo.activeProcessorCount)
        let prefix = Array(prompt.prefix(64))
        var outputs: [[Float]] = [], continuation: [Int] = []
        for p in [Precision.exact, .fast] {
            let engine = try FalconMambaModel(directory: model, precision: p, lmHead: lmHead, pool: pool, cache: cache)
            var state = engine.newState()
            var logits = Array(try engine.prefill(prefix, state: &state, logits: .all).logits)
            for step in 0..<8 {
                if p == .exact { continuation.append(Sampler.argmax(logits.suffix(engine.vocabSize))) }
                logits += try engine.decodeStep(continuation[step], state: &state).lastLogits
            }
            outputs.append(logits)
        }
        var worst: Float = 0, scale: Float = 0
        for (a, b) in zip(outputs[1], outputs[0]) { worst = max(worst, abs(a - b)); scale = max(scale, abs(b)) }
        print(String(format: "fast vs exact: relative logit error %.2e over %d prefill positions and 8 decode steps",
                     worst / scale, prefix.count) + " (lm_head \(lmHead.rawValue))")
        // Where sampling looks: each position's likeliest tokens, and the greedy pick.
        let v = outputs[0].count / (prefix.count + 8), k = LMHeadPrecision.rescoredTokens
        var worstLikely: Float = 0, sameGreedy = 0
        for position in 0..<(prefix.count + 8) {
            let exact = outputs[0][(position * v)..<((position + 1) * v)], fast = outputs[1][(position * v)..<((position + 1) * v)]
            let likely = exact.indices.sorted { exact[$0] > exact[$1] }.prefix(k)
            for i in likely { worstLikely = max(worstLikely, abs(exact[i] - fast[i])) }
            if Sampler.argmax(exact) == Sampler.argmax(fast) { sameGreedy += 1 }
        }
        print(String(format: "  over each position's %d likeliest tokens: %.2e; same greedy token at %d of %d positions",
                     k, worstLikely / scale, sameGreedy, prefix.count + 8))
    }

    func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }
}
