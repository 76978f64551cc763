import FalconMamba
import Foundation
import Testing

/// A copy of a fixture model in a temporary folder, to be broken on purpose.
struct ScratchModel: ~Copyable {
    let url: URL
    var path: String { url.path }

    init(copying fixture: String) throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("mambad-test-\(UUID().uuidString)")
        try FileManager.default.copyItem(at: URL(fileURLWithPath: Fixtures.modelPath(fixture)), to: url)
        // Fixture files may be read-only; the copies must be writable.
        for name in try FileManager.default.contentsOfDirectory(atPath: path) {
            try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: url.appendingPathComponent(name).path)
        }
    }

    deinit { try? FileManager.default.removeItem(at: url) }

    func file(_ name: String) -> String { url.appendingPathComponent(name).path }

    func remove(_ name: String) throws { try FileManager.default.removeItem(atPath: file(name)) }

    func write(_ name: String, _ data: Data) throws { try data.write(to: url.appendingPathComponent(name)) }

    func read(_ name: String) throws -> Data { try Data(contentsOf: url.appendingPathComponent(name)) }

    /// Edit config.json as a JSON object.
    func editConfig(_ edit: (inout [String: Any]) -> Void) throws {
        var object = try JSONSerialization.jsonObject(with: read("config.json")) as! [String: Any]
        edit(&object)
        try write("config.json", JSONSerialization.data(withJSONObject: object))
    }

    /// Rewrite a safetensors file's header (the data section is kept as it is).
    func editHeader(_ name: String = "model.safetensors", _ edit: (inout [String: Any]) -> Void) throws {
        let data = try read(name)
        let length = Int(data.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
        var header = try JSONSerialization.jsonObject(with: data.subdata(in: 8..<(8 + length))) as! [String: Any]
        edit(&header)
        var json = try JSONSerialization.data(withJSONObject: header)
        while json.count % 8 != 0 { json.append(0x20) }
        var out = Data()
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(json)
        out.append(data.subdata(in: (8 + length)..<data.count))
        try write(name, out)
    }
}

@Suite struct CheckpointErrorTests {
    func loadError(_ model: borrowing ScratchModel) -> CheckpointError? {
        do {
            _ = try FalconMambaModel(directory: model.path)
            return nil
        } catch {
            return error
        }
    }

    @Test func everyFixtureLoads() throws {
        for name in Fixtures.names {
            let model = try FalconMambaModel(directory: Fixtures.modelPath(name))
            #expect(model.checkpoint.mappedBytes > 0)
        }
    }

    @Test func missingConfig() throws {
        let model = try ScratchModel(copying: "tiny-nf4")
        try model.remove("config.json")
        #expect(loadError(model) == .missingFile(path: model.file("config.json")))
    }

    @Test func configThatIsNotJSON() throws {
        let model = try ScratchModel(copying: "tiny-nf4")
        try model.write("config.json", Data("{not json".utf8))
        guard case .invalidConfig(let path, _, _) = loadError(model) else { Issue.record("expected invalidConfig"); return }
        #expect(path == model.file("config.json"))
    }

    @Test func configMissingARequiredField() throws {
        let model = try ScratchModel(copying: "tiny-nf4")
        try model.editConfig { $0["hidden_size"] = nil }
        #expect(loadError(model) == .invalidConfig(path: model.file("config.json"), field: "hidden_size", reason: "missing"))
    }

    @Test func otherArchitecture() throws {
        let model = try ScratchModel(copying: "tiny-nf4")
        try model.editConfig { $0["model_type"] = "mamba" }
        #expect(loadError(model) == .unsupportedArchitecture(path: model.file("config.json"), modelType: "mamba"))
    }

    @Test func missingShard() throws {
        let model = try ScratchModel(copying: "tiny-fp16-sharded")
        try model.remove("model-00002-of-00003.safetensors")
        #expect(loadError(model) == .missingFile(path: model.file("model-00002-of-00003.safetensors")))
    }

