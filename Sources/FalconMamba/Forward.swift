import CKernels
import Synchronization

/// Rows of a forward pass that share one recurrent state, in order.
struct Segment {
    var rows: Range<Int>
    var conv: UnsafeMutablePointer<Float>
    var ssm: UnsafeMutablePointer<Float>
}

/// Activation buffers for `tokens` rows, carved from one allocation.
private struct Workspace {
    var storage: [Float]
    /// Where each buffer starts in `storage` (inline: a decode step allocates nothing).
    let offsets: InlineArray<10, Int>

    /// Carved from `spare` where it is large enough (its contents do not matter: every
    /// buffer is written before it is read), else from a new allocation.
    init(model m: FalconMambaModel, tokens t: Int, spare: [Float]?) {
        let h = m.hiddenSize, d = m.innerSize, xw = m.timeStepRank + 2 * m.stateSize
        var tileFloats = 0, panelBytes = 0
        for matrix in m.matrices {
            tileFloats = max(tileFloats, matrix.tileFloats)
            panelBytes = max(panelBytes, matrix.panelScratchBytes)
        }
        let tile = max(t <= Int(MK_MAX_BATCH) ? 0 : m.pool.threads * tileFloats,
                       m.packSource == .none || mk_packed_gemm_needs_scratch(Int64(t)) == 0 ? 0
                           : Linear.scratchPanels(m.pool) * (panelBytes + 63) / 4)
        let sizes: InlineArray<10, Int> = [
            t * h,       // residual
            t * h,       // normed input / block output
            t * 2 * d,   // in_proj output: x | z
            t * d,       // conv output
            t * xw,      // x_proj output: dt | B | C
            t * d,       // dt
            t * d,       // scan output
            tile,        // decoded weight tiles or panels, one per thread or piece
            Int(mk_q8_rows_bytes(Int64(t), Int64(max(h, d, xw)))) / 4 + 16,  // int8 activations
            // decode: x_proj's and out_proj's int8 activations, made by the epilogues before
            t <= Int(MK_MAX_BATCH) ? Int(mk_q8_rows_bytes(Int64(t), Int64(d))) / 4 + 16 : 0]
        var offsets = InlineArray<10, Int>(repeating: 0), total = 0
        for i in sizes.indices {
            offsets[i] = total
            total += sizes[i]
        }
        if let spare, spare.count >= total {
            storage = spare
        } else {
            storage = [Float](repeating: 0, count: total)
        }
        self.offsets = offsets
    }
}

/// Workspaces of decode-sized steps (at most MK_MAX_BATCH rows, under 2 MB each), kept
/// for the next steps: a fresh one per step cost a page fault and a zeroed page for
/// every 4 KiB of it, ~1.4% of a 4-sequence step's time. As many are kept as steps ran
/// at once (the scheduler runs one at a time; tests and callers may run more).
final class SpareWorkspaces: Sendable {
    private let spares = Mutex<[[Float]]>([])

    func take() -> [Float]? { spares.withLock { $0.popLast() } }

    func give(_ storage: [Float]) {
        spares.withLock { if $0.count < 4 { $0.append(storage) } }
    }
}

extension FalconMambaModel {
    /// Runs `tokens` (rows) through every layer. Rows of one segment are consecutive
    /// tokens of one sequence; different segments are independent sequences (a batch).
    /// Appends every row's hidden state, and the logits of rows `logitRows`, to `output`.
    func forward(_ tokens: some Collection<Int>, segments: UnsafeBufferPointer<Segment>, logitRows: Range<Int>?,
                 into output: inout ForwardOutput) {
        // Decode-sized steps stream the weights through the prefetching products, at the
        // distance the tuner races or has chosen for steps like this one.
        if precision == .fast, packSource != .none, tokens.count <= Int(MK_MAX_BATCH) {
            prefetchTuner.run(rows: tokens.count, logits: logitRows?.isEmpty == false) { _ in
                forwardLayers(tokens, segments: segments, logitRows: logitRows, into: &output)
            }
        } else {
            forwardLayers(tokens, segments: segments, logitRows: logitRows, into: &output)
        }
    }

