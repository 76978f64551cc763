import CKernels
import FoundationEssentials

/// Element types that may appear in a safetensors file.
public enum DType: String, Sendable, CaseIterable {
    case f64 = "F64", f32 = "F32", f16 = "F16", bf16 = "BF16"
    case i64 = "I64", i32 = "I32", i16 = "I16", i8 = "I8"
    case u64 = "U64", u32 = "U32", u16 = "U16", u8 = "U8", bool = "BOOL"

    public var byteSize: Int {
        switch self {
        case .f64, .i64, .u64: 8
        case .f32, .i32, .u32: 4
        case .f16, .bf16, .i16, .u16: 2
        case .i8, .u8, .bool: 1
        }
    }

    /// The kernels' name for a floating-point weight type, if it has one.
    var kernelDType: mk_dtype? {
        switch self {
        case .f32: MK_DTYPE_F32
        case .f16: MK_DTYPE_F16
        case .bf16: MK_DTYPE_BF16
        default: nil
        }
    }
}

/// One tensor: a typed, shaped view into a mapped file. Holding it keeps the file mapped.
public struct TensorView: Sendable {
    public let name: String
    public let dtype: DType
    public let shape: [Int]
    public let file: MappedFile
    /// Absolute byte offset of the first element in the file.
    public let offset: Int
    public let byteCount: Int

    public var elementCount: Int { shape.reduce(1, *) }
    public var path: String { file.path }
    public var bytes: UnsafeRawBufferPointer { file.bytes(at: offset, count: byteCount) }

    /// The elements widened to Float (F32, F16, BF16 only). For small tensors: this copies.
    public func floats() throws(CheckpointError) -> [Float] {
        guard let kernelType = dtype.kernelDType else {
            throw .dtypeMismatch(path: path, tensor: name, expected: "F32, F16 or BF16", actual: dtype.rawValue)
        }
        let count = elementCount
        let source = bytes
        if dtype == .f32 {  // the mapping may not be 4-byte aligned: copy bytewise
            var out = [Float](repeating: 0, count: count)
            out.withUnsafeMutableBytes { $0.copyMemory(from: source) }
            return out
        }
        return [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
            mk_convert_to_f32(source.baseAddress, Int32(kernelType.rawValue), Int64(count), buffer.baseAddress)
            initialized = count
        }
    }

    /// The elements of an integer tensor (I32, I64, U8) as Int.
    public func integers() throws(CheckpointError) -> [Int] {
        let source = bytes
        switch dtype {
        case .i32: return (0..<elementCount).map { Int(source.loadUnaligned(fromByteOffset: $0 * 4, as: Int32.self)) }
        case .i64: return (0..<elementCount).map { Int(source.loadUnaligned(fromByteOffset: $0 * 8, as: Int64.self)) }
        case .u8: return source.map { Int($0) }
        default:
            throw .dtypeMismatch(path: path, tensor: name, expected: "I32, I64 or U8", actual: dtype.rawValue)
        }
    }
}

/// A parsed safetensors file: an 8-byte little-endian header length, a JSON header
/// naming each tensor's dtype, shape and data offsets, then the data.
public struct SafetensorsFile: Sendable {
    public let file: MappedFile
    public let tensors: [String: TensorView]
    public let metadata: [String: String]

    public init(path: String) throws(CheckpointError) {
        try self.init(file: MappedFile(path: path))
    }

    public init(file: MappedFile) throws(CheckpointError) {
        self.file = file
        let path = file.path
        guard file.size >= 8 else { throw .truncatedFile(path: path, size: file.size) }
        let headerLength = file.bytes(at: 0, count: 8).loadUnaligned(as: UInt64.self).littleEndian
        guard headerLength <= UInt64(file.size - 8) else {
            throw .headerTooLong(path: path, headerLength: headerLength, fileSize: file.size)
        }
        let headerBytes = file.bytes(at: 8, count: Int(headerLength))
        let header: Header
        do {
            header = try JSONDecoder().decode(Header.self, from: Data(headerBytes))
        } catch {
            throw .invalidHeader(path: path, reason: Self.describe(error))
        }
        let dataStart = 8 + Int(headerLength)
        let dataSize = file.size - dataStart
        var tensors: [String: TensorView] = [:]
        for (name, entry) in header.entries {
            guard let dtype = DType(rawValue: entry.dtype) else {
                throw .unknownDType(path: path, tensor: name, dtype: entry.dtype)
            }
            guard entry.dataOffsets.count == 2 else {
                throw .invalidHeader(path: path, reason: "tensor '\(name)': data_offsets must have two entries")
            }
            let begin = entry.dataOffsets[0], end = entry.dataOffsets[1]
            guard begin >= 0, begin <= end, end <= dataSize else {
                throw .tensorOutOfBounds(path: path, tensor: name, begin: begin, end: end, dataSize: dataSize)
            }
            guard entry.shape.allSatisfy({ $0 >= 0 }) else {
                throw .invalidHeader(path: path, reason: "tensor '\(name)': negative dimension in \(entry.shape)")
            }
            let (count, overflow) = entry.shape.reduce((1, false)) { acc, dim in
                let (p, o) = acc.0.multipliedReportingOverflow(by: dim)
                return (p, acc.1 || o)
            }
            let (bytes, overflow2) = count.multipliedReportingOverflow(by: dtype.byteSize)
            guard !overflow, !overflow2, bytes == end - begin else {
                throw .tensorSizeMismatch(path: path, tensor: name, shape: entry.shape,
                                          dtype: entry.dtype, bytes: end - begin)
            }
            tensors[name] = TensorView(name: name, dtype: dtype, shape: entry.shape, file: file,
                                       offset: dataStart + begin, byteCount: end - begin)
        }
        self.tensors = tensors
        self.metadata = header.metadata
    }

    static func describe(_ error: any Error) -> String {
        switch error {
        case DecodingError.dataCorrupted(let context):
            return "not valid JSON" + (context.debugDescription.isEmpty ? "" : " (\(context.debugDescription))")
        case DecodingError.keyNotFound(let key, let context):
            return "missing '\(key.stringValue)' at \(context.codingPath.map(\.stringValue).joined(separator: "."))"
        case DecodingError.typeMismatch(_, let context), DecodingError.valueNotFound(_, let context):
            return "wrong type at \(context.codingPath.map(\.stringValue).joined(separator: "."))"
        default:
            return "\(error)"
        }
    }
}

/// The JSON header: tensor name -> entry, plus an optional "__metadata__" of strings.
private struct Header: Decodable {
    struct Entry: Decodable {
        let dtype: String
        let shape: [Int]
        let dataOffsets: [Int]
        enum CodingKeys: String, CodingKey { case dtype, shape, dataOffsets = "data_offsets" }
    }
    struct Key: CodingKey {
        let stringValue: String
        init(stringValue: String) { self.stringValue = stringValue }
        var intValue: Int? { nil }
        init?(intValue: Int) { nil }
    }

    var entries: [(String, Entry)] = []
    var metadata: [String: String] = [:]

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: Key.self)
        for key in container.allKeys {
            if key.stringValue == "__metadata__" {
                metadata = (try? container.decode([String: String].self, forKey: key)) ?? [:]
            } else {
                entries.append((key.stringValue, try container.decode(Entry.self, forKey: key)))
            }
        }
    }
}
