import FalconMamba
import Foundation

/// The reference fixtures copied from transformers (Tests/Fixtures; see its README).
enum Fixtures {
    static let root = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fixtures")

    struct Manifest: Decodable {
        struct Sequence: Decodable {
            let index: Int
            let length: Int
            let greedy_step_margins: [Double]
        }
        struct Fixture: Decodable {
            let name: String
            let model: String
            let reference: String
            let sequences: [Sequence]
        }
        let fixtures: [Fixture]
    }

    static let manifest: Manifest = {
        let data = try! Data(contentsOf: root.appendingPathComponent("manifest.json"))
        return try! JSONDecoder().decode(Manifest.self, from: data)
    }()

    static var names: [String] { manifest.fixtures.map(\.name) }

    static func fixture(_ name: String) -> Manifest.Fixture {
        manifest.fixtures.first { $0.name == name }!
    }

    static func modelPath(_ name: String) -> String {
        root.appendingPathComponent("models").appendingPathComponent(name).path
    }

    static func reference(_ name: String) throws -> SafetensorsFile {
        try SafetensorsFile(path: root.appendingPathComponent(fixture(name).reference).path)
    }
}

/// max |a - b| / max |b|: the error measure of the acceptance criteria.
func relativeError(_ a: some Collection<Float>, _ b: some Collection<Float>) -> Float {
    precondition(a.count == b.count, "sizes differ: \(a.count) vs \(b.count)")
    var worst: Float = 0, scale: Float = 0
    for (x, y) in zip(a, b) {
        worst = max(worst, abs(x - y))
        scale = max(scale, abs(y))
    }
    return worst / max(scale, .leastNormalMagnitude)
}

func argmax(_ values: some Collection<Float>) -> Int {
    var best = 0, bestValue = -Float.infinity
    for (i, v) in values.enumerated() where v > bestValue { best = i; bestValue = v }
    return best
}

/// A scratch folder under the temporary directory, removed when released.
final class ScratchFolder {
    let path: String
    init(_ prefix: String) throws {
        path = NSTemporaryDirectory() + "mambad-\(prefix)-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }
}
