import CKernels

/// Work on output rows of a product that may run as soon as those rows are done, on the
/// thread that computed them, while other threads still stream weights: a C function
/// and a pointer to its arguments, not a closure, so that a decode step's parallel
/// sections allocate nothing (a closure handed to the worker threads needs a heap thunk).
struct RowEpilogue {
    let run: (@convention(c) (UnsafeRawPointer?, Int, Int) -> Void)?
    let context: UnsafeRawPointer?

    static var none: RowEpilogue { RowEpilogue(run: nil, context: nil) }

    func callAsFunction(_ rows: Range<Int>) { run?(context, rows.lowerBound, rows.upperBound) }
}

/// One layer's per-channel tensors, as pointers for the epilogues.
struct LayerPointers {
    let convWeight: UnsafePointer<Float>
    let convBias: UnsafePointer<Float>?
    let dtBias: UnsafePointer<Float>
    let A2: UnsafePointer<Float>
    let D: UnsafePointer<Float>
}

extension MambaLayer {
    func withPointers<R>(_ body: (LayerPointers) -> R) -> R {
        convWeight.withUnsafeBufferPointer { convWeight in
            dtBias.withUnsafeBufferPointer { dtBias in
                A2.withUnsafeBufferPointer { A2 in
                    D.withUnsafeBufferPointer { D in
                        func call(_ bias: UnsafePointer<Float>?) -> R {
                            body(LayerPointers(convWeight: convWeight.baseAddress!, convBias: bias, dtBias: dtBias.baseAddress!,
                                               A2: A2.baseAddress!, D: D.baseAddress!))
                        }
                        guard let convBias else { return call(nil) }
                        return convBias.withUnsafeBufferPointer { call($0.baseAddress!) }
                    }
                }
            }
        }
    }
}

/// The int8 activations of the next product, quantized by an epilogue on the channels it
/// just wrote (whole blocks of 64: the product hands it ranges cut at multiples of 64
/// rows), while they are in this core's cache. The next product then reads 1 byte a
/// value instead of 4 and does not quantize: quantizing at its start read channels the
/// other core had written long before, ~2% of a 4-sequence step.
func quantizeForNextProduct(_ next: UnsafeMutablePointer<mk_q8_rows>?, _ values: UnsafePointer<Float>, ld: Int,
                            channels: Range<Int>) {
    guard let next else { return }
    assert(channels.lowerBound % 64 == 0 && (channels.upperBound % 64 == 0 || channels.upperBound == Int(next.pointee.cols)),
           "an epilogue's range that splits a block of activations")
    mk_q8_quantize_blocks(values, Int64(ld), next, Int64(channels.lowerBound / 64), Int64((channels.upperBound + 63) / 64))
}

/// After in_proj: the causal conv and SiLU of every sequence, on the x channels
/// (rows below d) of the rows done; and, with `next`, their int8 form for x_proj.
struct ConvEpilogue {
    let segments: UnsafeBufferPointer<Segment>
    let stateOffset: Int  // this layer's conv state in each segment's
    let layer: LayerPointers
    let xz: UnsafeMutablePointer<Float>
    let xc: UnsafeMutablePointer<Float>
    let d: Int, k: Int
    let next: UnsafeMutablePointer<mk_q8_rows>?

    static let run: @convention(c) (UnsafeRawPointer?, Int, Int) -> Void = { context, lower, upper in
        let a = context!.load(as: ConvEpilogue.self)
        let channels = (lower..<upper).clamped(to: 0..<a.d)
        guard !channels.isEmpty else { return }
        for segment in a.segments {
            let row = segment.rows.lowerBound
            mk_conv1d_silu(segment.conv + a.stateOffset, a.layer.convWeight, a.layer.convBias, a.xz + row * 2 * a.d,
                           Int64(2 * a.d), Int64(segment.rows.count), Int64(a.d), Int64(a.k), a.xc + row * a.d,
                           Int64(channels.lowerBound), Int64(channels.upperBound))
        }
        quantizeForNextProduct(a.next, a.xc, ld: a.d, channels: channels)
    }
}

/// After dt_proj: softplus(dt + bias), then the selective scan of every sequence on the
/// channels done; and, with `next`, the int8 form of their output for out_proj.
struct ScanEpilogue {
    let segments: UnsafeBufferPointer<Segment>
    let stateOffset: Int  // this layer's SSM state in each segment's
    let layer: LayerPointers
    let dt: UnsafeMutablePointer<Float>, xc: UnsafeMutablePointer<Float>, dbc: UnsafeMutablePointer<Float>
    let xz: UnsafeMutablePointer<Float>, y: UnsafeMutablePointer<Float>
    let tokens: Int, d: Int, n: Int, r: Int
    let next: UnsafeMutablePointer<mk_q8_rows>?

    static let run: @convention(c) (UnsafeRawPointer?, Int, Int) -> Void = { context, c0, c1 in
        let a = context!.load(as: ScanEpilogue.self)
        let d = a.d, n = a.n, xw = a.r + 2 * n
        for row in 0..<a.tokens { mk_softplus_bias(a.dt + row * d + c0, a.layer.dtBias + c0, 1, Int64(c1 - c0)) }
        for segment in a.segments {
            let row = segment.rows.lowerBound
            mk_selective_scan(segment.ssm + a.stateOffset, a.layer.A2, a.layer.D, a.dt + row * d, a.xc + row * d,
                              a.dbc + row * xw + a.r, a.dbc + row * xw + a.r + n, Int64(xw),
                              a.xz + row * 2 * d + d, Int64(2 * d), Int64(segment.rows.count), Int64(d), Int64(n),
                              a.y + row * d, Int64(c0), Int64(c1))
        }
        quantizeForNextProduct(a.next, a.y, ld: d, channels: c0..<c1)
    }
}
