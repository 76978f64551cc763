import CKernels
import COpenBLAS

/// Floats owned outside Swift's copy-on-write arrays, so that kernels may keep
/// raw pointers to them for the lifetime of the owner.
final class FloatStorage: @unchecked Sendable {
    let pointer: UnsafeMutablePointer<Float>
    let count: Int
    init(_ values: [Float]) {
        count = values.count
        pointer = .allocate(capacity: max(count, 1))
        values.withUnsafeBufferPointer { pointer.initialize(from: $0.baseAddress!, count: count) }
    }
    deinit { pointer.deallocate() }
}

/// How 4-bit products are computed.
public enum Precision: String, Sendable, CaseIterable {
    /// Float32 activations and weights decoded exactly as bitsandbytes does (the reference).
    case exact
    /// int8 activations against int8-mapped weights (AVX-512 VNNI) where the CPU and the
    /// matrix allow it, the exact path elsewhere. Looser: see docs/performance.md.
    case fast
}

/// How the fast path runs the lm_head (the one dense matrix of a 4-bit checkpoint).
public enum LMHeadPrecision: String, Sendable, CaseIterable {
    /// int8 weights: every logit close to the exact path's (relative error ~1e-2).
    case int8
    /// A 4-bit pass over the vocabulary finds the `rescoredTokens` most likely tokens,
    /// whose logits are then computed exactly from the checkpoint's rows; the others keep
    /// their 4-bit values. Reads half the lm_head's bytes (0.13 GB less a 7B step).
    case rescored4bit = "4bit"

    /// Tokens per position whose logits the 4-bit lm_head recomputes exactly.
    public static let rescoredTokens = 64
}

/// A weight matrix W [rows, cols] applied as y = x · Wᵀ: dense (F32/F16/BF16) or
/// bitsandbytes 4-bit, straight from the mapping. Every matrix product of the model
/// goes through here, so a faster kernel replaces one place.
public final class Linear: @unchecked Sendable {
    public enum Format: Sendable, Equatable {
        case dense(DType)
        case q4(QuantState)
    }

    public let name: String
    public let rows: Int
    public let cols: Int
    public let format: Format
    /// Bytes of the checkpoint this matrix reads per product.
    public let storedBytes: Int

    private enum Matrix { case dense(mk_dense_matrix), q4(mk_q4_matrix) }
    private let matrix: Matrix
    /// The int8 fast path's copy (see `pack`), when the CPU and the shape allow it.
    private(set) var packed: PackedWeights?
    private let retained: [AnyObject]  // the mapped file, and any decoded absmax

    /// A dense weight (F32, F16 or BF16) of shape [rows, cols].
    init(dense view: TensorView) throws(CheckpointError) {
        guard let kernelType = view.dtype.kernelDType, view.shape.count == 2 else {
            throw .dtypeMismatch(path: view.path, tensor: view.name, expected: "a F32, F16 or BF16 matrix",
                                 actual: "\(view.dtype.rawValue) \(view.shape)")
        }
        name = view.name
        rows = view.shape[0]
        cols = view.shape[1]
        format = .dense(view.dtype)
        storedBytes = view.byteCount
        var retained: [AnyObject] = [view.file]
        var data = view.bytes.baseAddress
        if let address = data, Int(bitPattern: address) % view.dtype.byteSize != 0 {
            // An unaligned tensor (possible in safetensors): decode once into owned memory.
            let copy = FloatStorage(try view.floats())
            retained.append(copy)
            data = UnsafeRawPointer(copy.pointer)
            matrix = .dense(mk_dense_matrix(data: data, dtype: Int32(MK_DTYPE_F32.rawValue), rows: Int64(rows), cols: Int64(cols)))
        } else {
            matrix = .dense(mk_dense_matrix(data: data, dtype: Int32(kernelType.rawValue), rows: Int64(rows), cols: Int64(cols)))
        }
        self.retained = retained
    }

