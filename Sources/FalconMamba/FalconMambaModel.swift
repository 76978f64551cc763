#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CKernels

/// Errors of a forward pass (the checkpoint loaded fine, the input is wrong).
public enum ModelError: Error, Equatable, CustomStringConvertible {
    case tokenOutOfRange(token: Int, vocabSize: Int)
    case emptyInput
    case stateMismatch(String)

    public var description: String {
        switch self {
        case .tokenOutOfRange(let token, let vocabSize): "token id \(token) is outside the vocabulary [0, \(vocabSize))"
        case .emptyInput: "no tokens to process"
        case .stateMismatch(let reason): "state does not belong to this model: \(reason)"
        }
    }
}

/// What a forward pass returns besides the updated state.
public struct ForwardOutput: Sendable {
    /// [logitRows, vocabSize]: every position's logits, or only the last position's.
    public var logits: [Float]
    public var logitRows: Int
    /// [tokens, hiddenSize]: the final hidden states after norm_f, every position.
    public var hidden: [Float]
    public var vocabSize: Int
    public var hiddenSize: Int
    /// Where decode steps run into this output spent their time, if set (nil: not measured).
    public var phases: DecodePhases?

    /// The last position's logits: the distribution of the next token.
    public var lastLogits: ArraySlice<Float> { logits[(logitRows - 1) * vocabSize..<logitRows * vocabSize] }
    public var tokenCount: Int { hiddenSize == 0 ? 0 : hidden.count / hiddenSize }

    /// An empty output, to pass to `decodeBatch(_:states:into:)` step after step.
    public init() { self.init(logits: [], logitRows: 0, hidden: [], vocabSize: 0, hiddenSize: 0) }

    init(logits: [Float], logitRows: Int, hidden: [Float], vocabSize: Int, hiddenSize: Int) {
        self.logits = logits
        self.logitRows = logitRows
        self.hidden = hidden
        self.vocabSize = vocabSize
        self.hiddenSize = hiddenSize
    }

    /// Empty again for a model of these sizes, keeping the arrays' capacity.
    mutating func reset(vocabSize: Int, hiddenSize: Int) {
        logits.removeAll(keepingCapacity: true)
        hidden.removeAll(keepingCapacity: true)
        logitRows = 0
        self.vocabSize = vocabSize
        self.hiddenSize = hiddenSize
    }
}

/// Which positions of a prefill need logits: the lm_head is the largest matrix, so
/// by default only the last position (the next token) pays for it, and a slice of a
/// longer prompt (or an embedding) can skip it.
public enum LogitPositions: Sendable { case last, all, none }

/// One Mamba block's weights.
struct MambaLayer: Sendable {
    let norm: [Float]          // [H]
    let inProj: Linear         // [2*D, H]
    let convWeight: [Float]    // [K, D]: tap-major, as the conv kernel reads it
    let convBias: [Float]?     // [D]
    let xProj: Linear          // [R + 2N, D]
    let dtProj: Linear         // [D, R]
    let dtBias: [Float]        // [D]
    let A2: [Float]            // [D, N] in the scan's layout (mk_scan_layout), A·log2(e) with A = -exp(A_log): the scan's decay is 2^(dt·A2)
    let D: [Float]             // [D]
    let outProj: Linear        // [H, D]
}

/// FalconMamba (Mamba-1 with a weightless RMS norm on dt, B and C), run on the CPU in
/// float32 from a memory-mapped checkpoint. Immutable after loading: one model may
/// serve many sequences from many threads, each with its own `SequenceState`.
public final class FalconMambaModel: Sendable {
    public let config: FalconMambaConfig
    public let checkpoint: Checkpoint
    public let hiddenSize: Int, innerSize: Int, stateSize: Int, convKernel: Int
    public let timeStepRank: Int, vocabSize: Int, layerCount: Int

