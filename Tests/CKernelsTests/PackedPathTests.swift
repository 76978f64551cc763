import CKernels
import Testing

/// A 4-bit matrix (FP4 table) with random codes and absmax, owning its memory.
struct RandomQ4 {
    let rows: Int, cols: Int, blocksize: Int
    var codes: [UInt8], absmax: [Float]

    init(rows: Int, cols: Int, blocksize: Int, seed: UInt64) {
        var random = TestRandom(state: seed)
        self.rows = rows; self.cols = cols; self.blocksize = blocksize
        codes = (0..<rows * cols / 2).map { _ in random.byte() }
        absmax = (0..<(rows * cols + blocksize - 1) / blocksize).map { _ in abs(random.float()) * 0.05 + 0.01 }
    }

    func withMatrix<T>(_ body: (inout mk_q4_matrix) -> T) -> T {
        codes.withUnsafeBufferPointer { c in absmax.withUnsafeBufferPointer { a in
            var m = mk_q4_matrix()
            m.codes = c.baseAddress; m.absmax = a.baseAddress
            withUnsafeMutableBytes(of: &m.table) { t in KernelTests.fp4Table.withUnsafeBytes { t.copyMemory(from: $0) } }
            m.rows = Int64(rows); m.cols = Int64(cols); m.blocksize = Int64(blocksize); m.rounding = Int32(MK_ROUND_NONE.rawValue)
            return body(&m)
        } }
    }
}

/// A packed matrix and the memory it points into.
final class Packed {
    var codes: [UInt8], scales: [UInt8], rowScales: [Float]
    var matrix = mk_packed_matrix()

    init(rows: Int, cols: Int, bits: Int32) {
        codes = [UInt8](repeating: 0xAA, count: Int(mk_packed_code_bytes(Int64(rows), Int64(cols), bits)))
        scales = [UInt8](repeating: 0xFF, count: Int(mk_packed_scale_count(Int64(rows), Int64(cols))))
        rowScales = [Float](repeating: .nan, count: Int(mk_packed_row_count(Int64(rows))))
        matrix.rows = Int64(rows); matrix.cols = Int64(cols); matrix.bits = bits
    }

    static func q4(_ q: RandomQ4) -> Packed {
        let packed = Packed(rows: q.rows, cols: q.cols, bits: 4)
        var lut = [UInt8](repeating: 0, count: 16)
        packed.matrix.out_scale = mk_q8_lut(KernelTests.fp4Table, &lut)
        withUnsafeMutableBytes(of: &packed.matrix.lut) { $0.copyBytes(from: lut) }
        q.withMatrix { m in
            var scratch = [UInt8](repeating: 0, count: Int(mk_packed_scratch_bytes(Int64(q.cols))))
            mk_pack_q4(&m, 0, mk_packed_panels(Int64(q.rows)), &packed.codes, &packed.scales, &packed.rowScales, &scratch)
        }
        return packed
    }

    /// Y [tokens, rows] = X · Wᵀ through mk_packed_gemm.
    func gemm(_ xs: [Float], tokens: Int) -> [Float] {
        let rows = Int(matrix.rows), cols = Int(matrix.cols)
        var memory = [UInt8](repeating: 0, count: Int(mk_q8_rows_bytes(Int64(tokens), Int64(cols))))
        var scratch = [UInt8](repeating: 0, count: Int(mk_packed_scratch_bytes(Int64(cols))))
        var y = [Float](repeating: .nan, count: tokens * rows)
        memory.withUnsafeMutableBytes { raw in
            var x = mk_q8_rows_in(raw.baseAddress!, Int64(tokens), Int64(cols))
            mk_q8_quantize_rows(xs, Int64(cols), &x)
            codes.withUnsafeBufferPointer { c in scales.withUnsafeBufferPointer { s in rowScales.withUnsafeBufferPointer { rs in
                var m = matrix
                m.codes = c.baseAddress; m.scales = s.baseAddress; m.row_scales = rs.baseAddress
                // two calls: panel ranges must compose
                let panels = mk_packed_panels(Int64(rows))
                mk_packed_gemm(&m, &x, &y, Int64(rows), 0, panels / 2, &scratch)
                mk_packed_gemm(&m, &x, &y, Int64(rows), panels / 2, panels, &scratch)
            } } }
        }
        return y
    }
}