    /// A bitsandbytes 4-bit weight named `name` (e.g. "backbone.layers.0.mixer.in_proj.weight").
    init(quantized name: String, in checkpoint: Checkpoint) throws(CheckpointError) {
        let codes = try checkpoint.tensor(name)
        let path = codes.path
        guard let state = try checkpoint.quantState(of: name) else {
            throw .missingQuantState(path: path, tensor: name, component: "\(name).quant_state.bitsandbytes__nf4 or __fp4")
        }
        func companion(_ suffix: String) throws(CheckpointError) -> TensorView {
            guard let view = checkpoint.tensors[name + "." + suffix] else {
                throw .missingQuantState(path: path, tensor: name, component: "\(name).\(suffix)")
            }
            return view
        }
        let count = state.shape[0] * state.shape[1]
        guard codes.dtype == .u8, codes.byteCount == (count + 1) / 2 else {
            throw .invalidQuantState(path: path, tensor: name,
                                     reason: "\(codes.byteCount) bytes of \(codes.dtype.rawValue) codes cannot hold \(state.shape) 4-bit values")
        }
        let blocks = (count + state.blocksize - 1) / state.blocksize

        let quantMap = try companion("quant_map")
        guard quantMap.elementCount == 16, quantMap.dtype == .f32 else {
            throw .invalidQuantState(path: path, tensor: name, reason: "quant_map must be 16 F32 values, is \(quantMap.dtype.rawValue) \(quantMap.shape)")
        }
        let table = try quantMap.floats()

        let absmaxView = try companion("absmax")
        guard absmaxView.elementCount == blocks else {
            throw .invalidQuantState(path: path, tensor: name, reason: "absmax has \(absmaxView.elementCount) values for \(blocks) blocks")
        }
        let absmax: UnsafePointer<Float>
        var owned: [AnyObject] = [codes.file]
        if let nestedBlocksize = state.nestedBlocksize, let offset = state.nestedOffset {
            guard absmaxView.dtype == .u8 else {
                throw .dtypeMismatch(path: path, tensor: name + ".absmax", expected: "U8 (double quantization)", actual: absmaxView.dtype.rawValue)
            }
            let nestedAbsmax = try companion("nested_absmax")
            let nestedMap = try companion("nested_quant_map")
            guard nestedAbsmax.elementCount == (blocks + nestedBlocksize - 1) / nestedBlocksize else {
                throw .invalidQuantState(path: path, tensor: name, reason: "nested_absmax has \(nestedAbsmax.elementCount) values for \(blocks) blocks of \(nestedBlocksize)")
            }
            guard nestedMap.elementCount == 256 else {
                throw .invalidQuantState(path: path, tensor: name, reason: "nested_quant_map has \(nestedMap.elementCount) values, expected 256")
            }
            let map = try nestedMap.floats(), scales = try nestedAbsmax.floats()
            var expanded = [Float](repeating: 0, count: blocks)
            mk_q4_expand_nested_absmax(absmaxView.bytes.baseAddress!.assumingMemoryBound(to: UInt8.self), Int64(blocks),
                                       map, scales, Int64(nestedBlocksize), offset, &expanded)
            let storage = FloatStorage(expanded)
            owned.append(storage)
            absmax = UnsafePointer(storage.pointer)
        } else {
            guard absmaxView.dtype == .f32 else {
                throw .dtypeMismatch(path: path, tensor: name + ".absmax", expected: "F32", actual: absmaxView.dtype.rawValue)
            }
            if let address = absmaxView.bytes.baseAddress, Int(bitPattern: address) % 4 == 0 {
                absmax = address.assumingMemoryBound(to: Float.self)  // a view into the mapping
            } else {
                let storage = FloatStorage(try absmaxView.floats())
                owned.append(storage)
                absmax = UnsafePointer(storage.pointer)
            }
        }

        self.name = name
        rows = state.shape[0]
        cols = state.shape[1]
        format = .q4(state)
        storedBytes = codes.byteCount + absmaxView.byteCount
        var matrix = mk_q4_matrix()
        matrix.codes = codes.bytes.baseAddress!.assumingMemoryBound(to: UInt8.self)
        matrix.absmax = absmax
        withUnsafeMutableBytes(of: &matrix.table) { tableBytes in table.withUnsafeBytes { tableBytes.copyMemory(from: $0) } }
        matrix.rows = Int64(rows)
        matrix.cols = Int64(cols)
        matrix.blocksize = Int64(state.blocksize)
        matrix.rounding = Int32(state.rounding.rawValue)
        self.matrix = .q4(matrix)
        retained = owned + [absmaxView.file]
    }