    let embeddings: TensorView   // [V, H]
    let layers: [MambaLayer]
    let normF: [Float]
    let lmHead: Linear           // [V, H]
    /// Every matrix product's weights: each layer's four, then the lm_head.
    let matrices: [Linear]
    /// The threads products and scans are split across.
    public let pool: ComputePool
    /// The decode products' prefetch plan, raced on this model's decode steps.
    let prefetchTuner = PrefetchTuner()
    /// Activation buffers of finished decode-sized steps, reused by the next ones.
    let spareWorkspaces = SpareWorkspaces()
    /// For each kind of decode step seen (rows, with or without logits), how many of the
    /// tuner's races each prefetch plan won.
    public var prefetchChoices: [String] { prefetchTuner.summary }
    /// Exact (bitsandbytes-identical) or fast (int8) 4-bit products.
    public let precision: Precision
    /// On the fast path: the lm_head in int8, or at 4 bits with the likely tokens rescored.
    public let lmHeadPrecision: LMHeadPrecision

    /// Where the fast path's packed weights came from.
    public enum PackSource: Sendable, Equatable {
        /// Not packed: the exact path, or a CPU without AVX-512 VNNI.
        case none
        /// Mapped from an existing cache file.
        case cacheFile(String)
        /// Packed during this load, and saved to this cache file if any.
        case packed(cacheFile: String?)
    }
    /// Set once while loading.
    public private(set) nonisolated(unsafe) var packSource: PackSource = .none

    /// How the packed cache file is mapped: bytes in 2 MiB pages (nil where the kernel
    /// does not say), how many could be, and whether opening read it back from disk to
    /// get them (the page cache held it in small folios). Nil when no cache file is mapped.
    public struct PackedPages: Sendable, Equatable {
        public let hugeBytes: Int?
        public let possibleBytes: Int
        public let rereadFromDisk: Bool

        /// "3.62 of 3.66 GB in 2 MiB pages", and why it was read back if it was.
        public var description: String {
            func gigabytes(_ bytes: Int) -> String {
                let hundredths = (bytes + 5_000_000) / 10_000_000
                return "\(hundredths / 100)." + (hundredths % 100 < 10 ? "0" : "") + "\(hundredths % 100)"
            }
            return "\(hugeBytes.map(gigabytes) ?? "?") of \(gigabytes(possibleBytes)) GB in 2 MiB pages"
                + (rereadFromDisk ? " (read back from disk: the page cache held it in small folios)" : "")
        }
    }
    /// Set once while loading.
    public private(set) nonisolated(unsafe) var packedPages: PackedPages?
    /// Loaded with `deferPacking` while the cache held no packed weights for it: the
    /// exact kernels serve until a model loaded without deferring replaces this one.
    public private(set) nonisolated(unsafe) var packingDeferred = false
    /// Whether decode steps quantize x_proj's and out_proj's inputs in the epilogues that
    /// write them (the default) or at the start of those products, as prefill does; the
    /// values are the same bit for bit, which a test checks by turning this off.
    package nonisolated(unsafe) var epiloguesQuantizeNext = true

    /// Tokens per internal prefill chunk: bounds activation memory for long prompts.
    public static let prefillChunk = 256

    /// Load a checkpoint folder. On the fast path, `cache` is where packed weights are
    /// kept between runs (nil: pack into memory on every start). With `deferPacking`, a
    /// fast-path model whose packed weights are not in the cache yet does not make them:
    /// it serves with the exact kernels at once (`packingDeferred`), and a model loaded
    /// later without deferring packs them (a daemon's first start serves meanwhile).
    /// `packingPool` packs (default: `pool`, which always computes).
    public convenience init(directory: String, precision: Precision = .exact, lmHead: LMHeadPrecision = .int8,
                            pool: ComputePool = .shared,
                            cache: PackedWeightsCache? = PackedWeightsCache.defaultDirectory.map(PackedWeightsCache.init),
                            deferPacking: Bool = false, packingPool: ComputePool? = nil) throws(CheckpointError) {
        try self.init(checkpoint: Checkpoint(directory: directory), precision: precision, lmHead: lmHead, pool: pool, cache: cache,
                      deferPacking: deferPacking, packingPool: packingPool)
    }

