/// The whole context of one sequence: per layer, the conv state (the last `convKernel`
/// inputs of each channel, oldest first) and the SSM state. Its size is fixed however
/// long the sequence is (about 38 MiB for the 7B), so a snapshot is a plain copy:
/// this is a value type, and `var snapshot = state` is a snapshot.
public struct SequenceState: Sendable, Equatable {
    public let layers: Int
    public let innerSize: Int
    public let convKernel: Int
    public let stateSize: Int
    /// [layers, innerSize, convKernel]
    public internal(set) var conv: [Float]
    /// [layers, innerSize, stateSize]
    public internal(set) var ssm: [Float]
    /// Tokens consumed since the empty state.
    public internal(set) var tokenCount: Int

    public init(layers: Int, innerSize: Int, convKernel: Int, stateSize: Int) {
        self.layers = layers
        self.innerSize = innerSize
        self.convKernel = convKernel
        self.stateSize = stateSize
        conv = [Float](repeating: 0, count: layers * innerSize * convKernel)
        ssm = [Float](repeating: 0, count: layers * innerSize * stateSize)
        tokenCount = 0
    }

    public var byteCount: Int { (conv.count + ssm.count) * MemoryLayout<Float>.size }

    /// Layer `layer`'s conv state, [innerSize, convKernel].
    public func convState(layer: Int) -> ArraySlice<Float> {
        let size = innerSize * convKernel
        return conv[layer * size..<(layer + 1) * size]
    }

    /// Layer `layer`'s SSM state, [innerSize, stateSize].
    public func ssmState(layer: Int) -> ArraySlice<Float> {
        let size = innerSize * stateSize
        return ssm[layer * size..<(layer + 1) * size]
    }

    /// Back to the empty context, keeping the storage.
    public mutating func reset() {
        for i in conv.indices { conv[i] = 0 }
        for i in ssm.indices { ssm[i] = 0 }
        tokenCount = 0
    }
}
