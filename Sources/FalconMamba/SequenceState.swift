import CKernels

/// The whole context of one sequence: per layer, the conv state (the last `convKernel`
/// inputs of each channel, oldest first) and the SSM state. Its size is fixed however
/// long the sequence is (about 40 MiB for the 7B), so a snapshot is a copy: this is a
/// value type with copy-on-write storage, and `let snapshot = state` is a snapshot.
public struct SequenceState: Sendable, Equatable {
    public let layers: Int
    public let innerSize: Int
    public let convKernel: Int
    public let stateSize: Int
    /// Tokens consumed since the empty state.
    public internal(set) var tokenCount: Int
    private var storage: Storage

    /// Floats in one buffer: conv [layers, convKernel, innerSize] (tap-major, as the conv
    /// kernel reads it) then ssm [layers, innerSize, stateSize] in the scan's layout (tiles
    /// of 16 channels, mk_scan_layout).
    final class Storage: @unchecked Sendable {
        let pointer: UnsafeMutablePointer<Float>
        let count: Int
        init(count: Int) {
            self.count = count
            pointer = .allocate(capacity: count)
            pointer.initialize(repeating: 0, count: count)
        }
        init(copying other: Storage) {
            count = other.count
            pointer = .allocate(capacity: count)
            pointer.initialize(from: other.pointer, count: count)
        }
        deinit { pointer.deallocate() }
    }

    public init(layers: Int, innerSize: Int, convKernel: Int, stateSize: Int) {
        self.layers = layers
        self.innerSize = innerSize
        self.convKernel = convKernel
        self.stateSize = stateSize
        tokenCount = 0
        storage = Storage(count: layers * innerSize * (convKernel + stateSize))
    }

    var convCount: Int { layers * innerSize * convKernel }
    public var byteCount: Int { storage.count * MemoryLayout<Float>.size }

    /// Pointers for a forward pass; the storage is made unique first (copy on write).
    mutating func mutablePointers() -> (conv: UnsafeMutablePointer<Float>, ssm: UnsafeMutablePointer<Float>) {
        if !isKnownUniquelyReferenced(&storage) { storage = Storage(copying: storage) }
        return (storage.pointer, storage.pointer + convCount)
    }

    mutating func advance(by tokens: Int) { tokenCount += tokens }

    /// Every layer's conv state, [layers, innerSize, convKernel] (a copy, as transformers lays it out).
    public var conv: [Float] { (0..<layers).flatMap { convState(layer: $0) } }
    /// Every layer's SSM state, [layers, innerSize, stateSize] (a copy, as transformers lays it out).
    public var ssm: [Float] { (0..<layers).flatMap { ssmState(layer: $0) } }

    /// Layer `layer`'s conv state, [innerSize, convKernel] (a copy, as transformers lays it out).
    public func convState(layer: Int) -> [Float] {
        let base = storage.pointer + layer * innerSize * convKernel
        return (0..<innerSize * convKernel).map { i in base[(i % convKernel) * innerSize + i / convKernel] }
    }

    /// Layer `layer`'s SSM state, [innerSize, stateSize] (a copy, as transformers lays it out).
    public func ssmState(layer: Int) -> [Float] {
        let size = innerSize * stateSize
        return [Float](unsafeUninitializedCapacity: size) { out, count in
            mk_scan_layout(storage.pointer + convCount + layer * size, out.baseAddress!, Int64(innerSize), Int64(stateSize), 0)
            count = size
        }
    }

    /// Back to the empty context.
    public mutating func reset() {
        let pointers = mutablePointers()
        pointers.conv.update(repeating: 0, count: storage.count)
        tokenCount = 0
    }

    public static func == (a: SequenceState, b: SequenceState) -> Bool {
        guard a.layers == b.layers, a.innerSize == b.innerSize, a.convKernel == b.convKernel,
              a.stateSize == b.stateSize, a.tokenCount == b.tokenCount else { return false }
        if a.storage === b.storage { return true }
        for i in 0..<a.storage.count where a.storage.pointer[i] != b.storage.pointer[i] { return false }
        return true
    }
}