    public init(checkpoint: Checkpoint, precision: Precision = .exact, lmHead lmHeadChoice: LMHeadPrecision = .int8,
                pool: ComputePool = .shared,
                cache: PackedWeightsCache? = PackedWeightsCache.defaultDirectory.map(PackedWeightsCache.init),
                deferPacking: Bool = false, packingPool: ComputePool? = nil) throws(CheckpointError) {
        self.pool = pool
        self.precision = precision
        lmHeadPrecision = lmHeadChoice
        let config = checkpoint.config
        self.config = config
        self.checkpoint = checkpoint
        let h = config.hiddenSize, d = config.intermediateSize, n = config.stateSize
        let k = config.convKernel, r = config.timeStepRank, v = config.vocabSize
        hiddenSize = h; innerSize = d; stateSize = n; convKernel = k; timeStepRank = r
        vocabSize = v; layerCount = config.numHiddenLayers

        let loader = WeightLoader(checkpoint: checkpoint)
        embeddings = try loader.view("backbone.embeddings.weight", shape: [v, h])
        guard embeddings.dtype.kernelDType != nil else {
            throw .dtypeMismatch(path: embeddings.path, tensor: embeddings.name, expected: "F32, F16 or BF16", actual: embeddings.dtype.rawValue)
        }
        var layers: [MambaLayer] = []
        for i in 0..<config.numHiddenLayers {
            let p = "backbone.layers.\(i)."
            let convWeight = try loader.view(p + "mixer.conv1d.weight", shape: [d, 1, k])
            layers.append(MambaLayer(
                norm: try loader.floats(p + "norm.weight", shape: [h]),
                inProj: try loader.linear(p + "mixer.in_proj.weight", rows: 2 * d, cols: h),
                convWeight: Self.tapMajor(try convWeight.floats(), channels: d, taps: k),
                convBias: config.useConvBias ? try loader.floats(p + "mixer.conv1d.bias", shape: [d]) : nil,
                xProj: try loader.linear(p + "mixer.x_proj.weight", rows: r + 2 * n, cols: d),
                dtProj: try loader.linear(p + "mixer.dt_proj.weight", rows: d, cols: r),
                dtBias: try loader.floats(p + "mixer.dt_proj.bias", shape: [d]),
                A2: Self.scanLayout(try loader.floats(p + "mixer.A_log", shape: [d, n]).map { -expf($0) * Self.log2e },
                                    channels: d, states: n),
                D: try loader.floats(p + "mixer.D", shape: [d]),
                outProj: try loader.linear(p + "mixer.out_proj.weight", rows: h, cols: d)))
        }
        for layer in layers { layer.inProj.decodeParts = 2 }  // rows x | z
        self.layers = layers
        normF = try loader.floats("backbone.norm_f.weight", shape: [h])
        if checkpoint.tensors["lm_head.weight"] != nil {
            lmHead = try loader.linear("lm_head.weight", rows: v, cols: h)
        } else if config.tieWordEmbeddings {
            lmHead = try Linear(dense: embeddings)
        } else {
            throw .missingTensor(tensor: "lm_head.weight (config.json has tie_word_embeddings false)",
                                 path: checkpoint.describeLocation(of: "lm_head.weight"))
        }
        matrices = layers.flatMap { [$0.inProj, $0.xProj, $0.dtProj, $0.outProj] } + [lmHead]
        if precision == .fast { packWeights(cache: cache, deferPacking: deferPacking, pool: packingPool ?? pool) }
    }

