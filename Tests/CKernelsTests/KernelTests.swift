import CKernels
import Foundation
import Testing

/// Every ISA path this CPU has must agree with the portable scalar path.
let availableISAs: [Int32] = [1, 2, 3].filter { isa in
    defer { mk_force_isa(0) }
    return mk_force_isa(isa) == 0
}

/// A small deterministic generator for test data.
struct TestRandom {
    var state: UInt64
    mutating func next() -> UInt64 {
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return state >> 11
    }
    mutating func float() -> Float { Float(next() % 2_000_001) / 1_000_000 - 1 }
    mutating func byte() -> UInt8 { UInt8(truncatingIfNeeded: next()) }
}

struct Q4Case: CustomTestStringConvertible, Sendable {
    let rows: Int, cols: Int, blocksize: Int, rounding: mk_rounding
    var testDescription: String { "\(rows)x\(cols) block \(blocksize) rounding \(rounding.rawValue)" }
}

@Suite(.serialized) struct KernelTests {
    static let fp4Table: [Float] = [0, 0.0625, 8, 12, 4, 6, 2, 3, -0.0, -0.0625, -8, -12, -4, -6, -2, -3].map { $0 / 12 }

    /// One ISA at a time; the dispatcher is process-global, so this suite is serialized.
    func withISA<T>(_ isa: Int32, _ body: () -> T) -> T {
        #expect(mk_force_isa(isa) == 0)
        defer { mk_force_isa(0) }
        return body()
    }

    @Test func half() {
        // every finite half survives a round trip, bit for bit
        for bits in UInt16.min...UInt16.max where (bits & 0x7C00) != 0x7C00 {
            #expect(mk_f32_to_f16(mk_f16_to_f32(bits)) == bits)
        }
        #expect(mk_f16_to_f32(0x3C00) == 1)
        #expect(mk_f16_to_f32(0x0001) == 5.9604644775390625e-8)
        // ties go to even
        #expect(mk_f32_to_f16(1 + 1.0 / 2048) == 0x3C00)
        #expect(mk_f32_to_f16(1 + 3.0 / 2048) == 0x3C02)
        #expect(mk_f32_to_f16(65520) == 0x7C00)
        #expect(mk_f32_to_f16(-70000) == 0xFC00)
    }

    @Test func bfloat16() {
        #expect(mk_round_bf16(1 + 1.0 / 256) == 1)               // tie to even
        #expect(mk_round_bf16(1 + 3.0 / 256) == 1 + 4.0 / 256)   // tie to even, upwards
        #expect(mk_round_bf16(1 + 1.5 / 256) == 1 + 2.0 / 256)
        #expect(mk_bf16_to_f32(0x3F80) == 1)
        #expect(mk_round_bf16(.nan).isNaN)
    }

    @Test func doubleQuantizedAbsmax() {
        let codes: [UInt8] = [0, 1, 255, 7]
        let map = (0..<256).map { Float($0) / 255 }
        let nested: [Float] = [2, 4]
        var out = [Float](repeating: 0, count: 4)
        mk_q4_expand_nested_absmax(codes, 4, map, nested, 2, 0.5, &out)
        #expect(out == [0.5, map[1] * 2 + 0.5, 4.5, map[7] * 4 + 0.5])
    }

    static let q4Cases: [Q4Case] = [
        Q4Case(rows: 8, cols: 128, blocksize: 64, rounding: MK_ROUND_BF16),
        Q4Case(rows: 5, cols: 256, blocksize: 128, rounding: MK_ROUND_F16),
        Q4Case(rows: 3, cols: 192, blocksize: 64, rounding: MK_ROUND_NONE),
        Q4Case(rows: 7, cols: 4, blocksize: 64, rounding: MK_ROUND_BF16),    // blocks span rows (dt_proj of tiny models)
        Q4Case(rows: 9, cols: 9, blocksize: 16, rounding: MK_ROUND_F16),     // odd row length: rows start mid-byte
    ]

