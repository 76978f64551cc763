/// A pre-tokenizer step in a flat, trivially copyable form for the hot loop.
struct CompiledStep {
    enum Kind: UInt8 { case punctuation, byteLevel, digits, gpt2Split, digitRunSplit, literalSplit }
    var kind: Kind
    var behavior: SplitBehavior = .isolated
    var invert = false
    var mapped = false
    var addPrefixSpace = false
    var useRegex = false
    /// `digitRunSplit`: the run length; `literalSplit`: the index in `EncoderTables.literals`.
    var count = 0

    static func compile(_ pipeline: PreTokenizerPipeline) -> (steps: [CompiledStep], literals: [[UInt8]?]) {
        var steps: [CompiledStep] = []
        var literals: [[UInt8]?] = []
        for (step, mapped) in zip(pipeline.steps, pipeline.mapped) {
            var c: CompiledStep
            switch step {
            case .punctuation(let b):
                c = CompiledStep(kind: .punctuation, behavior: b)
            case .byteLevel(let addPrefixSpace, let useRegex):
                c = CompiledStep(kind: .byteLevel, addPrefixSpace: addPrefixSpace, useRegex: useRegex)
            case .digits(let individual):
                c = CompiledStep(kind: .digits, behavior: individual ? .isolated : .contiguous)
            case .split(let pattern, let b, let invert):
                switch pattern {
                case .gpt2: c = CompiledStep(kind: .gpt2Split, behavior: b, invert: invert)
                case .asciiDigits(let n): c = CompiledStep(kind: .digitRunSplit, behavior: b, invert: invert, count: n)
                case .literal(let bytes):
                    c = CompiledStep(kind: .literalSplit, behavior: b, invert: invert, count: literals.count)
                    literals.append(bytes)
                }
            }
            c.mapped = mapped
            steps.append(c)
        }
        return (steps, literals)
    }
}

/// Reusable per-thread state of `encode`: the word cache, merge scratch and prefix-space buffers.
/// Handed out by the tokenizer's pool, so concurrent `encode` calls never share one.
final class EncoderWorkspace: @unchecked Sendable {
    var cache = WordCache()
    var scratch = MergeScratch()
    var prefixBuffers: [UnsafeMutablePointer<UInt8>?]
    var prefixCapacities: [Int]

    init(stepCount: Int) {
        prefixBuffers = Array(repeating: nil, count: stepCount)
        prefixCapacities = Array(repeating: 0, count: stepCount)
    }

    deinit {
        cache.deallocate()
        scratch.deallocate()
        for b in prefixBuffers { b?.deallocate() }
    }
}

/// Runs the pre-tokenizer steps depth first on each piece (a piece goes through every step and the
/// model before the next piece is looked at), so memory stays bounded whatever the input length.
struct PieceEncoder {
    var out: [Int] = []
    var cache: WordCache
    var scratch: MergeScratch
    var prefixBuffers: [UnsafeMutablePointer<UInt8>?]
    var prefixCapacities: [Int]
    let steps: UnsafeBufferPointer<CompiledStep>
    let literals: [[UInt8]?]
    let model: BPEModel
    let classTable: UnsafeMutablePointer<UInt8>
    let mappedClasses: UnsafePointer<UInt8>

    private static let punctuationBit = CharacterClass.punctuation.rawValue
    private static let numberBit = CharacterClass.number.rawValue