    /// Every matrix the fast path can take, repacked (CKernels/packed.c): mapped from
    /// the cache file when one matches, else packed into a new cache file (or anonymous
    /// memory without a usable cache). The checkpoint's pages are then released from this
    /// process: decode reads the packed copy; the mapping stays for embedding rows.
    private func packWeights(cache: PackedWeightsCache?, deferPacking: Bool = false, pool: ComputePool) {
        let lmHeadBits: Int32 = lmHeadPrecision == .rescored4bit ? 4 : 8
        let plans = matrices.compactMap { linear in
            linear.packLayout(denseBits: linear === lmHead ? lmHeadBits : 8).map { (linear, $0) }
        }
        guard !plans.isEmpty else { return }
        let layouts = plans.map(\.1)
        var offsets: [Int] = [], total = PackedWeightsCache.headerBytes(count: plans.count)
        for layout in layouts { offsets.append(total); total += layout.span }

        let target = cache.map { $0.path(for: checkpoint, layouts: layouts, variant: "lm" + lmHeadPrecision.rawValue) }
        func adopt(_ file: PackedCacheFile) {
            let pages = file.hugePages
            packedPages = PackedPages(hugeBytes: pages.mapped, possibleBytes: pages.possible, rereadFromDisk: file.rereadForHugePages)
            for (i, (linear, layout)) in plans.enumerated() {
                var m = layout.matrix(at: file.base + offsets[i])
                PackedWeightsCache.entry(i, in: file, into: &m)
                linear.adopt(PackedWeights(matrix: m, layout: layout, owner: file))
            }
        }
        if let cache, let target, let file = cache.open(target.path, key: target.key, layouts: layouts, offsets: offsets, total: total) {
            adopt(file)
            packSource = .cacheFile(target.path)
        } else if deferPacking {
            packingDeferred = true
            return
        } else if let cache, let target, let created = cache.create(total: total) {
            let packed = plans.enumerated().map { i, plan in plan.0.pack(plan.1, into: created.file.base + offsets[i], pool: pool) }
            let committed = cache.commit(created.file, temporaryPath: created.temporaryPath, target: target,
                                         matrices: packed, offsets: offsets, total: total)
            // Served the way every later start maps it: dropped from the page cache and
            // read back, the file comes in as huge folios that map with 2 MiB pages (the
            // pages written through the packing mapping are 4 KiB ones). Measured on the
            // 7B: 5% faster decode when the host's bandwidth allows, loads in 0.1 s.
            created.file.unmap()
            if committed, PackedWeightsCache.dropFromPageCache(target.path),
               let file = cache.open(target.path, key: target.key, layouts: layouts, offsets: offsets, total: total) {
                adopt(file)
                packSource = .packed(cacheFile: target.path)
            } else {
                unlink(created.temporaryPath)
                packWeights(cache: nil, pool: pool)
                return
            }
        } else if let memory = HugePageMemory(bytes: total) {
            for (i, (linear, layout)) in plans.enumerated() {
                let m = linear.pack(layout, into: memory.base + offsets[i], pool: pool)
                linear.adopt(PackedWeights(matrix: m, layout: layout, owner: memory))
            }
            packSource = .packed(cacheFile: nil)
        }
        // else: no memory for a packed copy; the exact kernels serve
        for file in checkpoint.files { file.file.releaseResidentPages() }
    }

    /// log2(e) in float32: Mamba's A is kept as A·log2(e) (see MambaLayer.A2).
    static let log2e: Float = 1.44269504088896341

    /// [channels, states] rows (transformers' layout) in the scan's layout: tiles of 16
    /// channels where mk_scan_tiled says so.
    static func scanLayout(_ rows: [Float], channels: Int, states: Int) -> [Float] {
        var out = rows
        rows.withUnsafeBufferPointer { from in
            out.withUnsafeMutableBufferPointer { mk_scan_layout(from.baseAddress!, $0.baseAddress!, Int64(channels), Int64(states), 1) }
        }
        return out
    }

    /// [D, K] (the checkpoint's conv1d weight) to [K, D].
    static func tapMajor(_ weights: [Float], channels: Int, taps: Int) -> [Float] {
        (0..<taps * channels).map { i in weights[(i % channels) * taps + i / channels] }
    }

    /// An empty context for this model.
    public func newState() -> SequenceState {
        SequenceState(layers: layerCount, innerSize: innerSize, convKernel: convKernel, stateSize: stateSize)
    }

    /// Run a whole prompt through the model, continuing from `state`. Products are
    /// batched over the tokens (matrix-matrix, not a token loop); long prompts go in
    /// chunks of `prefillChunk`. Returns the logits at `logits` positions and every
    /// position's final hidden state.
    public func prefill(_ tokens: [Int], state: inout SequenceState, logits: LogitPositions = .last) throws(ModelError) -> ForwardOutput {
        guard !tokens.isEmpty else { throw .emptyInput }
        try check(tokens, state)
        var output = ForwardOutput(logits: [], logitRows: 0, hidden: [], vocabSize: vocabSize, hiddenSize: hiddenSize)
        output.hidden.reserveCapacity(tokens.count * hiddenSize)
        var start = 0
        while start < tokens.count {
            let end = min(tokens.count, start + Self.prefillChunk)
            let wantLogits: Range<Int>? = switch logits {
            case .all: 0..<(end - start)
            case .last: end == tokens.count ? (end - start - 1)..<(end - start) : nil
            case .none: nil
            }
            let pointers = state.mutablePointers()
            var segment = Segment(rows: 0..<(end - start), conv: pointers.conv, ssm: pointers.ssm)
            withUnsafePointer(to: &segment) { segment in
                forward(tokens[start..<end], segments: UnsafeBufferPointer(start: segment, count: 1), logitRows: wantLogits, into: &output)
            }
            state.advance(by: end - start)
            start = end
        }
        return output
    }

