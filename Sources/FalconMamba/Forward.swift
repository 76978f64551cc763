import CKernels

/// Activation buffers for a chunk of `tokens` tokens, carved from one allocation.
private struct Workspace {
    var storage: [Float]
    let offsets: [Int]

    init(model m: FalconMambaModel, tokens t: Int) {
        let h = m.hiddenSize, d = m.innerSize, xw = m.timeStepRank + 2 * m.stateSize
        let tile = m.layers.map { max($0.inProj.tileRows * $0.inProj.cols, $0.xProj.tileRows * $0.xProj.cols,
                                      $0.dtProj.tileRows * $0.dtProj.cols, $0.outProj.tileRows * $0.outProj.cols) }.max() ?? 0
        let sizes = [t * h,       // residual
                     t * h,       // normed input / block output
                     t * 2 * d,   // in_proj output: x | z
                     t * d,       // conv output
                     t * xw,      // x_proj output: dt | B | C
                     t * d,       // dt
                     t * d,       // scan output
                     t > 1 ? max(tile, m.lmHead.tileRows * m.lmHead.cols) : 0]
        var offsets: [Int] = [], total = 0
        for size in sizes { offsets.append(total); total += size }
        storage = [Float](repeating: 0, count: total)
        self.offsets = offsets
    }
}

extension FalconMambaModel {
    /// Runs `tokens` through every layer, updating `state`; appends the hidden states,
    /// and the logits of the chunk positions in `logitRows`, to `output`.
    func forward(_ tokens: ArraySlice<Int>, state: inout SequenceState, logitRows: Range<Int>?,
                 into output: inout ForwardOutput) {
        let t = tokens.count
        let h = hiddenSize, d = innerSize, n = stateSize, r = timeStepRank, k = convKernel
        let xw = r + 2 * n
        var workspace = Workspace(model: self, tokens: t)
        let offsets = workspace.offsets
        workspace.storage.withUnsafeMutableBufferPointer { buffer in
            let base = buffer.baseAddress!
            let residual = base + offsets[0], normed = base + offsets[1], xz = base + offsets[2]
            let xc = base + offsets[3], dbc = base + offsets[4], dt = base + offsets[5]
            let y = base + offsets[6], scratch = base + offsets[7]

            let kernelType = Int32(embeddings.dtype.kernelDType!.rawValue)
            let rowBytes = h * embeddings.dtype.byteSize
            for (i, token) in tokens.enumerated() {
                mk_convert_to_f32(embeddings.bytes.baseAddress! + token * rowBytes, kernelType, Int64(h), residual + i * h)
            }

            state.conv.withUnsafeMutableBufferPointer { convAll in
                state.ssm.withUnsafeMutableBufferPointer { ssmAll in
                    for (index, layer) in layers.enumerated() {
                        let conv = convAll.baseAddress! + index * d * k
                        let ssm = ssmAll.baseAddress! + index * d * n
                        mk_rms_norm(residual, Int64(h), layer.norm, config.layerNormEpsilon, Int64(t), Int64(h), normed, Int64(h))
                        layer.inProj.apply(normed, ldx: h, count: t, into: xz, ldy: 2 * d, scratch: scratch)
                        mk_conv1d_silu(conv, layer.convWeight, layer.convBias, xz, Int64(2 * d), Int64(t), Int64(d), Int64(k), xc)
                        layer.xProj.apply(xc, ldx: d, count: t, into: dbc, ldy: xw, scratch: scratch)
                        // FalconMamba: weightless RMS norm on dt, B and C separately
                        for (offset, width) in [(0, r), (r, n), (r + n, n)] {
                            mk_rms_norm(dbc + offset, Int64(xw), nil, config.mixerRMSEpsilon, Int64(t), Int64(width), dbc + offset, Int64(xw))
                        }
                        layer.dtProj.apply(dbc, ldx: xw, count: t, into: dt, ldy: d, scratch: scratch)
                        mk_softplus_bias(dt, layer.dtBias, Int64(t), Int64(d))
                        mk_selective_scan(ssm, layer.A, layer.D, dt, xc, dbc + r, dbc + r + n, Int64(xw),
                                          xz + d, Int64(2 * d), Int64(t), Int64(d), Int64(n), y)
                        layer.outProj.apply(y, ldx: d, count: t, into: normed, ldy: h, scratch: scratch)
                        for i in 0..<(t * h) { residual[i] += normed[i] }
                    }
                }
            }

            mk_rms_norm(residual, Int64(h), normF, config.layerNormEpsilon, Int64(t), Int64(h), normed, Int64(h))
            output.hidden.append(contentsOf: UnsafeBufferPointer(start: normed, count: t * h))
            if let rows = logitRows, !rows.isEmpty {
                let first = output.logits.count
                output.logits.append(contentsOf: repeatElement(0, count: rows.count * vocabSize))
                output.logits.withUnsafeMutableBufferPointer { logits in
                    lmHead.apply(normed + rows.lowerBound * h, ldx: h, count: rows.count,
                                 into: logits.baseAddress! + first, ldy: vocabSize, scratch: scratch)
                }
                output.logitRows += rows.count
            }
        }
        state.tokenCount += t
    }
}