    @Test(arguments: q4Cases)
    func q4PathsAgree(_ c: Q4Case) throws {
        var random = TestRandom(state: UInt64(c.rows * 1000 + c.cols))
        let count = c.rows * c.cols
        let codes = (0..<(count + 1) / 2).map { _ in random.byte() }
        let absmax = (0..<(count + c.blocksize - 1) / c.blocksize).map { _ in abs(random.float()) + 0.1 }
        let x = (0..<c.cols).map { _ in random.float() }

        // The definition, element by element.
        var expected = [Float](repeating: 0, count: count)
        for e in 0..<count {
            let byte = codes[e / 2]
            var v = Self.fp4Table[Int(e % 2 == 0 ? byte >> 4 : byte & 15)] * absmax[e / c.blocksize]
            if c.rounding == MK_ROUND_BF16 { v = mk_round_bf16(v) }
            if c.rounding == MK_ROUND_F16 { v = mk_round_f16(v) }
            expected[e] = v
        }
        var expectedY = [Float](repeating: 0, count: c.rows)
        for r in 0..<c.rows { expectedY[r] = (0..<c.cols).reduce(0) { $0 + expected[r * c.cols + $1] * x[$1] } }

        try codes.withUnsafeBufferPointer { codePointer in
            try absmax.withUnsafeBufferPointer { absmaxPointer in
                var m = mk_q4_matrix()
                m.codes = codePointer.baseAddress
                m.absmax = absmaxPointer.baseAddress
                withUnsafeMutableBytes(of: &m.table) { t in Self.fp4Table.withUnsafeBytes { t.copyMemory(from: $0) } }
                m.rows = Int64(c.rows); m.cols = Int64(c.cols); m.blocksize = Int64(c.blocksize)
                m.rounding = Int32(c.rounding.rawValue)
                for isa in availableISAs {
                    var decoded = [Float](repeating: .nan, count: count)
                    var y = [Float](repeating: .nan, count: c.rows)
                    withISA(isa) {
                        mk_q4_rows_to_f32(&m, 0, Int64(c.rows), &decoded)
                        mk_q4_gemv(&m, x, &y, 0, Int64(c.rows))
                    }
                    #expect(decoded == expected, "isa \(isa): decode must be exact")
                    for r in 0..<c.rows {
                        #expect(abs(y[r] - expectedY[r]) <= 1e-4 * max(1, abs(expectedY[r])), "isa \(isa) row \(r)")
                    }
                    // a row range touches only its rows
                    var partial = [Float](repeating: .nan, count: c.rows)
                    withISA(isa) { mk_q4_gemv(&m, x, &partial, 1, Int64(c.rows - 1)) }
                    #expect(partial[0].isNaN && partial[c.rows - 1].isNaN)
                    #expect(partial[1] == y[1])
                    // decoding from a middle row
                    var middle = [Float](repeating: .nan, count: c.cols)
                    withISA(isa) { mk_q4_rows_to_f32(&m, Int64(c.rows - 1), Int64(c.rows), &middle) }
                    #expect(middle == Array(expected[(c.rows - 1) * c.cols..<count]))
                }
                _ = try #require(availableISAs.first)
            }
        }
    }