    /// A weight that is 4-bit if the checkpoint has a quant_state for it, else dense.
    static func load(_ name: String, from checkpoint: Checkpoint) throws(CheckpointError) -> Linear {
        if checkpoint.tensors.keys.contains(where: { $0.hasPrefix(name + ".quant_state.") }) {
            return try Linear(quantized: name, in: checkpoint)
        }
        if let view = checkpoint.tensors[name], view.dtype == .u8, checkpoint.tensors[name + ".absmax"] != nil {
            throw .missingQuantState(path: view.path, tensor: name, component: "\(name).quant_state.bitsandbytes__nf4 or __fp4")
        }
        return try Linear(dense: checkpoint.tensor(name))
    }

    /// Y[b, rowRange] = W[rowRange, :] · X[b, :] for b < batch (batch <= MK_MAX_BATCH):
    /// every weight is decoded once for the whole batch.
    func gemv(_ x: UnsafePointer<Float>, ldx: Int, batch: Int, _ y: UnsafeMutablePointer<Float>, ldy: Int,
              rows rowRange: Range<Int>) {
        let r0 = Int64(rowRange.lowerBound), r1 = Int64(rowRange.upperBound)
        switch matrix {
        case .dense(var m):
            if batch == 1 { mk_dense_gemv(&m, x, y, r0, r1) } else { mk_dense_gemv_batch(&m, x, Int64(ldx), Int64(batch), y, Int64(ldy), r0, r1) }
        case .q4(var m):
            if batch == 1 { mk_q4_gemv(&m, x, y, r0, r1) } else { mk_q4_gemv_batch(&m, x, Int64(ldx), Int64(batch), y, Int64(ldy), r0, r1) }
        }
    }

    /// Rows [r0, r1) of W decoded to float32, row-major, into `out`.
    func decodeRows(_ rowRange: Range<Int>, into out: UnsafeMutablePointer<Float>) {
        switch matrix {
        case .dense(var m): mk_dense_rows_to_f32(&m, Int64(rowRange.lowerBound), Int64(rowRange.upperBound), out)
        case .q4(var m): mk_q4_rows_to_f32(&m, Int64(rowRange.lowerBound), Int64(rowRange.upperBound), out)
        }
    }

    /// Rows decoded per GEMM tile: about 1 MiB of float32.
    var tileRows: Int { max(16, min(rows, (1 << 18) / max(cols, 1))) }
    /// Scratch floats one thread needs for `apply` with more than MK_MAX_BATCH rows.
    var tileFloats: Int { tileRows * cols }

    /// The layout this matrix packs to for the int8 fast path; nil where the CPU lacks
    /// VNNI or the shape does not fit (those keep the exact kernels).
    func packLayout(denseBits: Int32 = 8) -> PackedLayout? {
        guard mk_q8_available() != 0, mk_packed_fits(Int64(cols)) != 0 else { return nil }
        switch matrix {
        case .dense: return PackedLayout(rows: rows, cols: cols, bits: denseBits)
        case .q4(let m): return m.blocksize % 64 == 0 ? PackedLayout(rows: rows, cols: cols, bits: 4) : nil
        }
    }

    /// Pack into `base` (layout.span bytes).
    func pack(_ layout: PackedLayout, into base: UnsafeMutableRawPointer, pool: ComputePool) -> mk_packed_matrix {
        switch matrix {
        case .dense(let m): Packing.pack(dense: m, layout: layout, into: base, pool: pool)
        case .q4(let m): Packing.pack(q4: m, layout: layout, into: base, pool: pool)
        }
    }

    /// y[r] = W[r, :] · x exactly (float32 from the checkpoint's values) for each of `rows`,
    /// leaving the other entries of y alone.
    func exactRows(_ rows: some Sequence<Int>, x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>) {
        switch matrix {
        case .dense(var m): for r in rows { mk_dense_gemv(&m, x, y, Int64(r), Int64(r + 1)) }
        case .q4(var m): for r in rows { mk_q4_gemv(&m, x, y, Int64(r), Int64(r + 1)) }
        }
    }

