import CKernels
import FoundationEssentials

/// A bitsandbytes 4-bit weight as saved by `save_pretrained`: packed codes in
/// `NAME` (U8), `NAME.absmax`, `NAME.quant_map`, the JSON `NAME.quant_state.bitsandbytes__{nf4,fp4}`
/// and, with double quantization, `NAME.nested_absmax` and `NAME.nested_quant_map`.
public struct QuantState: Sendable, Equatable {
    public enum QuantType: String, Sendable { case nf4, fp4 }

    public var quantType: QuantType
    public var blocksize: Int
    /// The dtype bitsandbytes rounds each decoded weight to: "float32", "bfloat16" or "float16".
    public var dtype: String
    public var shape: [Int]
    public var nestedBlocksize: Int?
    public var nestedOffset: Float?

    public var isDoubleQuantized: Bool { nestedBlocksize != nil }
    var rounding: mk_rounding {
        switch dtype {
        case "bfloat16": MK_ROUND_BF16
        case "float16": MK_ROUND_F16
        default: MK_ROUND_NONE
        }
    }

    private struct JSON: Decodable {
        var quant_type: String
        var blocksize: Int
        var dtype: String
        var shape: [Int]
        var nested_blocksize: Int?
        var nested_offset: Float?
    }

    /// Parse the JSON of a `NAME.quant_state.bitsandbytes__*` tensor.
    public init(json bytes: UnsafeRawBufferPointer, path: String, tensor: String) throws(CheckpointError) {
        let raw: JSON
        do {
            raw = try JSONDecoder().decode(JSON.self, from: Data(bytes))
        } catch {
            throw .invalidQuantState(path: path, tensor: tensor, reason: "quant_state JSON: " + SafetensorsFile.describe(error))
        }
        guard let type = QuantType(rawValue: raw.quant_type) else {
            throw .invalidQuantState(path: path, tensor: tensor, reason: "quant_type '\(raw.quant_type)' is not nf4 or fp4")
        }
        guard raw.blocksize > 0 else {
            throw .invalidQuantState(path: path, tensor: tensor, reason: "blocksize \(raw.blocksize) must be positive")
        }
        guard ["float32", "bfloat16", "float16"].contains(raw.dtype) else {
            throw .invalidQuantState(path: path, tensor: tensor, reason: "dtype '\(raw.dtype)' is not float32, bfloat16 or float16")
        }
        guard raw.shape.count == 2, raw.shape.allSatisfy({ $0 > 0 }) else {
            throw .invalidQuantState(path: path, tensor: tensor, reason: "shape \(raw.shape) is not a matrix")
        }
        if let nested = raw.nested_blocksize, nested <= 0 {
            throw .invalidQuantState(path: path, tensor: tensor, reason: "nested_blocksize \(nested) must be positive")
        }
        if raw.nested_blocksize != nil, raw.nested_offset == nil {
            throw .missingQuantState(path: path, tensor: tensor, component: "nested_offset in the quant_state JSON")
        }
        quantType = type
        blocksize = raw.blocksize
        dtype = raw.dtype
        shape = raw.shape
        nestedBlocksize = raw.nested_blocksize
        nestedOffset = raw.nested_offset
    }
}

extension Checkpoint {
    /// The 4-bit quantization of weight `name`, or nil when it is stored dense.
    public func quantState(of name: String) throws(CheckpointError) -> QuantState? {
        guard let view = tensors.first(where: { $0.key.hasPrefix(name + ".quant_state.bitsandbytes__") })?.value else {
            return nil
        }
        return try QuantState(json: view.bytes, path: view.path, tensor: name)
    }

    /// Suffixes of the tensors that belong to a 4-bit weight rather than being weights.
    public static let quantCompanionSuffixes = [".absmax", ".quant_map", ".nested_absmax", ".nested_quant_map"]

    /// The weight a tensor belongs to: itself, or the 4-bit weight it describes.
    public static func owningWeight(of name: String) -> String {
        if let range = name.firstRange(of: ".quant_state.") { return String(name[..<range.lowerBound]) }
        for suffix in quantCompanionSuffixes where name.hasSuffix(suffix) { return String(name.dropLast(suffix.count)) }
        return name
    }
}