    private func forwardLayers(_ tokens: some Collection<Int>, segments: UnsafeBufferPointer<Segment>, logitRows: Range<Int>?,
                               into output: inout ForwardOutput) {
        let t = tokens.count
        let h = hiddenSize, d = innerSize, n = stateSize, r = timeStepRank, k = convKernel
        let xw = r + 2 * n
        let decodeSized = t <= Int(MK_MAX_BATCH)
        var workspace = Workspace(model: self, tokens: t, spare: decodeSized ? spareWorkspaces.take() : nil)
        defer { if decodeSized { spareWorkspaces.give(workspace.storage) } }
        let offsets = workspace.offsets
        let pool = self.pool
        // Decode steps measured phase by phase (ForwardOutput.phases), or not at all.
        var phases = decodeSized ? output.phases : nil
        var mark = phases == nil ? 0 : DecodePhases.now()
        defer {
            if var measured = phases {
                measured.countStep()
                output.phases = measured
            }
        }
        workspace.storage.withUnsafeMutableBufferPointer { buffer in
            let base = buffer.baseAddress!
            let residual = base + offsets[0], normed = base + offsets[1], xz = base + offsets[2]
            let xc = base + offsets[3], dbc = base + offsets[4], dt = base + offsets[5]
            let y = base + offsets[6], scratch = base + offsets[7]
            let q8 = UnsafeMutableRawPointer(base + offsets[8])

            let kernelType = Int32(embeddings.dtype.kernelDType!.rawValue)
            let rowBytes = h * embeddings.dtype.byteSize
            for (i, token) in tokens.enumerated() {
                mk_convert_to_f32(embeddings.bytes.baseAddress! + token * rowBytes, kernelType, Int64(h), residual + i * h)
            }

            // The conv and the scan are per channel, so each runs inside the product that
            // finishes its inputs, on the rows that thread just computed: the conv after
            // in_proj's x rows, softplus and the scan after dt_proj's rows. No separate
            // parallel section, and one thread's state updates overlap the other's reads.
            // In decode on the packed path they also quantize the next product's input
            // (the conv x_proj's, the scan out_proj's) on the channels they wrote, in
            // ranges of whole blocks of 64 (`pieceRows`), so that product does not
            // quantize it (`quantizeForNextProduct`).
            withUnsafeTemporaryAllocation(of: mk_q8_rows.self, capacity: 1) { nextRows in
                nextRows.initializeElement(at: 0, to: mk_q8_rows_in(base + offsets[9], Int64(t), Int64(d)))
                for (index, layer) in layers.enumerated() {
                    mk_rms_norm(residual, Int64(h), layer.norm, config.layerNormEpsilon, Int64(t), Int64(h), normed, Int64(h))
                    let epilogues = epiloguesQuantizeNext && decodeSized && precision == .fast && d % 64 == 0
                    let pieceRows = epilogues ? 64 : 16
                    let nextOfConv = epilogues && layer.xProj.packed != nil ? nextRows.baseAddress : nil
                    let nextOfScan = epilogues && layer.outProj.packed != nil ? nextRows.baseAddress : nil
                    layer.withPointers { pointers in
                        var conv = ConvEpilogue(segments: segments, stateOffset: index * d * k, layer: pointers, xz: xz, xc: xc, d: d, k: k,
                                                next: nextOfConv)
                        withUnsafePointer(to: &conv) { conv in
                            layer.inProj.apply(normed, ldx: h, count: t, into: xz, ldy: 2 * d, scratch: scratch, pool: pool,
                                               precision: precision, q8Scratch: q8,
                                               epilogue: RowEpilogue(run: ConvEpilogue.run, context: conv), pieceRows: pieceRows)
                        }
                        phases?.add(.inProj, since: &mark)
                        layer.xProj.apply(xc, ldx: d, count: t, into: dbc, ldy: xw, scratch: scratch, pool: pool, precision: precision,
                                          q8Scratch: q8, quantized: nextOfConv)
                        // FalconMamba: weightless RMS norm on dt, B and C separately
                        let parts: InlineArray<3, (offset: Int, width: Int)> = [(0, r), (r, n), (r + n, n)]
                        for part in parts.indices {
                            let (offset, width) = parts[part]
                            mk_rms_norm(dbc + offset, Int64(xw), nil, config.mixerRMSEpsilon, Int64(t), Int64(width), dbc + offset, Int64(xw))
                        }
                        phases?.add(.xProj, since: &mark)
                        var scan = ScanEpilogue(segments: segments, stateOffset: index * d * n, layer: pointers, dt: dt, xc: xc, dbc: dbc,
                                                xz: xz, y: y, tokens: t, d: d, n: n, r: r, next: nextOfScan)
                        withUnsafePointer(to: &scan) { scan in
                            layer.dtProj.apply(dbc, ldx: xw, count: t, into: dt, ldy: d, scratch: scratch, pool: pool,
                                               precision: precision, q8Scratch: q8,
                                               epilogue: RowEpilogue(run: ScanEpilogue.run, context: scan), pieceRows: pieceRows)
                        }
                        phases?.add(.dtProj, since: &mark)
                    }
                    layer.outProj.apply(y, ldx: d, count: t, into: normed, ldy: h, scratch: scratch, pool: pool, precision: precision,
                                        q8Scratch: q8, quantized: nextOfScan)
                    for i in 0..<(t * h) { residual[i] += normed[i] }
                    phases?.add(.outProj, since: &mark)
                }
            }

            mk_rms_norm(residual, Int64(h), normF, config.layerNormEpsilon, Int64(t), Int64(h), normed, Int64(h))
            output.hidden.append(contentsOf: UnsafeBufferPointer(start: normed, count: t * h))
            if let rows = logitRows, !rows.isEmpty {
                let first = output.logits.count
                output.logits.append(contentsOf: repeatElement(0, count: rows.count * vocabSize))
                output.logits.withUnsafeMutableBufferPointer { logits in
                    lmHead.apply(normed + rows.lowerBound * h, ldx: h, count: rows.count,
                                 into: logits.baseAddress! + first, ldy: vocabSize, scratch: scratch, pool: pool,
                                 precision: precision, q8Scratch: q8)
                    if precision == .fast, lmHead.packedDenseAt4Bits {
                        rescoreLikelyTokens(rows: rows, hidden: normed, logits: logits.baseAddress! + first)
                    }
                }
                output.logitRows += rows.count
            }
            phases?.add(.lmHead, since: &mark)
        }
    }