    /// Whether the packed copy is a dense matrix at 4 bits (a first pass to be rescored).
    var packedDenseAt4Bits: Bool {
        guard let packed, case .dense = matrix else { return false }
        return packed.layout.bits == 4
    }

    /// Use packed weights from now on (once, while loading, before the model is shared).
    func adopt(_ weights: PackedWeights) { packed = weights }

    /// Bytes one product reads: the packed copy's, or the checkpoint's.
    func bytesPerProduct(_ precision: Precision) -> Int {
        if precision == .fast, let packed { packed.bytes } else { storedBytes }
    }

    /// Scratch bytes per piece the packed path needs (a decoded panel).
    var panelScratchBytes: Int { Int(mk_packed_scratch_bytes(Int64(cols))) }

    /// The int8 path: quantize X to int8 per block of 64, then one pass over the packed
    /// panels, split across threads.
    private func applyPacked(_ packed: PackedWeights, _ x: UnsafePointer<Float>, ldx: Int, count: Int,
                             into y: UnsafeMutablePointer<Float>, ldy: Int, pool: ComputePool,
                             q8Scratch: UnsafeMutableRawPointer, panelScratch: UnsafeMutableRawPointer,
                             epilogue: RowEpilogue, pieceRows: Int, quantized: UnsafeMutablePointer<mk_q8_rows>?) {
        // The products get the matrix and the activations through pointers to the stack:
        // closures that captured variables would box them, allocations on every product.
        withUnsafeTemporaryAllocation(of: mk_packed_matrix.self, capacity: 1) { m in
            m.initializeElement(at: 0, to: packed.matrix)
            if let quantized, count <= Int(MK_MAX_BATCH) {
                applyPacked(m.baseAddress!, quantized, quantize: false, x, ldx: ldx, count: count, into: y, ldy: ldy,
                            pool: pool, panelScratch: panelScratch, epilogue: epilogue, pieceRows: pieceRows)
                return
            }
            withUnsafeTemporaryAllocation(of: mk_q8_rows.self, capacity: 1) { activations in
                activations.initializeElement(at: 0, to: mk_q8_rows_in(q8Scratch, Int64(count), Int64(cols)))
                applyPacked(m.baseAddress!, activations.baseAddress!, quantize: true, x, ldx: ldx, count: count, into: y, ldy: ldy,
                            pool: pool, panelScratch: panelScratch, epilogue: epilogue, pieceRows: pieceRows)
            }
        }
    }

    private func applyPacked(_ m: UnsafeMutablePointer<mk_packed_matrix>, _ activations: UnsafeMutablePointer<mk_q8_rows>,
                             quantize: Bool, _ x: UnsafePointer<Float>, ldx: Int, count: Int,
                             into y: UnsafeMutablePointer<Float>, ldy: Int, pool: ComputePool,
                             panelScratch: UnsafeMutableRawPointer, epilogue: RowEpilogue, pieceRows: Int) {
        if count > Int(MK_MAX_BATCH) {
            pool.parallelRanges(count) { tokens in
                var part = activations.pointee
                part.rows = Int64(tokens.count)
                part.q += tokens.lowerBound * cols
                part.scale += tokens.lowerBound * (cols / 64)
                part.neg_corr += tokens.lowerBound * (cols / 64)
                mk_q8_quantize_rows(x + tokens.lowerBound * ldx, Int64(ldx), &part)
            }
        }
        let panels = Int(mk_packed_panels(Int64(rows)))
        let stride = (panelScratchBytes + 63) / 64 * 64
        let scratch = mk_packed_gemm_needs_scratch(Int64(count)) != 0
        if count <= Int(MK_MAX_BATCH) {
            // Decode: each thread streams the same share of the matrix on every step, in
            // long runs, and runs the epilogue on the channels it computed. Measured on
            // the 7B against 8 dynamically claimed pieces, steps alternating in one
            // process: 2-4% more tokens/s in either bandwidth state. Thread i owns the
            // i-th contiguous share of each part; a thread done with its own finishes
            // the others' from their ends (mk_share), instead of waiting for them.
            let parts = panels % decodeParts == 0 ? decodeParts : 1, per = panels / parts
            let multiple = max(1, pieceRows / 16), threads = pool.threads
            let size = ((per + threads - 1) / threads + multiple - 1) / multiple * multiple
            withUnsafeTemporaryAllocation(of: mk_share.self, capacity: threads * parts) { shares in
                for thread in 0..<threads {
                    for part in 0..<parts {
                        mk_share_init(&shares[thread * parts + part], Int64(part * per + min(per, thread * size)),
                                      Int64(part * per + min(per, (thread + 1) * size)))
                    }
                }
                withUnsafeTemporaryAllocation(of: mk_q8_claims.self, capacity: 1) { claims in
                    claims.initializeElement(at: 0, to: mk_q8_claims())
                    var job = DecodeProduct(matrix: m, activations: activations, x: quantize ? x : nil, ldx: ldx,
                                            claims: claims.baseAddress!, y: y, ldy: ldy, rows: rows, shares: shares.baseAddress!,
                                            threads: threads, parts: parts, multiple: Int64(multiple),
                                            panelScratch: scratch ? panelScratch : nil, panelStride: stride, epilogue: epilogue)
                    withUnsafeMutablePointer(to: &job) { pool.forEachThread(context: $0, DecodeProduct.run) }
                }
            }
            return
        }
        // Prefill: one share a thread, each with its scratch panel.
        let share = (panels + pool.threads - 1) / pool.threads
        pool.parallelFor(min(panels, pool.threads)) { piece in
            let first = piece * share, last = min(panels, first + share)
            guard first < last else { return }
            mk_packed_gemm(m, activations, y, Int64(ldy), Int64(first), Int64(last),
                           scratch ? panelScratch + piece * stride : nil)
            epilogue(first * 16..<min(rows, last * 16))
        }
    }