    @Test func indexNamesATensorItsShardLacks() throws {
        let model = try ScratchModel(copying: "tiny-fp16-sharded")
        let indexData = try model.read("model.safetensors.index.json")
        var index = try JSONSerialization.jsonObject(with: indexData) as! [String: Any]
        var map = index["weight_map"] as! [String: String]
        map["backbone.layers.9.norm.weight"] = "model-00001-of-00003.safetensors"
        index["weight_map"] = map
        try model.write("model.safetensors.index.json", JSONSerialization.data(withJSONObject: index))
        #expect(loadError(model) == .missingTensor(tensor: "backbone.layers.9.norm.weight",
                                                   path: model.file("model-00001-of-00003.safetensors")))
    }

    @Test func indexEscapingTheFolder() throws {
        let model = try ScratchModel(copying: "tiny-fp16-sharded")
        try model.write("model.safetensors.index.json", Data(#"{"weight_map": {"lm_head.weight": "../x.safetensors"}}"#.utf8))
        guard case .invalidIndex = loadError(model) else { Issue.record("expected invalidIndex"); return }
    }

    @Test func fileShorterThanItsHeaderLength() throws {
        let model = try ScratchModel(copying: "tiny-nf4")
        try model.write("model.safetensors", Data([1, 2, 3]))
        #expect(loadError(model) == .truncatedFile(path: model.file("model.safetensors"), size: 3))
    }

    @Test func headerLongerThanTheFile() throws {
        let model = try ScratchModel(copying: "tiny-nf4")
        var data = try model.read("model.safetensors")
        data.replaceSubrange(0..<8, with: withUnsafeBytes(of: UInt64(1 << 40).littleEndian) { Data($0) })
        try model.write("model.safetensors", data)
        #expect(loadError(model) == .headerTooLong(path: model.file("model.safetensors"), headerLength: 1 << 40, fileSize: data.count))
    }

    @Test func truncatedData() throws {
        let model = try ScratchModel(copying: "tiny-nf4")
        let data = try model.read("model.safetensors")
        try model.write("model.safetensors", data.prefix(data.count / 2))
        guard case .tensorOutOfBounds(let path, _, _, _, _) = loadError(model) else {
            Issue.record("expected tensorOutOfBounds"); return
        }
        #expect(path == model.file("model.safetensors"))
    }

    @Test func offsetsOutsideTheData() throws {
        let model = try ScratchModel(copying: "tiny-nf4")
        try model.editHeader { header in
            header["backbone.norm_f.weight"] = ["dtype": "BF16", "shape": [64], "data_offsets": [1 << 30, (1 << 30) + 128]]
        }
        guard case .tensorOutOfBounds(_, let tensor, let begin, _, _) = loadError(model) else {
            Issue.record("expected tensorOutOfBounds"); return
        }
        #expect(tensor == "backbone.norm_f.weight")
        #expect(begin == 1 << 30)
    }

    @Test func headerThatIsNotJSON() throws {
        let model = try ScratchModel(copying: "tiny-nf4")
        var data = try model.read("model.safetensors")
        data[8] = UInt8(ascii: "!")
        try model.write("model.safetensors", data)
        guard case .invalidHeader(let path, _) = loadError(model) else { Issue.record("expected invalidHeader"); return }
        #expect(path == model.file("model.safetensors"))
    }

    @Test func unknownDType() throws {
        let model = try ScratchModel(copying: "tiny-nf4")
        try model.editHeader { header in
            var entry = header["backbone.norm_f.weight"] as! [String: Any]
            entry["dtype"] = "F8_E9M9"
            header["backbone.norm_f.weight"] = entry
        }
        #expect(loadError(model) == .unknownDType(path: model.file("model.safetensors"), tensor: "backbone.norm_f.weight", dtype: "F8_E9M9"))
    }

    @Test func shapeThatDisagreesWithTheConfig() throws {
        let model = try ScratchModel(copying: "tiny-bf16")
        try model.editConfig { $0["intermediate_size"] = 256 }
        guard case .shapeMismatch(let path, let tensor, let expected, let actual) = loadError(model) else {
            Issue.record("expected shapeMismatch"); return
        }
        #expect(path == model.file("model.safetensors"))
        #expect(tensor == "backbone.layers.0.mixer.conv1d.weight")
        #expect(expected == [256, 1, 4])
        #expect(actual == [128, 1, 4])
    }

    @Test func quantizedShapeThatDisagreesWithTheConfig() throws {
        let model = try ScratchModel(copying: "tiny-fp4-like-7b")
        try model.editConfig { $0["hidden_size"] = 32 }
        guard case .shapeMismatch(_, let tensor, _, _) = loadError(model) else { Issue.record("expected shapeMismatch"); return }
        #expect(tensor == "backbone.embeddings.weight")
    }

    @Test func missingQuantState() throws {
        let model = try ScratchModel(copying: "tiny-fp4-like-7b")
        try model.editHeader { $0["backbone.layers.1.mixer.out_proj.weight.quant_state.bitsandbytes__fp4"] = nil }
        guard case .missingQuantState(let path, let tensor, _) = loadError(model) else {
            Issue.record("expected missingQuantState"); return
        }
        #expect(path == model.file("model.safetensors"))
        #expect(tensor == "backbone.layers.1.mixer.out_proj.weight")
    }

    @Test func missingNestedAbsmax() throws {
        let model = try ScratchModel(copying: "tiny-nf4-dq")
        try model.editHeader { $0["backbone.layers.2.mixer.in_proj.weight.nested_absmax"] = nil }
        #expect(loadError(model) == .missingQuantState(path: model.file("model.safetensors"),
                                                       tensor: "backbone.layers.2.mixer.in_proj.weight",
                                                       component: "backbone.layers.2.mixer.in_proj.weight.nested_absmax"))
    }

    @Test func missingTensor() throws {
        let model = try ScratchModel(copying: "tiny-bf16")
        try model.editHeader { $0["backbone.layers.2.mixer.A_log"] = nil }
        #expect(loadError(model) == .missingTensor(tensor: "backbone.layers.2.mixer.A_log", path: model.file("model.safetensors")))
    }

    @Test func untiedModelWithoutLMHead() throws {
        let model = try ScratchModel(copying: "tiny-bf16")
        try model.editHeader { $0["lm_head.weight"] = nil }
        guard case .missingTensor(let tensor, _) = loadError(model) else { Issue.record("expected missingTensor"); return }
        #expect(tensor.hasPrefix("lm_head.weight"))
    }

    @Test func errorsSayWhichFileAndTensor() {
        let error = CheckpointError.shapeMismatch(path: "/m/model.safetensors", tensor: "lm_head.weight", expected: [4, 2], actual: [2, 4])
        #expect(error.description.contains("/m/model.safetensors"))
        #expect(error.description.contains("lm_head.weight"))
    }
}