    /// One token through the recurrence: the next-token logits and the final hidden state.
    public func decodeStep(_ token: Int, state: inout SequenceState) throws(ModelError) -> ForwardOutput {
        var output = ForwardOutput()
        try decodeStep(token, state: &state, into: &output)
        return output
    }

    /// The same into `output`, emptied first; its arrays keep their capacity (see
    /// `decodeBatch(_:states:into:)`).
    public func decodeStep(_ token: Int, state: inout SequenceState, into output: inout ForwardOutput) throws(ModelError) {
        try check(CollectionOfOne(token), state)
        output.reset(vocabSize: vocabSize, hiddenSize: hiddenSize)
        let pointers = state.mutablePointers()
        var segment = Segment(rows: 0..<1, conv: pointers.conv, ssm: pointers.ssm)
        withUnsafePointer(to: &segment) { segment in
            forward(CollectionOfOne(token), segments: UnsafeBufferPointer(start: segment, count: 1), logitRows: 0..<1, into: &output)
        }
        state.advance(by: 1)
    }

    /// One token for each of several independent sequences, in one pass over the
    /// weights: row i of the output (logits and hidden) belongs to tokens[i] and states[i].
    public func decodeBatch(_ tokens: [Int], states: inout [SequenceState]) throws(ModelError) -> ForwardOutput {
        var output = ForwardOutput()
        try decodeBatch(tokens, states: &states, into: &output)
        return output
    }

    /// The same into `output`, emptied first; its arrays keep their capacity, so a caller
    /// that passes the same output every step makes steps that allocate nothing
    /// (`DecodeAllocationTests`; ~650 allocations a step for the 7B before session 8).
    public func decodeBatch(_ tokens: [Int], states: inout [SequenceState], into output: inout ForwardOutput) throws(ModelError) {
        guard !tokens.isEmpty else { throw .emptyInput }
        guard tokens.count == states.count else {
            throw .stateMismatch("\(tokens.count) tokens for \(states.count) states")
        }
        for state in states { try check(tokens, state) }
        output.reset(vocabSize: vocabSize, hiddenSize: hiddenSize)
        let group = Int(MK_MAX_BATCH)
        withUnsafeTemporaryAllocation(of: Segment.self, capacity: group) { segments in
            for start in stride(from: 0, to: tokens.count, by: group) {
                let end = min(tokens.count, start + group)
                for i in start..<end {
                    let pointers = states[i].mutablePointers()
                    segments.initializeElement(at: i - start, to: Segment(rows: (i - start)..<(i - start + 1),
                                                                          conv: pointers.conv, ssm: pointers.ssm))
                }
                forward(tokens[start..<end], segments: UnsafeBufferPointer(rebasing: segments[0..<(end - start)]),
                        logitRows: 0..<(end - start), into: &output)
                for i in start..<end { states[i].advance(by: 1) }
            }
        }
    }

    private func check(_ tokens: some Collection<Int>, _ state: SequenceState) throws(ModelError) {
        if let bad = tokens.first(where: { $0 < 0 || $0 >= vocabSize }) {
            throw .tokenOutOfRange(token: bad, vocabSize: vocabSize)
        }
        guard state.layers == layerCount, state.innerSize == innerSize,
              state.convKernel == convKernel, state.stateSize == stateSize else {
            throw .stateMismatch("state has \(state.layers) layers of \(state.innerSize)x(\(state.convKernel)+\(state.stateSize)), " +
                                 "model \(layerCount) of \(innerSize)x(\(convKernel)+\(stateSize))")
        }
    }
}

