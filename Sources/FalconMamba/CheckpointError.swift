/// Why a model folder could not be loaded. Every case names the file and, where
/// there is one, the tensor, so that a user can tell what is wrong with a download.
public enum CheckpointError: Error, Equatable, CustomStringConvertible {
    case missingFile(path: String)
    case unreadableFile(path: String, reason: String)
    case invalidConfig(path: String, field: String, reason: String)
    case unsupportedArchitecture(path: String, modelType: String)
    case invalidIndex(path: String, reason: String)
    case truncatedFile(path: String, size: Int)
    case headerTooLong(path: String, headerLength: UInt64, fileSize: Int)
    case invalidHeader(path: String, reason: String)
    case unknownDType(path: String, tensor: String, dtype: String)
    case tensorOutOfBounds(path: String, tensor: String, begin: Int, end: Int, dataSize: Int)
    case tensorSizeMismatch(path: String, tensor: String, shape: [Int], dtype: String, bytes: Int)
    case missingTensor(tensor: String, path: String)
    case shapeMismatch(path: String, tensor: String, expected: [Int], actual: [Int])
    case dtypeMismatch(path: String, tensor: String, expected: String, actual: String)
    case missingQuantState(path: String, tensor: String, component: String)
    case invalidQuantState(path: String, tensor: String, reason: String)

    public var description: String {
        switch self {
        case .missingFile(let path):
            return "\(path): file not found"
        case .unreadableFile(let path, let reason):
            return "\(path): cannot read: \(reason)"
        case .invalidConfig(let path, let field, let reason):
            return "\(path): field '\(field)': \(reason)"
        case .unsupportedArchitecture(let path, let modelType):
            return "\(path): model_type '\(modelType)' is not supported (expected 'falcon_mamba')"
        case .invalidIndex(let path, let reason):
            return "\(path): invalid shard index: \(reason)"
        case .truncatedFile(let path, let size):
            return "\(path): truncated: \(size) bytes is too short for a safetensors file"
        case .headerTooLong(let path, let headerLength, let fileSize):
            return "\(path): header length \(headerLength) exceeds the file size \(fileSize)"
        case .invalidHeader(let path, let reason):
            return "\(path): invalid safetensors header: \(reason)"
        case .unknownDType(let path, let tensor, let dtype):
            return "\(path): tensor '\(tensor)': unknown dtype '\(dtype)'"
        case .tensorOutOfBounds(let path, let tensor, let begin, let end, let dataSize):
            return "\(path): tensor '\(tensor)': data offsets [\(begin), \(end)) lie outside the \(dataSize) data bytes"
        case .tensorSizeMismatch(let path, let tensor, let shape, let dtype, let bytes):
            return "\(path): tensor '\(tensor)': shape \(shape) of \(dtype) does not fill its \(bytes) bytes"
        case .missingTensor(let tensor, let path):
            return "\(path): tensor '\(tensor)' not found"
        case .shapeMismatch(let path, let tensor, let expected, let actual):
            return "\(path): tensor '\(tensor)': shape \(actual) disagrees with config.json, which implies \(expected)"
        case .dtypeMismatch(let path, let tensor, let expected, let actual):
            return "\(path): tensor '\(tensor)': dtype \(actual), expected \(expected)"
        case .missingQuantState(let path, let tensor, let component):
            return "\(path): 4-bit tensor '\(tensor)': missing \(component)"
        case .invalidQuantState(let path, let tensor, let reason):
            return "\(path): 4-bit tensor '\(tensor)': \(reason)"
        }
    }
}