extension KernelTests {
/// The int8 fast path over packed weights: the VNNI kernels compute what the portable
/// definition does, and both stay close to the exact float product.
@Suite struct PackedPathTests {
    @Test func fp4TableMapsToInt8AlmostExactly() {
        var lut = [UInt8](repeating: 0, count: 16)
        let scale = mk_q8_lut(KernelTests.fp4Table, &lut)
        #expect(abs(1 / scale - 120) < 1e-3)  // table * 120: every value an integer but 0.0625/12*120
        for (i, v) in KernelTests.fp4Table.enumerated() where abs(v) != Float(0.0625 / 12) {
            #expect(Float(Int(lut[i]) - 128) == v * 120)
        }
    }

    @Test func activationQuantizationIsTheSameOnEveryPath() {
        var random = TestRandom(state: 5)
        // 21 blocks a row: one group of 16 that the AVX-512 path reduces together, and 5 more
        let rows = 3, cols = 21 * 64
        var xs = (0..<rows * cols).map { _ in random.float() * 3 }
        for i in 128..<192 { xs[i] = 0 }  // an all-zero block in the group
        for i in (cols + 18 * 64)..<(cols + 19 * 64) { xs[i] = 0 }  // and one after it, in row 1
        for i in (2 * cols + 5 * 64)..<(2 * cols + 6 * 64) { xs[i] *= 1e-3 }  // a block far below the others
        func quantize() -> (q: [Int8], scale: [Float], corr: [Int32]) {
            var memory = [UInt8](repeating: 0, count: Int(mk_q8_rows_bytes(Int64(rows), Int64(cols))))
            return memory.withUnsafeMutableBytes { raw in
                var x = mk_q8_rows_in(raw.baseAddress!, Int64(rows), Int64(cols))
                mk_q8_quantize_rows(xs, Int64(cols), &x)
                return (Array(UnsafeBufferPointer(start: x.q, count: rows * cols)),
                        Array(UnsafeBufferPointer(start: x.scale, count: rows * cols / 64)),
                        Array(UnsafeBufferPointer(start: x.neg_corr, count: rows * cols / 64)))
            }
        }
        #expect(mk_force_isa(1) == 0)
        let reference = quantize()
        mk_force_isa(0)
        for isa in availableISAs where isa > 1 {
            #expect(mk_force_isa(isa) == 0)
            let other = quantize()
            mk_force_isa(0)
            #expect(other.q == reference.q && other.scale == reference.scale && other.corr == reference.corr, "isa \(isa)")
        }
        #expect(reference.q[128..<192].allSatisfy { $0 == 0 } && reference.scale[2] == 0 && reference.corr[2] == 0)
        #expect(reference.scale[21 + 18] == 0 && reference.corr[21 + 18] == 0)
        // the definition: a block's values over its largest magnitude, times 127, rounded
        for block in 0..<rows * cols / 64 {
            let values = xs[(block * 64)..<((block + 1) * 64)]
            let largest = values.map { abs($0) }.max()!
            #expect(reference.scale[block] == largest / 127, "block \(block)")
            guard largest > 0 else { continue }
            let q = values.map { Int8(($0 * (127 / largest)).rounded(.toNearestOrEven)) }
            #expect(Array(reference.q[(block * 64)..<((block + 1) * 64)]) == q, "block \(block)")
            #expect(reference.corr[block] == -128 * q.reduce(0) { $0 + Int32($1) }, "block \(block)")
        }
        #expect(reference.q.allSatisfy { $0 != -128 })
    }