    /// Parts of the rows that each thread takes a share of in decode, set once while
    /// loading: 2 for in_proj, so that a thread computes the x and the z rows of the same
    /// channels and the conv after x is split evenly (1 where the panels do not split
    /// evenly into them).
    var decodeParts = 1

    /// Scratch panels the workspace holds for the packed products: one a thread.
    static func scratchPanels(_ pool: ComputePool) -> Int { pool.threads }

    /// Y[t, :] = X[t, :] · Wᵀ for `count` rows of X (tokens). X has leading dimension
    /// ldx, Y ldy. Up to MK_MAX_BATCH rows: a batched GEMV split over rows of W. More:
    /// W is decoded tile by tile and multiplied with OpenBLAS sgemm, tiles split over
    /// threads. `scratch` holds `pool.threads * tileFloats` floats. `epilogue` runs once
    /// for every row of W, on ranges whose Y columns are complete for all tokens.
    ///
    /// Decode-sized products: `pieceRows` (a multiple of 16) makes every range a thread
    /// takes, and so every range the epilogue sees, a multiple of that many rows from the
    /// start of its part (64: whole blocks of activations for the next product, see
    /// `quantizeForNextProduct`). On the packed path, `quantized` holds X already
    /// quantized (by the previous product's epilogue), so this product does not quantize
    /// it again.
    func apply(_ x: UnsafePointer<Float>, ldx: Int, count: Int, into y: UnsafeMutablePointer<Float>, ldy: Int,
               scratch: UnsafeMutablePointer<Float>, pool: ComputePool, precision: Precision = .exact,
               q8Scratch: UnsafeMutableRawPointer? = nil, epilogue: RowEpilogue = .none,
               pieceRows: Int = 16, quantized: UnsafeMutablePointer<mk_q8_rows>? = nil) {
        if precision == .fast, let packed, let q8Scratch {
            applyPacked(packed, x, ldx: ldx, count: count, into: y, ldy: ldy, pool: pool,
                        q8Scratch: q8Scratch, panelScratch: UnsafeMutableRawPointer(scratch), epilogue: epilogue,
                        pieceRows: pieceRows, quantized: quantized)
            return
        }
        if count <= Int(MK_MAX_BATCH) {
            let (chunk, tasks) = pool.rangeChunks(rows, granularity: max(16, pieceRows), perThread: 8)
            var job = ExactDecodeProduct(linear: Unmanaged.passUnretained(self), x: x, ldx: ldx, batch: count, y: y, ldy: ldy,
                                         chunk: chunk, epilogue: epilogue)
            withUnsafeMutablePointer(to: &job) { pool.parallelFor(tasks, context: $0, ExactDecodeProduct.run) }
            return
        }
        if case .dense(let m) = matrix, m.dtype == Int32(MK_DTYPE_F32.rawValue) {
            let weights = m.data!.assumingMemoryBound(to: Float.self)
            pool.parallelRanges(rows, granularity: 16, perThread: 1) { range in
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(count), Int32(range.count), Int32(cols), 1,
                            x, Int32(ldx), weights + range.lowerBound * cols, Int32(cols), 0, y + range.lowerBound, Int32(ldy))
                epilogue(range)
            }
            return
        }
        let tile = tileRows, tiles = (rows + tile - 1) / tile, threads = min(pool.threads, tiles)
        pool.parallelFor(threads) { thread in
            let buffer = scratch + thread * tileFloats
            for index in stride(from: thread, to: tiles, by: threads) {
                let r0 = index * tile, r1 = min(rows, r0 + tile)
                decodeRows(r0..<r1, into: buffer)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(count), Int32(r1 - r0), Int32(cols), 1,
                            x, Int32(ldx), buffer, Int32(cols), 0, y + r0, Int32(ldy))
                epilogue(r0..<r1)
            }
        }
    }
}