    /// Splits `base[start..<end]` with step `step` and all the following ones, then encodes the pieces.
    mutating func run(_ step: Int, _ base: UnsafePointer<UInt8>, _ start: Int, _ end: Int) {
        if step == steps.count {
            encodeWord(base, start, end)
            return
        }
        let s = steps[step]
        switch s.kind {
        case .punctuation:
            if s.mapped {
                splitByClass(step, MappedBytes(buf: base, classes: mappedClasses), Self.punctuationBit, s.behavior, start, end)
            } else {
                splitByClass(step, RawScalars(buf: base, table: classTable), Self.punctuationBit, s.behavior, start, end)
            }
        case .digits:
            if s.mapped {
                splitByClass(step, MappedBytes(buf: base, classes: mappedClasses), Self.numberBit, s.behavior, start, end)
            } else {
                splitByClass(step, RawScalars(buf: base, table: classTable), Self.numberBit, s.behavior, start, end)
            }
        case .byteLevel:
            var b = base, lo = start, hi = end
            if s.addPrefixSpace && base[start] != 0x20 {
                b = UnsafePointer(prefixed(step, base, start, end))
                lo = 0
                hi = end - start + 1
            }
            if s.useRegex {
                var p = lo
                let src = RawScalars(buf: b, table: classTable)
                while p < hi {
                    let q = GPT2Pattern.matchEnd(src, p, hi)
                    run(step + 1, b, p, q)
                    p = q
                }
            } else {
                run(step + 1, b, lo, hi)
            }
        case .gpt2Split:
            var combiner = SplitCombiner(s.behavior)
            var p = start
            while p < end {
                let q = s.mapped
                    ? GPT2Pattern.matchEnd(MappedBytes(buf: base, classes: mappedClasses), p, end)
                    : GPT2Pattern.matchEnd(RawScalars(buf: base, table: classTable), p, end)
                emit(step, base, combiner.push(p, q, isMatch: !s.invert))
                p = q
            }
            emit(step, base, combiner.finish())
        case .digitRunSplit:
            var combiner = SplitCombiner(s.behavior)
            let n = s.count
            var gap = start
            var p = start
            while p + n <= end {
                var k = 0
                while k < n && base[p + k] &- 0x30 < 10 { k += 1 }
                if k == n {
                    if gap < p { emit(step, base, combiner.push(gap, p, isMatch: s.invert)) }
                    emit(step, base, combiner.push(p, p + n, isMatch: !s.invert))
                    p += n
                    gap = p
                } else {
                    p += k + 1
                }
            }
            if gap < end { emit(step, base, combiner.push(gap, end, isMatch: s.invert)) }
            emit(step, base, combiner.finish())
        case .literalSplit:
            var combiner = SplitCombiner(s.behavior)
            var gap = start
            if let lit = literals[s.count], !lit.isEmpty {
                let n = lit.count
                var p = start
                lit.withUnsafeBufferPointer { l in
                    while p + n <= end {
                        if memoryEqual(l.baseAddress!, base + p, n) {
                            if gap < p { emit(step, base, combiner.push(gap, p, isMatch: s.invert)) }
                            emit(step, base, combiner.push(p, p + n, isMatch: !s.invert))
                            p += n
                            gap = p
                        } else {
                            p += 1
                        }
                    }
                }
            }
            if gap < end { emit(step, base, combiner.push(gap, end, isMatch: s.invert)) }
            emit(step, base, combiner.finish())
        }
    }

    @inline(__always)
    private mutating func emit(_ step: Int, _ base: UnsafePointer<UInt8>, _ piece: (Int, Int)?) {
        if let (a, b) = piece, a < b { run(step + 1, base, a, b) }
    }

    /// Splits on scalars whose class has `bit`: each such scalar is a match of its own, the runs
    /// between them are non-matches (the crate's `Pattern` impl for `Fn(char) -> bool`).
    @inline(__always)
    private mutating func splitByClass<S: ScalarSource>(_ step: Int, _ src: S, _ bit: UInt8, _ behavior: SplitBehavior,
                                                        _ start: Int, _ end: Int) {
        var combiner = SplitCombiner(behavior)
        var p = start
        var gap = start
        while p < end {
            let (c, l) = src.classAt(p)
            if c & bit != 0 {
                if gap < p { emit(step, src.buf, combiner.push(gap, p, isMatch: false)) }
                emit(step, src.buf, combiner.push(p, p + l, isMatch: true))
                gap = p + l
            }
            p += l
        }
        if gap < end { emit(step, src.buf, combiner.push(gap, end, isMatch: false)) }
        emit(step, src.buf, combiner.finish())
    }

    /// `" " + piece` in this step's own buffer (deeper steps may be using theirs).
    private mutating func prefixed(_ step: Int, _ base: UnsafePointer<UInt8>, _ start: Int, _ end: Int)
        -> UnsafeMutablePointer<UInt8> {
        let n = end - start + 1
        if prefixCapacities[step] < n {
            prefixBuffers[step]?.deallocate()
            let capacity = max(n, 256)
            prefixBuffers[step] = .allocate(capacity: capacity)
            prefixCapacities[step] = capacity
        }
        let buffer = prefixBuffers[step]!
        buffer[0] = 0x20
        (buffer + 1).update(from: base + start, count: n - 1)
        return buffer
    }

    /// The model step: cached ids for frequent pre-tokens, else the BPE merge loop.
    @inline(__always)
    mutating func encodeWord(_ base: UnsafePointer<UInt8>, _ start: Int, _ end: Int) {
        let length = end - start
        let p = base + start
        if model.mapped && length == 1 {
            let id = model.byteIds[Int(p[0])]
            if id >= 0 {
                out.append(Int(id))
                return
            }
        }
        guard length <= WordCache.maxKeyLength else {
            encodeUncached(p, length)
            return
        }
        let h = WordCache.hash(p, length)
        if cache.lookup(p, length, hash: h, into: &out) { return }
        let before = out.count
        encodeUncached(p, length)
        cache.insert(p, length, hash: h, ids: out[before...])
    }

    private mutating func encodeUncached(_ p: UnsafePointer<UInt8>, _ length: Int) {
        if let whole = model.wholeWords, let id = whole[Array(UnsafeBufferPointer(start: p, count: length))] {
            out.append(Int(id))
            return
        }
        model.initialSymbols(p, length, into: &scratch)
        scratch.mergeAll(model.merges, into: &out)
    }
}
