import FoundationEssentials

/// A model folder as Hugging Face publishes it: config.json plus model.safetensors,
/// or shards listed in model.safetensors.index.json. Every file is memory-mapped;
/// tensors are views into the mappings.
public struct Checkpoint: Sendable {
    public let directory: String
    public let config: FalconMambaConfig
    public let files: [SafetensorsFile]
    /// Every tensor of every file, by name.
    public let tensors: [String: TensorView]

    public static let configFile = "config.json"
    public static let singleFile = "model.safetensors"
    public static let indexFile = "model.safetensors.index.json"

    public init(directory: String) throws(CheckpointError) {
        self.directory = directory
        let configPath = Self.join(directory, Self.configFile)
        let configFile = try MappedFile(path: configPath)
        config = try FalconMambaConfig(data: Data(configFile.bytes(at: 0, count: configFile.size)), path: configPath)

        let indexPath = Self.join(directory, Self.indexFile)
        let weightMap = try Self.readIndex(path: indexPath)
        var files: [SafetensorsFile] = []
        var tensors: [String: TensorView] = [:]
        if let weightMap {
            var byFile: [String: SafetensorsFile] = [:]
            for shard in Set(weightMap.values).sorted() {
                let file = try SafetensorsFile(path: Self.join(directory, shard))
                byFile[shard] = file
                files.append(file)
            }
            for (name, shard) in weightMap.sorted(by: { $0.key < $1.key }) {
                guard let view = byFile[shard]?.tensors[name] else {
                    throw .missingTensor(tensor: name, path: Self.join(directory, shard))
                }
                tensors[name] = view
            }
            // Tensors a shard holds beyond the index (quant_state companions are sometimes left out).
            for file in files { tensors.merge(file.tensors) { indexed, _ in indexed } }
        } else {
            let file = try SafetensorsFile(path: Self.join(directory, Self.singleFile))
            files = [file]
            tensors = file.tensors
        }
        self.files = files
        self.tensors = tensors
    }

    /// Bytes of all mapped safetensors files.
    public var mappedBytes: Int { files.reduce(0) { $0 + $1.file.size } }

    public func tensor(_ name: String) throws(CheckpointError) -> TensorView {
        guard let view = tensors[name] else { throw .missingTensor(tensor: name, path: describeLocation(of: name)) }
        return view
    }

    /// Where a tensor would have been looked for, for error messages.
    func describeLocation(of name: String) -> String {
        files.count == 1 ? files[0].file.path : Self.join(directory, Self.indexFile)
    }

    /// The weight map of a sharded checkpoint, or nil when there is no index file.
    private static func readIndex(path: String) throws(CheckpointError) -> [String: String]? {
        let file: MappedFile
        do {
            file = try MappedFile(path: path)
        } catch .missingFile {
            return nil
        }
        struct Index: Decodable {
            var weight_map: [String: String]
        }
        let index: Index
        do {
            index = try JSONDecoder().decode(Index.self, from: Data(file.bytes(at: 0, count: file.size)))
        } catch {
            throw .invalidIndex(path: path, reason: SafetensorsFile.describe(error))
        }
        for shard in Set(index.weight_map.values) where shard.contains("/") || shard.hasPrefix(".") || shard.isEmpty {
            throw .invalidIndex(path: path, reason: "shard name '\(shard)' must be a plain file name in the folder")
        }
        guard !index.weight_map.isEmpty else { throw .invalidIndex(path: path, reason: "weight_map is empty") }
        return index.weight_map
    }

    static func join(_ directory: String, _ name: String) -> String {
        directory.hasSuffix("/") ? directory + name : directory + "/" + name
    }
}