/// One decode product as the pool's threads run it (a C function and its arguments: no
/// closure, so no allocation). The threads first quantize the activations together
/// (mk_q8_quantize_shared: on the caller's thread alone, reading channels the other
/// thread's epilogue had just written, that was 1.7% of a 4-sequence step's samples
/// with the pool waiting). Thread i owns the i-th contiguous share of each part; a
/// thread done with its own finishes the others' from their ends (mk_share).
private struct DecodeProduct {
    let matrix: UnsafeMutablePointer<mk_packed_matrix>
    let activations: UnsafeMutablePointer<mk_q8_rows>
    let x: UnsafePointer<Float>?, ldx: Int  // nil: the activations are quantized already
    let claims: UnsafeMutablePointer<mk_q8_claims>
    let y: UnsafeMutablePointer<Float>, ldy: Int, rows: Int
    let shares: UnsafeMutablePointer<mk_share>
    let threads: Int, parts: Int, multiple: Int64
    let panelScratch: UnsafeMutableRawPointer?, panelStride: Int
    let epilogue: RowEpilogue

    static let run: mk_task_fn = { context, index in
        let job = context!.load(as: DecodeProduct.self), thread = Int(index)
        if let x = job.x { mk_q8_quantize_shared(x, Int64(job.ldx), job.activations, job.claims, Int32(thread), Int32(job.threads)) }
        let scratch = job.panelScratch.map { $0 + thread * job.panelStride }
        var first: Int64 = 0
        for round in 0..<job.threads {
            // round 0: this thread's own shares, from the front; then the others', from the back
            let owner = (thread + round) % job.threads, helper: Int32 = round == 0 ? 0 : 1
            for part in 0..<job.parts {
                while case let n = mk_share_take_multiple(job.shares + owner * job.parts + part, helper, job.multiple, &first), n > 0 {
                    mk_packed_gemm(job.matrix, job.activations, job.y, Int64(job.ldy), first, first + n, scratch)
                    job.epilogue(Int(first) * 16..<min(job.rows, Int(first + n) * 16))
                }
            }
        }
    }
}

/// One decode product on the exact path, as the pool runs it: task i computes rows
/// i * chunk..<(i + 1) * chunk (a C function and its arguments: no allocation).
private struct ExactDecodeProduct {
    let linear: Unmanaged<Linear>
    let x: UnsafePointer<Float>, ldx: Int, batch: Int
    let y: UnsafeMutablePointer<Float>, ldy: Int
    let chunk: Int
    let epilogue: RowEpilogue

    static let run: mk_task_fn = { context, index in
        let job = context!.load(as: ExactDecodeProduct.self)
        job.linear._withUnsafeGuaranteedRef { linear in
            let range = Int(index) * job.chunk..<min(linear.rows, (Int(index) + 1) * job.chunk)
            linear.gemv(job.x, ldx: job.ldx, batch: job.batch, job.y, ldy: job.ldy, rows: range)
            job.epilogue(range)
        }
    }
}