    /// After a 4-bit lm_head pass: the `LMHeadPrecision.rescoredTokens` largest logits of
    /// each row are computed again, exactly, from the checkpoint's lm_head rows, split
    /// across the pool. The approximate pass only has to rank the true best tokens among
    /// them (its error is ~1/16 of a weight's range); sampling then sees exact logits
    /// for every token it is likely to pick. The other tokens keep their estimates, capped
    /// at the lowest rescored logit, so none can outrank a token that was checked.
    private func rescoreLikelyTokens(rows: Range<Int>, hidden: UnsafePointer<Float>, logits: UnsafeMutablePointer<Float>) {
        let k = min(LMHeadPrecision.rescoredTokens, vocabSize), h = hiddenSize, v = vocabSize
        var picks = [Int](repeating: 0, count: rows.count * k)
        picks.withUnsafeMutableBufferPointer { picks in
            for i in 0..<rows.count {
                Self.largest(k, of: logits + i * v, count: v, into: picks.baseAddress! + i * k)
            }
            let lmHead = self.lmHead
            let pieces = min(k, pool.threads * 2)
            pool.parallelFor(rows.count * pieces) { task in
                let i = task / pieces, piece = task % pieces
                let part = picks[(i * k + piece * k / pieces)..<(i * k + (piece + 1) * k / pieces)]
                lmHead.exactRows(part, x: hidden + rows.lowerBound * h + i * h, into: logits + i * v)
            }
            for i in 0..<rows.count {
                let row = logits + i * v, mine = picks[(i * k)..<((i + 1) * k)]
                let floor = mine.map { row[$0] }.min()!
                let chosen = Set(mine)
                for j in 0..<v where row[j] > floor && !chosen.contains(j) { row[j] = floor }
            }
        }
    }

    /// The indices of the k largest of values[0..<count] (any order), into out[0..<k].
    static func largest(_ k: Int, of values: UnsafePointer<Float>, count: Int, into out: UnsafeMutablePointer<Int>) {
        // a min-heap of the best k so far: one comparison for most of the vocabulary
        let heap = UnsafeMutableBufferPointer(start: out, count: k)
        for i in 0..<k { heap[i] = i }
        func less(_ a: Int, _ b: Int) -> Bool { values[a] < values[b] || (values[a] == values[b] && a > b) }
        func siftDown(_ start: Int) {
            var i = start
            while true {
                let l = 2 * i + 1, r = l + 1
                var m = i
                if l < k, less(heap[l], heap[m]) { m = l }
                if r < k, less(heap[r], heap[m]) { m = r }
                if m == i { return }
                heap.swapAt(i, m)
                i = m
            }
        }
        for i in stride(from: k / 2 - 1, through: 0, by: -1) { siftDown(i) }
        for i in k..<count where less(heap[0], i) {
            heap[0] = i
            siftDown(0)
        }
    }
}
