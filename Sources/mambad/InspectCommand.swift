import ArgumentParser
import CKernels
import FalconMamba
import Foundation

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Describe a model folder: architecture, sizes, and how each tensor group is stored.")

    @OptionGroup var modelOptions: ModelOptions

    func run() throws {
        let clock = ContinuousClock(), start = clock.now
        let model = try modelOptions.load()
        let loadTime = clock.now - start
        let c = model.config
        let checkpoint = model.checkpoint
        print("model         \(checkpoint.directory)")
        print("architecture  \(c.modelType) (\(c.architectures.joined(separator: ", ")))")
        print("sizes         \(c.numHiddenLayers) layers, hidden \(c.hiddenSize), inner \(c.intermediateSize), " +
              "state \(c.stateSize), conv \(c.convKernel), dt rank \(c.timeStepRank), vocab \(c.vocabSize)")
        print("parameters    \(formatCount(c.parameterCount))")
        print("tokens        bos \(c.bosTokenId.map(String.init) ?? "-"), eos \(c.eosTokenId.map(String.init) ?? "-")" +
              (c.tieWordEmbeddings ? ", lm_head tied to the embeddings" : ""))
        print("state         \(formatBytes(c.stateBytesPerSequence)) per sequence")
        print("mapped        \(formatBytes(checkpoint.mappedBytes)) in \(checkpoint.files.count) file(s)")
        print("kernels       \(String(cString: mk_isa()))")
        print("loaded in     \(String(format: "%.1f", loadTime.milliseconds)) ms")
        print("")
        print(pad("tensor group", 44) + pad("count", 7) + pad("storage", 42) + pad("shape", 16) + "bytes")
        for group in try TensorGroup.groups(of: checkpoint) {
            print(pad(group.pattern, 44) + pad(String(group.count), 7) + pad(group.storage, 42) +
                  pad(group.shape.map(String.init).joined(separator: "x"), 16) + formatBytes(group.bytes))
        }
    }
}

/// Tensors with the same name up to the layer index, stored the same way.
struct TensorGroup {
    var pattern: String
    var storage: String
    var shape: [Int]
    var count = 0
    var bytes = 0

    static func groups(of checkpoint: Checkpoint) throws -> [TensorGroup] {
        var byWeight: [String: (shape: [Int], storage: String, bytes: Int)] = [:]
        for (name, view) in checkpoint.tensors {
            let weight = Checkpoint.owningWeight(of: name)
            byWeight[weight, default: ([], "", 0)].bytes += view.byteCount
            if weight == name { byWeight[weight]!.shape = view.shape; byWeight[weight]!.storage = view.dtype.rawValue }
        }
        var groups: [String: TensorGroup] = [:]
        for (weight, info) in byWeight {
            var storage = info.storage, shape = info.shape
            if let q = try checkpoint.quantState(of: weight) {
                storage = "\(q.quantType.rawValue) block \(q.blocksize), \(q.dtype)" + (q.isDoubleQuantized ? ", double quant" : "")
                shape = q.shape
            }
            let pattern = weight.replacing(/\.layers\.\d+\./, with: ".layers.*.")
            let key = pattern + "|" + storage
            groups[key, default: TensorGroup(pattern: pattern, storage: storage, shape: shape)].count += 1
            groups[key]!.bytes += info.bytes
        }
        return groups.values.sorted { ($0.pattern, $0.storage) < ($1.pattern, $1.storage) }
    }
}

func pad(_ text: String, _ width: Int) -> String {
    text.count >= width ? text + " " : text + String(repeating: " ", count: width - text.count)
}

func formatBytes(_ bytes: Int) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"]
    var value = Double(bytes), unit = 0
    while value >= 1024, unit < units.count - 1 { value /= 1024; unit += 1 }
    return unit == 0 ? "\(bytes) B" : String(format: "%.1f %@", value, units[unit])
}

func formatCount(_ count: Int) -> String {
    count >= 1_000_000_000 ? String(format: "%.2f B", Double(count) / 1e9)
        : count >= 1_000_000 ? String(format: "%.2f M", Double(count) / 1e6) : String(count)
}

extension Duration {
    var seconds: Double { milliseconds / 1e3 }

    var milliseconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) * 1e3 + Double(attoseconds) * 1e-15
    }
}
