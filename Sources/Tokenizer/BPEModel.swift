/// The `model` section of a `tokenizer.json` of type BPE, compiled into lookup tables.
final class BPEModel: @unchecked Sendable {
    /// Token string → id, from `model.vocab` only (added tokens are separate).
    let vocab: [String: Int]
    let merges: MergeTable
    /// When the model sees byte-level pieces: the id of the alphabet scalar of each byte, or -1
    /// (Falcon lacks 28 of them; such bytes are dropped, as `unk_token` is null).
    let byteIds: UnsafeMutablePointer<Int32>
    /// When the model sees raw scalars: the id of each single-scalar token.
    let scalarIds: [UInt32: Int32]
    let unkId: Int32
    let fuseUnk: Bool
    /// `<0xAB>` token ids by byte when `byte_fallback` is on, else all -1.
    let byteFallbackIds: UnsafeMutablePointer<Int32>
    let byteFallback: Bool
    /// With `ignore_merges`, a pre-token that is itself in the vocab is taken whole. Keyed by the
    /// bytes of the pre-token as it appears in the text.
    let wholeWords: [[UInt8]: Int32]?
    let mapped: Bool

    init(_ spec: ModelSpec, mapped: Bool) throws(TokenizerError) {
        guard spec.type == "BPE" else { throw .unsupported(field: "model.type", kind: spec.type) }
        if let d = spec.dropout, d != 0 {
            throw .unsupportedOption(field: "model.dropout", value: "\(d)")
        }
        if let p = spec.continuingSubwordPrefix, !p.isEmpty {
            throw .unsupportedOption(field: "model.continuing_subword_prefix", value: p)
        }
        if let s = spec.endOfWordSuffix, !s.isEmpty {
            throw .unsupportedOption(field: "model.end_of_word_suffix", value: s)
        }
        self.mapped = mapped
        vocab = spec.vocab
        for (token, id) in vocab where id < 0 || id > Int(Int32.max) {
            throw .invalidVocabulary("token \(token) has id \(id)")
        }

        merges = MergeTable(capacityFor: spec.merges.count)
        for (rank, merge) in spec.merges.enumerated() {
            let left: String, right: String
            switch merge {
            case .joined(let line):
                let parts = line.split(separator: " ", omittingEmptySubsequences: false)
                guard parts.count == 2 else { throw .invalidVocabulary("merge \(rank) is \"\(line)\"") }
                left = String(parts[0]); right = String(parts[1])
            case .pair(let pair):
                guard pair.count == 2 else { throw .invalidVocabulary("merge \(rank) has \(pair.count) parts") }
                left = pair[0]; right = pair[1]
            }
            guard let a = vocab[left], let b = vocab[right] else {
                throw .invalidVocabulary("merge \(rank) uses a token that is not in the vocab: \(left) \(right)")
            }
            guard let m = vocab[left + right] else {
                throw .invalidVocabulary("merge \(rank) makes \(left + right), which is not in the vocab")
            }
            merges.set(Int32(a), Int32(b), rank: Int32(rank), merged: Int32(m))
        }

        byteIds = .allocate(capacity: 256)
        byteFallbackIds = .allocate(capacity: 256)
        for b in 0..<256 {
            let token = ByteLevel.token(forBytes: [UInt8(b)])
            byteIds[b] = vocab[token].map { Int32($0) } ?? -1
            let hex = String(b, radix: 16, uppercase: true)
            let name = "<0x" + (hex.count == 1 ? "0" : "") + hex + ">"
            byteFallbackIds[b] = spec.byteFallback ? (vocab[name].map { Int32($0) } ?? -1) : -1
        }
        var scalars: [UInt32: Int32] = [:]
        if !mapped {
            for (token, id) in vocab {
                let us = token.unicodeScalars
                if us.count == 1 { scalars[us.first!.value] = Int32(id) }
            }
        }
        scalarIds = scalars
        if let unk = spec.unkToken {
            guard let id = vocab[unk] else { throw .invalidVocabulary("unk_token \(unk) is not in the vocab") }
            unkId = Int32(id)
        } else {
            unkId = -1
        }
        fuseUnk = spec.fuseUnk
        byteFallback = spec.byteFallback
        if spec.ignoreMerges {
            var whole: [[UInt8]: Int32] = [:]
            for (token, id) in vocab {
                if mapped {
                    if let bytes = ByteLevel.bytes(ofToken: token) { whole[bytes] = Int32(id) }
                } else {
                    whole[Array(token.utf8)] = Int32(id)
                }
            }
            wholeWords = whole
        } else {
            wholeWords = nil
        }
    }

    deinit {
        byteIds.deallocate()
        byteFallbackIds.deallocate()
    }

    /// Fills `scratch` with the initial symbols of a pre-token (one per byte or scalar), handling
    /// missing symbols like `BPE::merge_word`: byte fallback, then `unk_token` (fused if asked),
    /// else dropped.
    func initialSymbols(_ p: UnsafePointer<UInt8>, _ length: Int, into scratch: inout MergeScratch) {
        scratch.count = 0
        var pendingUnk = false
        var i = 0
        while i < length {
            var id: Int32 = -1
            var unitLength = 1
            if mapped {
                id = byteIds[Int(p[i])]
            } else {
                let (v, l) = decodeScalar(p, i)
                unitLength = l
                id = scalarIds[v] ?? -1
            }
            if id >= 0 {
                if pendingUnk { scratch.append(unkId); pendingUnk = false }
                scratch.append(id)
            } else {
                missing(p + i, unitLength, &pendingUnk, &scratch)
            }
            i += unitLength
        }
        if pendingUnk { scratch.append(unkId) }
    }

    private func missing(_ unit: UnsafePointer<UInt8>, _ length: Int, _ pendingUnk: inout Bool,
                         _ scratch: inout MergeScratch) {
        if byteFallback {
            // The fallback tokens are spelled from the UTF-8 of the symbol as the model sees it.
            let bytes: [UInt8] = mapped
                ? Array(String(Unicode.Scalar(ByteLevel.scalars[Int(unit[0])])!).utf8)
                : Array(UnsafeBufferPointer(start: unit, count: length))
            if bytes.allSatisfy({ byteFallbackIds[Int($0)] >= 0 }) {
                for b in bytes { scratch.append(byteFallbackIds[Int(b)]) }
                return  // like the crate, a pending unk is not flushed here
            }
        }
        guard unkId >= 0 else { return }
        if pendingUnk && !fuseUnk { scratch.append(unkId) }
        pendingUnk = true
    }
}