    /// The threads of a decode product quantize its activations together; the result is
    /// the same as one thread's, whoever does which part, and a thread that never
    /// arrives holds nobody up.
    @Test(arguments: [1, 2, 3, 5])
    func sharedQuantizationIsTheSameAsOneThreads(threads: Int) async {
        var random = TestRandom(state: 9)
        let rows = 4, cols = 8192
        let xs = (0..<rows * cols).map { _ in random.float() * 2 }
        let bytes = Int(mk_q8_rows_bytes(Int64(rows), Int64(cols)))
        func contents(_ raw: UnsafeMutableRawBufferPointer) -> [UInt8] {
            let x = mk_q8_rows_in(raw.baseAddress!, Int64(rows), Int64(cols))
            let q = UnsafeRawBufferPointer(start: x.q, count: rows * cols)
            let scale = UnsafeRawBufferPointer(start: x.scale, count: rows * cols / 64 * 4)
            let corr = UnsafeRawBufferPointer(start: x.neg_corr, count: rows * cols / 64 * 4)
            return Array(q) + Array(scale) + Array(corr)
        }
        var expected = [UInt8](repeating: 0, count: bytes)
        let reference = expected.withUnsafeMutableBytes { raw in
            var x = mk_q8_rows_in(raw.baseAddress!, Int64(rows), Int64(cols))
            mk_q8_quantize_rows(xs, Int64(cols), &x)
            return contents(raw)
        }
        // one thread of `threads`, the others never come: it does every part
        var alone = [UInt8](repeating: 0, count: bytes)
        let byOne = alone.withUnsafeMutableBytes { raw in
            var x = mk_q8_rows_in(raw.baseAddress!, Int64(rows), Int64(cols))
            var claims = mk_q8_claims()
            mk_q8_quantize_shared(xs, Int64(cols), &x, &claims, Int32(threads - 1), Int32(threads))
            #expect(claims.done == Int64(threads))
            return contents(raw)
        }
        #expect(byOne == reference)
        // all of them at once, on threads of their own
        let memory = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
        defer { memory.deallocate() }
        memory.initializeMemory(as: UInt8.self, repeating: 0, count: bytes)
        let claims = UnsafeMutablePointer<mk_q8_claims>.allocate(capacity: 1)
        defer { claims.deallocate() }
        claims.initialize(to: mk_q8_claims())
        let rowsPointer = UnsafeMutablePointer<mk_q8_rows>.allocate(capacity: 1)
        defer { rowsPointer.deallocate() }
        rowsPointer.initialize(to: mk_q8_rows_in(memory, Int64(rows), Int64(cols)))
        nonisolated(unsafe) let (shared, layout) = (claims, rowsPointer)
        let input = xs
        await withTaskGroup(of: Void.self) { group in
            for thread in 0..<threads {
                group.addTask { mk_q8_quantize_shared(input, Int64(cols), layout, shared, Int32(thread), Int32(threads)) }
            }
        }
        #expect(contents(UnsafeMutableRawBufferPointer(start: memory, count: bytes)) == reference)
    }