    @Test(arguments: [Int32(MK_DTYPE_F32.rawValue), Int32(MK_DTYPE_F16.rawValue), Int32(MK_DTYPE_BF16.rawValue)],
          [7, 64, 100])
    func densePathsAgree(dtype: Int32, cols: Int) {
        var random = TestRandom(state: UInt64(cols))
        let rows = 6
        let values = (0..<rows * cols).map { _ in random.float() }
        let stored: [UInt16] = values.map { dtype == Int32(MK_DTYPE_F16.rawValue) ? mk_f32_to_f16($0) : UInt16(mk_round_bf16($0).bitPattern >> 16) }
        let x = (0..<cols).map { _ in random.float() }
        var exact = [Float](repeating: 0, count: rows * cols)
        if dtype == Int32(MK_DTYPE_F32.rawValue) { exact = values } else { mk_convert_to_f32(stored, dtype, Int64(rows * cols), &exact) }
        let expectedY = (0..<rows).map { r in (0..<cols).reduce(Float(0)) { $0 + exact[r * cols + $1] * x[$1] } }

        for isa in availableISAs {
            var decoded = [Float](repeating: .nan, count: rows * cols)
            var y = [Float](repeating: .nan, count: rows)
            let run = { (data: UnsafeRawPointer) in
                var m = mk_dense_matrix(data: data, dtype: dtype, rows: Int64(rows), cols: Int64(cols))
                self.withISA(isa) {
                    mk_dense_rows_to_f32(&m, 0, Int64(rows), &decoded)
                    mk_dense_gemv(&m, x, &y, 0, Int64(rows))
                }
            }
            if dtype == Int32(MK_DTYPE_F32.rawValue) { values.withUnsafeBytes { run($0.baseAddress!) } } else { stored.withUnsafeBytes { run($0.baseAddress!) } }
            #expect(decoded == exact, "isa \(isa)")
            for r in 0..<rows { #expect(abs(y[r] - expectedY[r]) <= 1e-4 * max(1, abs(expectedY[r])), "isa \(isa) row \(r)") }
        }
    }

    @Test func rmsNorm() {
        let x: [Float] = [3, 4, 0, 0,  1, 1, 1, 1]
        var out = [Float](repeating: 0, count: 8)
        mk_rms_norm(x, 4, [1, 2, 1, 1], 0, 2, 4, &out, 4)
        // row 0: rms = sqrt(25 / 4) = 2.5
        #expect(out[0] == 3 / 2.5 && out[1] == 2 * 4 / 2.5)
        #expect(out[4...] == [1, 2, 1, 1])
    }

    /// Hidden-size rows (and a width that ends off every vector) on every path, against
    /// the sum of squares in double, element by element.
    @Test(arguments: [4096, 4096 + 37, 7])
    func rmsNormOfLongRows(width n: Int) {
        var random = TestRandom(state: UInt64(n))
        let rows = 3
        let x = (0..<rows * n).map { _ in random.float() * 5 }
        let weight = (0..<n).map { _ in 0.5 + random.float() }
        var expected = [Float](repeating: 0, count: rows * n)
        for r in 0..<rows {
            let sum = (0..<n).reduce(0.0) { $0 + Double(x[r * n + $1]) * Double(x[r * n + $1]) }
            let inv = Float(1 / (sum / Double(n) + 1e-5).squareRoot())
            for i in 0..<n { expected[r * n + i] = x[r * n + i] * inv * weight[i] }
        }
        for isa in availableISAs {
            #expect(mk_force_isa(isa) == 0)
            var out = [Float](repeating: 0, count: rows * n)
            mk_rms_norm(x, Int64(n), weight, 1e-5, Int64(rows), Int64(n), &out, Int64(n))
            mk_force_isa(0)
            for i in 0..<rows * n {
                // the sums differ only in the order of double additions: the float result
                // is the same but where that order moves it across a rounding boundary
                #expect(abs(out[i] - expected[i]) <= abs(expected[i]) * 2.4e-7, "isa \(isa) element \(i)")
            }
        }
    }

    @Test func convStateAndWeightsAreTapMajor() {
        // 17 channels (a full vector and one more), kernel 3: state[k * 17 + d] is tap k of channel d
        let D = 17, K = 3
        var state = (0..<K * D).map { Float($0) / 100 }
        let weight = (0..<K * D).map { Float($0 % 5) / 4 - 0.5 }
        let x = (0..<D).map { Float($0) / 10 }
        var out = [Float](repeating: 0, count: D)
        let before = state
        mk_conv1d_silu(&state, weight, nil, x, Int64(D), 1, Int64(D), Int64(K), &out, 0, Int64(D))
        for d in 0..<D {
            let window = [before[1 * D + d], before[2 * D + d], x[d]]
            let acc = (0..<K).reduce(Float(0)) { $0 + window[$1] * weight[$1 * D + d] }
            #expect(abs(out[d] - acc / (1 + Float(exp(Double(-acc))))) < 1e-6, "channel \(d)")
            #expect((0..<K).map { state[$0 * D + d] } == window, "channel \(d)")
        }
    }

    @Test func convKeepsTheLastInputsAsState() {
        // one channel, kernel 4, weights pick the newest input: the output is silu(x_t)
        var state: [Float] = [0, 0, 0, 0]
        let x: [Float] = [1, 2, 3, 4, 5]
        var out = [Float](repeating: 0, count: 5)
        mk_conv1d_silu(&state, [0, 0, 0, 1], nil, x, 1, 5, 1, 4, &out, 0, 1)
        #expect(state == [2, 3, 4, 5])
        for (o, v) in zip(out, x) { #expect(abs(o - v / (1 + Float(exp(Double(-v))))) < 1e-6) }
    }
}

// The dispatcher is process-global: every suite that forces an ISA nests in KernelTests,
// which is serialized, so they never race each other.
extension KernelTests {
/// The vectorized sequence kernels (conv, softplus, scan) against the scalar definitions.
@Suite struct SequenceKernelTests {
    func compare(_ name: String, tolerance: Float = 2e-6, _ run: () -> [Float]) {
        #expect(mk_force_isa(1) == 0)
        let reference = run()
        mk_force_isa(0)
        for isa in availableISAs where isa != 1 {
            mk_force_isa(isa)
            let result = run()
            mk_force_isa(0)
            for (a, b) in zip(result, reference) {
                #expect(abs(a - b) <= tolerance * max(1, abs(b)), "\(name) isa \(isa): \(a) vs \(b)")
            }
        }
    }

    @Test func softplus() {
        let values: [Float] = (-400...400).map { Float($0) / 10 } + [1e-8, -1e-8, 19.99, 20.01, -87, -120]
        compare("softplus", tolerance: 1e-6) {
            var dt = values
            mk_softplus_bias(&dt, [Float](repeating: 0, count: values.count), 1, Int64(values.count))
            return dt
        }
        // small outputs keep their relative precision
        var tiny: [Float] = [-15, -10, -7]
        mk_softplus_bias(&tiny, [0, 0, 0], 1, 3)
        for (v, x) in zip(tiny, [-15.0, -10, -7]) { #expect(abs(Double(v) - log1p(exp(x))) / log1p(exp(x)) < 1e-5) }
    }

    @Test func convAndScan() {
        var random = TestRandom(state: 11)
        // 165 channels: the decode conv's groups of 64, then 16, then a partial vector
        let T = 7, D = 165, K = 4, N = 16
        let x = (0..<T * 2 * D).map { _ in random.float() * 3 }
        let weight = (0..<D * K).map { _ in random.float() }
        let bias = (0..<D).map { _ in random.float() }
        let state0 = (0..<D * K).map { _ in random.float() }
        for steps in [T, 1] {  // a prompt slice, and a decode step
            compare("conv, \(steps) steps") {
                var state = state0
                var out = [Float](repeating: 0, count: steps * D)
                // two channel ranges, as the pool splits them (the second starts off a vector)
                mk_conv1d_silu(&state, weight, bias, x, Int64(2 * D), Int64(steps), Int64(D), Int64(K), &out, 0, 20)
                mk_conv1d_silu(&state, weight, bias, x, Int64(2 * D), Int64(steps), Int64(D), Int64(K), &out, 20, Int64(D))
                return out + state
            }
        }
        let A2 = (0..<D * N).map { _ in -abs(random.float()) * 6 }  // A·log2(e)
        let Dskip = (0..<D).map { _ in random.float() }
        let dt = (0..<T * D).map { _ in abs(random.float()) * 0.5 }
        let bc = (0..<T * 2 * N).map { _ in random.float() }
        let h0 = (0..<D * N).map { _ in random.float() }
        compare("scan", tolerance: 1e-5) {
            var h = h0
            var y = [Float](repeating: 0, count: T * D)
            // two channel ranges, as the pool splits them
            mk_selective_scan(&h, A2, Dskip, dt, x, bc, Array(bc[N...]), Int64(2 * N), Array(x[D...]), Int64(2 * D),
                              Int64(T), Int64(D), Int64(N), &y, 0, 20)
            mk_selective_scan(&h, A2, Dskip, dt, x, bc, Array(bc[N...]), Int64(2 * N), Array(x[D...]), Int64(2 * D),
                              Int64(T), Int64(D), Int64(N), &y, 20, Int64(D))
            return y + h
        }
    }

    /// The scan's layout: tiles of 16 channels for N = 16 and D a multiple of 16, else
    /// transformers' [D][N]; mk_scan_layout converts both ways.
    @Test func scanLayout() {
        #expect(mk_scan_tiled(8192, 16) == 1 && mk_scan_tiled(160, 16) == 1)
        #expect(mk_scan_tiled(165, 16) == 0 && mk_scan_tiled(160, 8) == 0)
        let D = 32, N = 16
        let rows = (0..<D * N).map(Float.init)
        var tiled = [Float](repeating: 0, count: D * N), back = tiled
        mk_scan_layout(rows, &tiled, Int64(D), Int64(N), 1)
        mk_scan_layout(tiled, &back, Int64(D), Int64(N), 0)
        #expect(back == rows)
        // state n of channels 16...31 is one vector of the second tile
        #expect(Array(tiled[256 + 3 * 16..<256 + 4 * 16]) == (16..<32).map { Float($0 * N + 3) })
    }

    /// The scan on the tiled layout against the definition written out here on [D][N]
    /// rows, on every ISA, with ranges that start and end inside tiles (as threads split
    /// the channels): each range changes only its own channels of h and y.
    @Test func tiledScanMatchesTheDefinition() {
        var random = TestRandom(state: 23)
        let T = 5, D = 160, N = 16
        let A2 = (0..<D * N).map { _ in -abs(random.float()) * 6 }
        let Dskip = (0..<D).map { _ in random.float() }
        let dt = (0..<T * D).map { _ in abs(random.float()) * 0.5 }
        let x = (0..<T * D).map { _ in random.float() }, z = (0..<T * D).map { _ in random.float() }
        let bc = (0..<T * 2 * N).map { _ in random.float() }
        let h0 = (0..<D * N).map { _ in random.float() }
        func silu(_ v: Float) -> Float { v / (1 + Float(exp(Double(-v)))) }
        var hRef = h0, yRef = [Float](repeating: 0, count: T * D)
        for t in 0..<T {
            for d in 0..<D {
                var acc: Float = 0
                for n in 0..<N {
                    hRef[d * N + n] = Float(exp2(Double(dt[t * D + d] * A2[d * N + n]))) * hRef[d * N + n]
                        + dt[t * D + d] * x[t * D + d] * bc[t * 2 * N + n]
                    acc += hRef[d * N + n] * bc[t * 2 * N + N + n]
                }
                yRef[t * D + d] = (acc + Dskip[d] * x[t * D + d]) * silu(z[t * D + d])
            }
        }
        func layout(_ from: [Float], toScan: Bool) -> [Float] {
            var to = from
            mk_scan_layout(from, &to, Int64(D), Int64(N), toScan ? 1 : 0)
            return to
        }
        let tiledA2 = layout(A2, toScan: true), tiledH0 = layout(h0, toScan: true)
        for isa in availableISAs {
            mk_force_isa(isa)
            defer { mk_force_isa(0) }
            for steps in [T, 1] {
                var h = tiledH0, y = [Float](repeating: .nan, count: T * D)
                let ranges = [20..<45, 0..<20, 45..<D]
                for (i, range) in ranges.enumerated() {
                    mk_selective_scan(&h, tiledA2, Dskip, dt, x, bc, Array(bc[N...]), Int64(2 * N), z, Int64(D),
                                      Int64(steps), Int64(D), Int64(N), &y, Int64(range.lowerBound), Int64(range.upperBound))
                    if i == 0 {  // the first range alone: nothing outside it changed
                        let rows = layout(h, toScan: false)
                        let outside = (0..<D).filter { !range.contains($0) }
                        #expect(outside.allSatisfy { d in (0..<N).allSatisfy { rows[d * N + $0] == h0[d * N + $0] } }, "isa \(isa)")
                        #expect(outside.allSatisfy { y[$0].isNaN }, "isa \(isa)")
                    }
                }
                // Nor does a range store to the other channels of its tiles (a thread may be
                // updating them): a store of even an unchanged -0.0 would write +0.0 back.
                var zeros = [Float](repeating: -0.0, count: D * N), zeroY = [Float](repeating: -0.0, count: T * D)
                mk_selective_scan(&zeros, tiledA2, Dskip, dt, x, bc, Array(bc[N...]), Int64(2 * N), z, Int64(D),
                                  Int64(steps), Int64(D), Int64(N), &zeroY, 20, 45)
                let zeroRows = layout(zeros, toScan: false)
                let others = (0..<D).filter { !(20..<45).contains($0) }
                #expect(others.allSatisfy { d in (0..<N).allSatisfy { zeroRows[d * N + $0].sign == .minus } }, "isa \(isa)")
                #expect(others.allSatisfy { zeroY[$0].sign == .minus }, "isa \(isa)")

                let rows = layout(h, toScan: false)
                if steps == T {
                    for (a, b) in zip(rows, hRef) { #expect(abs(a - b) <= 1e-5 * max(1, abs(b)), "h isa \(isa)") }
                    for (a, b) in zip(y, yRef) { #expect(abs(a - b) <= 1e-5 * max(1, abs(b)), "y isa \(isa)") }
                }
            }
        }
    }
}
}
