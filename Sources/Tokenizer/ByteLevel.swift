/// The GPT-2 byte-level alphabet: every byte value is shown as one printable Unicode scalar, so that
/// a vocabulary of strings can hold arbitrary bytes. Printable Latin-1 bytes (`!`…`~`, `¡`…`¬`,
/// `®`…`ÿ`) stand for themselves; the 68 others are mapped, in order, to U+0100 and up
/// (space → `Ġ` U+0120, newline → `Ċ` U+010A).
enum ByteLevel {
    /// `scalars[b]` is the scalar that stands for byte `b`.
    static let scalars: [UInt32] = {
        var table = [UInt32](repeating: 0, count: 256)
        var next: UInt32 = 256
        for b in 0..<256 {
            if (0x21...0x7E).contains(b) || (0xA1...0xAC).contains(b) || (0xAE...0xFF).contains(b) {
                table[b] = UInt32(b)
            } else {
                table[b] = next
                next += 1
            }
        }
        return table
    }()

    /// `inverse[s]` is the byte that scalar `s` (< U+0144) stands for, or -1.
    private static let inverse: [Int16] = {
        var table = [Int16](repeating: -1, count: 0x144)
        for b in 0..<256 { table[Int(scalars[b])] = Int16(b) }
        return table
    }()

    /// The byte a scalar of the alphabet stands for, or nil for a scalar outside the alphabet.
    @inline(__always)
    static func byte(for scalar: UInt32) -> UInt8? {
        guard scalar < 0x144 else { return nil }
        let b = inverse[Int(scalar)]
        return b < 0 ? nil : UInt8(b)
    }

    /// The bytes a token of the byte-level vocabulary stands for, or nil when some scalar of the
    /// token is outside the alphabet (the ByteLevel decoder then uses the token's own UTF-8).
    static func bytes(ofToken token: String) -> [UInt8]? {
        var out: [UInt8] = []
        out.reserveCapacity(token.utf8.count)
        for s in token.unicodeScalars {
            guard let b = byte(for: s.value) else { return nil }
            out.append(b)
        }
        return out
    }

    /// The token string made of the alphabet scalars for `bytes` (the inverse of `bytes(ofToken:)`).
    static func token(forBytes bytes: some Sequence<UInt8>) -> String {
        var s = String.UnicodeScalarView()
        for b in bytes { s.append(Unicode.Scalar(scalars[Int(b)])!) }
        return String(s)
    }

    /// Class bits of the scalar each byte is mapped to: what pre-tokenizers placed after
    /// `ByteLevel` see. (Digits after ByteLevel thus treat bytes 0xB2 `²`, 0xB3, 0xB9, 0xBC-0xBE as
    /// numbers, exactly like the tokenizers crate.)
    static let mappedClasses: [UInt8] = scalars.map { CharacterClassTable.shared.classOf($0) }
}