    @Test func blockScalesAreUInt8FractionsOfTheRowsLargest() {
        var q = RandomQ4(rows: 21, cols: 256, blocksize: 64, seed: 17)
        for b in 0..<4 { q.absmax[2 * 4 + b] = 0 }     // row 2: all blocks zero
        q.absmax[3 * 4 + 1] = .nan                       // row 3: one unusable absmax
        q.absmax[4 * 4 + 2] = 1e-6                       // row 4: a block far below the others
        #expect(mk_force_isa(1) == 0)
        let packed = Packed.q4(q)
        mk_force_isa(0)
        for r in 0..<q.rows {
            let row = (0..<4).map { q.absmax[r * 4 + $0] }
            let largest = row.filter { $0.isFinite }.max()!
            let rowScale = packed.rowScales[r]
            #expect(rowScale == largest / 255, "row \(r)")
            for b in 0..<4 {
                let stored = Float(packed.scales[((r / 16) * 4 + b) * 16 + r % 16]) * rowScale
                let expected = row[b].isFinite ? row[b] : 0
                #expect(abs(stored - expected) <= rowScale / 2 * 1.0001, "row \(r) block \(b): \(stored) vs \(expected)")
                if expected == largest, largest > 0 { #expect(packed.scales[((r / 16) * 4 + b) * 16 + r % 16] == 255) }
            }
        }
        // rows past the end of the matrix: zero scales
        for r in q.rows..<32 {
            #expect(packed.rowScales[r] == 0)
            for b in 0..<4 { #expect(packed.scales[((r / 16) * 4 + b) * 16 + r % 16] == 0) }
        }
    }

    @Test func eachInstructionSetHasItsInt8Path() {
        // AVX-512 without VNNI (Skylake-X) runs the AVX2 int8 kernel
        // With VBMI (Ice Lake, Zen 4) the AVX-512 path looks codes up with vpermb, unless told not to
        let expected: [Int32: Set<String>] = [1: ["scalar"], 2: ["avx2"], 3: ["avx512-vnni-vbmi", "avx512-vnni", "avx2"]]
        for isa in availableISAs {
            #expect(mk_force_isa(isa) == 0)
            let path = String(cString: mk_q8_path())
            mk_q8_allow_vbmi(0)
            let withoutVBMI = String(cString: mk_q8_path())
            mk_q8_allow_vbmi(1)
            mk_force_isa(0)
            #expect(expected[isa]!.contains(path), "isa \(isa): \(path)")
            #expect(withoutVBMI != "avx512-vnni-vbmi", "isa \(isa) without VBMI: \(withoutVBMI)")
        }
    }

    @Test(arguments: [64, 128]) func vectorPackingMatchesTheScalarPacking(blocksize: Int) throws {
        try #require(availableISAs.contains(3), "needs AVX-512")
        let q = RandomQ4(rows: 37, cols: 256, blocksize: blocksize, seed: 7)
        let fast = Packed.q4(q)
        #expect(mk_force_isa(1) == 0)
        let slow = Packed.q4(q)
        mk_force_isa(0)
        #expect(fast.codes == slow.codes)
        #expect(fast.scales == slow.scales)
        #expect(fast.rowScales == slow.rowScales)
    }

    @Test func packedCodesHoldTheCheckpointCodes() {
        // row i, column k of block b: vector c = (k / 4) % 8, low nibble for k < 32
        let q = RandomQ4(rows: 20, cols: 128, blocksize: 64, seed: 3)
        #expect(mk_force_isa(1) == 0)
        let packed = Packed.q4(q)
        mk_force_isa(0)
        for r in 0..<20 {
            for k in 0..<128 {
                let e = r * 128 + k, byte = q.codes[e / 2]
                let code = e % 2 == 0 ? byte >> 4 : byte & 15
                let p = r / 16, i = r % 16, b = k / 64, kk = k % 64
                let packedByte = packed.codes[(p * 2 + b) * 512 + ((kk / 4) % 8) * 64 + 4 * i + kk % 4]
                #expect((kk < 32 ? packedByte & 15 : packedByte >> 4) == code, "row \(r) column \(k)")
            }
        }
        // rows past the end of the matrix have zero scales
        for b in 0..<2 { for i in 4..<16 { #expect(packed.scales[(1 * 2 + b) * 16 + i] == 0) } }
    }

    @Test(arguments: [1, 2, 3, 4, 8, 9, 13, 29]) func q4ProductMatchesDefinitionAndFloat(tokens: Int) throws {
        let q = RandomQ4(rows: 40, cols: 256, blocksize: 64, seed: UInt64(tokens))
        var random = TestRandom(state: 99)
        let xs = (0..<tokens * q.cols).map { _ in random.float() }
        #expect(mk_force_isa(1) == 0)
        let packed = Packed.q4(q)
        let slow = packed.gemm(xs, tokens: tokens)
        mk_force_isa(0)
        var exact = [Float](repeating: 0, count: tokens * q.rows)
        q.withMatrix { m in
            for t in 0..<tokens { mk_q4_gemv(&m, Array(xs[t * q.cols..<(t + 1) * q.cols]), &exact[t * q.rows], 0, Int64(q.rows)) }
        }
        let scale = exact.map(abs).max()!
        for i in slow.indices { #expect(abs(slow[i] - exact[i]) <= 2e-2 * scale, "int8 vs float at \(i)") }
        expectVectorPathsMatch(packed, xs, tokens: tokens, definition: slow)
    }

    /// Every vector kernel this CPU has (AVX2, AVX-512 VNNI with vpshufb or, where VBMI
    /// runs, vpermb lookups) computes what the definition does.
    func expectVectorPathsMatch(_ packed: Packed, _ xs: [Float], tokens: Int, definition: [Float]) {
        for isa in availableISAs where isa > 1 {
            for vbmi: Int32 in [1, 0] {
                #expect(mk_force_isa(isa) == 0)
                mk_q8_allow_vbmi(vbmi)
                let path = String(cString: mk_q8_path())
                let fast = packed.gemm(xs, tokens: tokens)
                mk_q8_allow_vbmi(1)
                mk_force_isa(0)
                for i in fast.indices {
                    #expect(abs(fast[i] - definition[i]) <= 1e-5 * max(1, abs(definition[i])), "\(path) vs definition at \(i)")
                }
            }
        }
    }

    @Test func dense4BitPackingKeepsTheHighNibbleOfTheInt8Weights() {
        let rows = 21, cols = 128
        var random = TestRandom(state: 23)
        let weights = (0..<rows * cols).map { _ in mk_f32_to_f16(random.float() * 0.1) }
        let q8 = Packed(rows: rows, cols: cols, bits: 8), q4 = Packed(rows: rows, cols: cols, bits: 4)
        weights.withUnsafeBufferPointer { w in
            var m = mk_dense_matrix(data: w.baseAddress, dtype: Int32(MK_DTYPE_F16.rawValue), rows: Int64(rows), cols: Int64(cols))
            var floats = [Float](repeating: 0, count: 16 * cols), panel = [UInt8](repeating: 0, count: 16 * cols)
            mk_pack_dense_q8(&m, 0, mk_packed_panels(Int64(rows)), &q8.codes, &q8.scales, &q8.rowScales, &floats)
            mk_pack_dense_q4(&m, 0, mk_packed_panels(Int64(rows)), &q4.codes, &q4.scales, &q4.rowScales, &floats, &panel)
        }
        #expect(q4.scales == q8.scales && q4.rowScales == q8.rowScales)
        var lut = [UInt8](repeating: 0, count: 16)
        mk_dense_q4_lut(&lut)
        #expect(lut == (0..<16).map { UInt8(16 * $0 + 8) })
        // q8 vector q of block b <-> q4 vector q % 8, low nibble for q < 8
        for p in 0..<2 { for b in 0..<2 { for q in 0..<16 { for e in 0..<64 {
            let u = q8.codes[((p * 2 + b) * 16 + q) * 64 + e]
            let byte = q4.codes[((p * 2 + b) * 8 + q % 8) * 64 + e]
            #expect((q < 8 ? byte & 15 : byte >> 4) == u >> 4)
        } } } }
    }

    @Test(arguments: [1, 5, 20]) func denseInt8ProductMatchesDefinitionAndFloat(tokens: Int) throws {
        let rows = 35, cols = 192
        var random = TestRandom(state: UInt64(tokens) + 11)
        let weights = (0..<rows * cols).map { _ in mk_f32_to_f16(random.float() * 0.1) }
        let xs = (0..<tokens * cols).map { _ in random.float() }
        let packed = Packed(rows: rows, cols: cols, bits: 8)
        var exact = [Float](repeating: 0, count: tokens * rows)
        weights.withUnsafeBufferPointer { w in
            var m = mk_dense_matrix(data: w.baseAddress, dtype: Int32(MK_DTYPE_F16.rawValue), rows: Int64(rows), cols: Int64(cols))
            var floats = [Float](repeating: 0, count: 16 * cols)
            packed.matrix.out_scale = 1
            mk_pack_dense_q8(&m, 0, mk_packed_panels(Int64(rows)), &packed.codes, &packed.scales, &packed.rowScales, &floats)
            for t in 0..<tokens { mk_dense_gemv(&m, Array(xs[t * cols..<(t + 1) * cols]), &exact[t * rows], 0, Int64(rows)) }
        }
        #expect(mk_force_isa(1) == 0)
        let slow = packed.gemm(xs, tokens: tokens)
        mk_force_isa(0)
        let scale = exact.map(abs).max()!
        for i in slow.indices { #expect(abs(slow[i] - exact[i]) <= 1e-2 * scale, "int8 vs float at \(i)") }
        expectVectorPathsMatch(packed, xs, tokens: tokens, definition: slow)
    }

    /// How the decode products prefetch is a process-wide setting: the distance clamped
    /// to whole lines in [0, 64 KiB], the level L2 or non-temporal (anything else counts as
    /// L2), and it changes when lines are asked for, never what is computed (4-bit and int8
    /// decode tiles, any batch size up to 8).
    @Test func prefetchPlanIsASettingThatNeverChangesTheProduct() {
        let initial = (mk_prefetch_distance(), mk_prefetch_level())
        defer { mk_set_prefetch(initial.0, initial.1) }
        let l2 = Int32(MK_PREFETCH_L2), nta = Int32(MK_PREFETCH_NONTEMPORAL)
        for (set, expected): (Int64, Int64) in [(0, 0), (6144, 6144), (4100, 4096), (-5, 0), (1 << 20, 65536)] {
            mk_set_prefetch(set, nta)
            #expect(mk_prefetch_distance() == expected, "set \(set)")
            #expect(mk_prefetch_level() == nta)
        }
        mk_set_prefetch(64, 7)
        #expect(mk_prefetch_level() == l2)
        let q = RandomQ4(rows: 48, cols: 512, blocksize: 64, seed: 5)
        let q4 = Packed.q4(q)
        var random = TestRandom(state: 17)
        for tokens in [1, 3, 8] {
            let xs = (0..<tokens * q.cols).map { _ in random.float() }
            var results: [[Float]] = []
            for (distance, level): (Int64, Int32) in [(0, l2), (6144, l2), (6144, nta), (64, nta), (65536, l2)] {
                mk_set_prefetch(distance, level)
                results.append(q4.gemm(xs, tokens: tokens))
            }
            for r in results.dropFirst() { #expect(r == results[0], "4-bit, \(tokens) tokens") }
        }
    }
}
}
