/// Per-scalar class bits used by the hand-written pre-tokenizer matchers.
///
/// - `letter`: general category L* (Oniguruma's `\p{L}`), as of Unicode 16.0.
/// - `number`: general category N* (Oniguruma's `\p{N}`, Rust's `char::is_numeric`), as of Unicode 16.0.
/// - `whitespace`: the Unicode `White_Space` property (Oniguruma's and Rust regex's `\s`,
///   Rust's `char::is_whitespace`).
/// - `punctuation`: general category P* or ASCII punctuation, as the tokenizers crate's
///   `Punctuation` pre-tokenizer decides (`char::is_ascii_punctuation || is_punctuation`), with
///   the crate's Unicode 8.0 tables.
/// - `space`: the scalar U+0020 itself (the optional `" ?"` of the GPT-2 pattern).
struct CharacterClass: OptionSet, Sendable {
    let rawValue: UInt8
    static let letter = CharacterClass(rawValue: 1)
    static let number = CharacterClass(rawValue: 2)
    static let whitespace = CharacterClass(rawValue: 4)
    static let punctuation = CharacterClass(rawValue: 8)
    static let space = CharacterClass(rawValue: 16)

    /// The Unicode versions of the tables the tokenizers crate really uses, found by comparing every
    /// scalar against Python `tokenizers` 0.23.3: Oniguruma's `\p{L}`/`\p{N}` know Unicode 16.0
    /// (Swift's stdlib knows a later version), and the `unicode_categories` crate behind
    /// `Punctuation` knows Unicode 8.0 only, where U+166D and U+111C9 were still punctuation.
    static let regexUnicodeVersion = (major: 16, minor: 0)
    static let punctuationUnicodeVersion = (major: 8, minor: 0)
    static let formerPunctuation: Set<UInt32> = [0x166D, 0x111C9]

    static func of(_ scalar: Unicode.Scalar) -> CharacterClass {
        let props = scalar.properties
        var bits: CharacterClass = []
        guard let age = props.age else {
            return []  // unassigned: "other" for every pattern
        }
        let inRegexTables = (age.major, age.minor) <= regexUnicodeVersion
        let inPunctuationTables = (age.major, age.minor) <= punctuationUnicodeVersion
        switch props.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter:
            if inRegexTables { bits.insert(.letter) }
        case .decimalNumber, .letterNumber, .otherNumber:
            if inRegexTables { bits.insert(.number) }
        case .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation,
             .initialPunctuation, .finalPunctuation, .otherPunctuation:
            if inPunctuationTables { bits.insert(.punctuation) }
        default:
            break
        }
        if formerPunctuation.contains(scalar.value) { bits.insert(.punctuation) }
        if props.isWhitespace { bits.insert(.whitespace) }
        if scalar.isASCII {
            let v = scalar.value
            // char::is_ascii_punctuation: ! " # $ % & ' ( ) * + , - . / : ; < = > ? @ [ \ ] ^ _ ` { | } ~
            if (0x21...0x2F).contains(v) || (0x3A...0x40).contains(v) || (0x5B...0x60).contains(v)
                || (0x7B...0x7E).contains(v) {
                bits.insert(.punctuation)
            }
            if v == 0x20 { bits.insert(.space) }
        }
        return bits
    }
}

/// Class bits for every scalar of the Basic Multilingual Plane, computed once; astral scalars are
/// classified on the fly (they are rare and `Unicode.Scalar.Properties` is fast enough for them).
final class CharacterClassTable: @unchecked Sendable {
    static let shared = CharacterClassTable()

    /// 65,536 entries, immutable after `init`.
    let bmp: UnsafeMutablePointer<UInt8>

    private init() {
        bmp = .allocate(capacity: 0x10000)
        for v in 0..<0x10000 {
            if let s = Unicode.Scalar(UInt32(v)) {
                bmp[v] = CharacterClass.of(s).rawValue
            } else {
                bmp[v] = 0  // surrogates never occur in a Swift String
            }
        }
    }

    @inline(__always)
    func classOf(_ value: UInt32) -> UInt8 {
        if value < 0x10000 { return bmp[Int(value)] }
        guard let s = Unicode.Scalar(value) else { return 0 }
        return CharacterClass.of(s).rawValue
    }
}

/// Decodes the scalar that starts at `p` in valid UTF-8 (Swift strings are always valid).
/// Returns the scalar value and its length in bytes.
@inline(__always)
func decodeScalar(_ buf: UnsafePointer<UInt8>, _ p: Int) -> (value: UInt32, length: Int) {
    let b0 = UInt32(buf[p])
    if b0 < 0x80 { return (b0, 1) }
    if b0 < 0xE0 {
        return (((b0 & 0x1F) << 6) | (UInt32(buf[p + 1]) & 0x3F), 2)
    }
    if b0 < 0xF0 {
        return (((b0 & 0x0F) << 12) | ((UInt32(buf[p + 1]) & 0x3F) << 6) | (UInt32(buf[p + 2]) & 0x3F), 3)
    }
    return (((b0 & 0x07) << 18) | ((UInt32(buf[p + 1]) & 0x3F) << 12) | ((UInt32(buf[p + 2]) & 0x3F) << 6)
            | (UInt32(buf[p + 3]) & 0x3F), 4)
}
