/// The pre-tokenizer pipeline: the `pre_tokenizer` of a `tokenizer.json` flattened into steps.
///
/// Each step splits every piece it receives into smaller pieces, independently of the other pieces,
/// exactly like `PreTokenizedString::split` in the tokenizers crate (empty pieces are dropped).
/// Pieces are byte ranges of the UTF-8 text. Steps before `ByteLevel` see Unicode scalars; from
/// `ByteLevel` on every byte is one "character" (the alphabet scalar it is mapped to), so the steps
/// after it classify bytes through `ByteLevel.mappedClasses`.
enum PreTokenizerStep: Sendable, Equatable {
    /// `Punctuation`: split on punctuation scalars.
    case punctuation(SplitBehavior)
    /// `ByteLevel`: optionally prepend a space, optionally split with the GPT-2 pattern, then map bytes.
    case byteLevel(addPrefixSpace: Bool, useRegex: Bool)
    /// `Digits`: split on numeric scalars (`individual_digits` → Isolated, else Contiguous).
    case digits(individual: Bool)
    /// `Split` with a pattern we can match by hand.
    case split(SplitPattern, SplitBehavior, invert: Bool)
}

/// `SplitDelimiterBehavior` of the tokenizers crate.
enum SplitBehavior: String, Sendable, Equatable {
    case removed = "Removed"
    case isolated = "Isolated"
    case mergedWithPrevious = "MergedWithPrevious"
    case mergedWithNext = "MergedWithNext"
    case contiguous = "Contiguous"
}

/// The regexes we match by hand. Anything else is rejected at load time.
enum SplitPattern: Sendable, Equatable {
    /// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
    case gpt2
    /// `[0-9]` repeated `n` times (Falcon: `[0-9][0-9][0-9]`), or `[0-9]{n}`.
    case asciiDigits(Int)
    /// A `String` pattern, as the bytes it matches in the step's mode (nil: can never match,
    /// because some scalar has no byte in the byte-level alphabet).
    case literal([UInt8]?)

    static let gpt2Regex = #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#

    /// Recognises one of the regexes we implement.
    init?(regex: String) {
        if regex == Self.gpt2Regex {
            self = .gpt2
            return
        }
        let unit = "[0-9]"
        if regex.hasPrefix(unit) {
            var rest = Substring(regex)
            var n = 0
            while rest.hasPrefix(unit) {
                rest = rest.dropFirst(unit.count)
                n += 1
            }
            if rest.isEmpty {
                self = .asciiDigits(n)
                return
            }
            if n == 1, rest.hasPrefix("{"), rest.hasSuffix("}"), let count = Int(rest.dropFirst().dropLast()),
               count > 0 {
                self = .asciiDigits(count)
                return
            }
        }
        return nil
    }
}

/// The flattened pipeline and the mode (scalars or mapped bytes) each step runs in.
struct PreTokenizerPipeline: Sendable {
    var steps: [PreTokenizerStep] = []
    /// `mapped[i]`: step `i` sees byte-level mapped bytes (a `ByteLevel` step came before it).
    var mapped: [Bool] = []
    /// The model sees byte-level mapped pieces.
    var modelSeesMappedBytes = false

    init(_ spec: PreTokenizerSpec?) throws(TokenizerError) {
        if let spec { try append(spec, field: "pre_tokenizer") }
    }

    private mutating func append(_ spec: PreTokenizerSpec, field: String) throws(TokenizerError) {
        let mode = modelSeesMappedBytes
        switch spec.type {
        case "Sequence":
            for (i, inner) in (spec.pretokenizers ?? []).enumerated() {
                try append(inner, field: "\(field).pretokenizers[\(i)]")
            }
            return
        case "Punctuation":
            steps.append(.punctuation(try Self.behavior(spec.behavior ?? "Isolated", field: field)))
        case "ByteLevel":
            steps.append(.byteLevel(addPrefixSpace: spec.addPrefixSpace ?? true, useRegex: spec.useRegex ?? true))
            modelSeesMappedBytes = true
        case "Digits":
            steps.append(.digits(individual: spec.individualDigits ?? false))
        case "Split":
            let pattern: SplitPattern
            switch spec.pattern {
            case .regex(let r):
                guard let p = SplitPattern(regex: r) else {
                    throw .unsupported(field: "\(field).pattern.Regex", kind: r)
                }
                pattern = p
            case .string(let s):
                pattern = .literal(mode ? ByteLevel.bytes(ofToken: s) : Array(s.utf8))
            case nil:
                throw .malformedJSON("\(field).pattern is missing")
            }
            steps.append(.split(pattern, try Self.behavior(spec.behavior ?? "", field: field),
                                invert: spec.invert ?? false))
        default:
            throw .unsupported(field: "\(field).type", kind: spec.type)
        }
        mapped.append(mode)
    }

    private static func behavior(_ name: String, field: String) throws(TokenizerError) -> SplitBehavior {
        guard let b = SplitBehavior(rawValue: name) else {
            throw .unsupported(field: "\(field).behavior", kind: name)
        }
        return b
    }
}

/// Turns the (piece, is-match) segments a pattern finds into the pieces a `SplitBehavior` keeps,
/// one segment at a time (each `push` completes at most one piece), as `NormalizedString::split` does.
struct SplitCombiner {
    let behavior: SplitBehavior
    private var pendingStart = -1
    private var pendingEnd = -1
    private var previousIsMatch = false

    init(_ behavior: SplitBehavior) { self.behavior = behavior }

    /// Feeds the next segment; returns a completed piece, if any.
    @inline(__always)
    mutating func push(_ start: Int, _ end: Int, isMatch: Bool) -> (Int, Int)? {
        switch behavior {
        case .isolated:
            return (start, end)
        case .removed:
            return isMatch ? nil : (start, end)
        case .contiguous:
            defer { previousIsMatch = isMatch }
            if pendingStart < 0 {
                pendingStart = start; pendingEnd = end
                return nil
            }
            if isMatch == previousIsMatch {
                pendingEnd = end
                return nil
            }
            let done = (pendingStart, pendingEnd)
            pendingStart = start; pendingEnd = end
            return done
        case .mergedWithPrevious:
            defer { previousIsMatch = isMatch }
            if pendingStart < 0 {
                pendingStart = start; pendingEnd = end
                return nil
            }
            if isMatch && !previousIsMatch {
                pendingEnd = end
                return nil
            }
            let done = (pendingStart, pendingEnd)
            pendingStart = start; pendingEnd = end
            return done
        case .mergedWithNext:
            // A match directly followed by a non-match is glued to the front of it.
            if isMatch {
                let done: (Int, Int)? = pendingStart >= 0 ? (pendingStart, pendingEnd) : nil
                pendingStart = start; pendingEnd = end
                return done
            }
            if pendingStart >= 0 {
                let done = (pendingStart, end)
                pendingStart = -1
                return done
            }
            return (start, end)
        }
    }

    /// The last piece still held back, if any.
    mutating func finish() -> (Int, Int)? {
        guard pendingStart >= 0 else { return nil }
        defer { pendingStart = -1 }
        return (pendingStart, pendingEnd)
    }
}