extension FalconMambaModel {
    /// Bytes one decode step of one sequence must read (what bandwidth is counted
    /// against): every layer's weights (as packed for the fast path, else as stored; the
    /// small per-channel tensors as the float32 arrays the step reads), the lm_head, one
    /// embedding row, and the sequence's recurrent state (conv and SSM, float32; ~42 MB
    /// for the 7B), which the step reads and writes back. The sum of `bytesRead(by:batch:)`
    /// over the phases.
    public var bytesReadPerToken: Int {
        DecodePhases.Phase.allCases.reduce(0) { $0 + bytesRead(by: $1, batch: 1) }
    }

    /// Bytes a decode step of `batch` sequences reads in `phase`: its weights once, and
    /// each sequence's state (the conv state in in_proj's epilogue, the SSM state in the
    /// scan). An embedding row counts once, as in `bytesReadPerToken`.
    public func bytesRead(by phase: DecodePhases.Phase, batch: Int) -> Int {
        let float = MemoryLayout<Float>.size
        let d = innerSize
        func sum(_ f: (MambaLayer) -> Int) -> Int { layers.reduce(0) { $0 + f($1) } }
        switch phase {
        case .inProj:
            return sum { $0.inProj.bytesPerProduct(precision) + ($0.norm.count + $0.convWeight.count + ($0.convBias?.count ?? 0)) * float }
                + hiddenSize * embeddings.dtype.byteSize + batch * layers.count * d * config.convKernel * float
        case .xProj:
            return sum { $0.xProj.bytesPerProduct(precision) }
        case .dtProj:
            return sum { $0.dtProj.bytesPerProduct(precision) + ($0.dtBias.count + $0.A2.count + $0.D.count) * float }
                + batch * layers.count * d * config.stateSize * float
        case .outProj:
            return sum { $0.outProj.bytesPerProduct(precision) }
        case .lmHead:
            return lmHead.bytesPerProduct(precision)
        }
    }

    /// Bytes of the weights repacked for the fast path (in the cache file's mapping or in
    /// anonymous memory, as `packSource` says; 0 when nothing is packed).
    public var packedBytes: Int { matrices.reduce(0) { $0 + ($1.packed?.bytes ?? 0) } }

    /// Read the weights a decode step reads, on the pool's threads: the packed copy on
    /// the fast path, else every mapped checkpoint byte. The bandwidth a decode step could
    /// reach at best, in bytes per second (the best of six passes after a warm-up one,
    /// alternating between loads alone and loads prefetched into L2 and non-temporal).
    public func probeReadBandwidth() -> Double {
        let chunk = 8 << 20
        var regions: [(UnsafeRawPointer, Int)] = []
        if packSource != .none {
            regions = matrices.flatMap { $0.packed?.regions ?? [] }
        } else {
            for file in checkpoint.files { if let base = file.file.base { regions.append((base, file.file.size)) } }
        }
        var pieces: [(UnsafeRawPointer, Int)] = []
        for (base, size) in regions {
            for offset in stride(from: 0, to: size, by: chunk) { pieces.append((base + offset, min(chunk, size - offset))) }
        }
        let total = pieces.reduce(0) { $0 + $1.1 }
        // One pass to bring every page in (a page-cache miss would measure the disk), then
        // the best of six: the host's bandwidth drifts, and the probe is the ceiling. Passes
        // cycle through loads alone and loads prefetched into L2 and non-temporal (at the
        // fixed distance, else 6 KiB): which reads faster depends on the host and its state.
        var best = 0.0
        let distance = ComputePool.fixedPrefetch.flatMap { $0.distance > 0 ? $0.distance : nil } ?? Int(MK_PREFETCH_BYTES)
        let plans = [PrefetchPlan.off, PrefetchPlan(distance: distance, level: .l2), PrefetchPlan(distance: distance, level: .nonTemporal)]
        for pass in 0..<7 {
            let clock = ContinuousClock(), start = clock.now
            var sink = [UInt64](repeating: 0, count: pieces.count)
            let plan = plans[pass % plans.count]
            sink.withUnsafeMutableBufferPointer { sink in
                pool.parallelFor(pieces.count) { i in
                    sink[i] = mk_read_bytes(pieces[i].0, Int64(pieces[i].1), Int64(plan.distance), plan.level.kernelValue)
                }
            }
            let seconds = (clock.now - start).seconds
            precondition(sink.count == pieces.count)
            if pass > 0 { best = max(best, Double(total) / seconds) }
        }
        return best
    }
}
