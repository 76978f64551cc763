#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Where decode steps spend their time, phase by phase: set `ForwardOutput.phases` to a
/// `DecodePhases()` and every decode-sized step run into that output adds to it. The
/// phases follow a layer's order; each also names the bytes it reads
/// (`FalconMambaModel.bytesRead(by:batch:)`), so a phase's time says how close it comes
/// to the memory bandwidth. Off (nil), a step pays one branch per phase.
public struct DecodePhases: Sendable {
    public enum Phase: Int, CaseIterable, Sendable {
        /// The block's norm, in_proj and the conv in its epilogue (layer 0's also the embedding lookup).
        case inProj
        /// x_proj and the norms of dt, B and C.
        case xProj
        /// dt_proj, and softplus and the selective scan in its epilogue.
        case dtProj
        /// out_proj and the residual add.
        case outProj
        /// The final norm and the lm_head (and the 4-bit lm_head's rescoring).
        case lmHead

        public var name: String {
            switch self {
            case .inProj: "in_proj+conv"
            case .xProj: "x_proj"
            case .dtProj: "dt_proj+scan"
            case .outProj: "out_proj"
            case .lmHead: "lm_head"
            }
        }
    }

    /// Nanoseconds spent in each phase, over all steps, indexed by `Phase.rawValue`.
    public private(set) var nanoseconds = InlineArray<5, UInt64>(repeating: 0)
    /// Decode steps counted.
    public private(set) var steps = 0

    public init() {}

    /// Milliseconds a step spent in `phase`, on average.
    public func millisecondsPerStep(_ phase: Phase) -> Double {
        steps == 0 ? 0 : Double(nanoseconds[phase.rawValue]) / 1e6 / Double(steps)
    }

    public static func += (total: inout DecodePhases, more: DecodePhases) {
        for i in total.nanoseconds.indices { total.nanoseconds[i] += more.nanoseconds[i] }
        total.steps += more.steps
    }

    /// A monotonic clock, in nanoseconds.
    static func now() -> UInt64 {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
    }

    /// The time since `mark` goes to `phase`; `mark` moves to now.
    mutating func add(_ phase: Phase, since mark: inout UInt64) {
        let now = Self.now()
        nanoseconds[phase.rawValue] += now &- mark
        mark = now
    }

    mutating func countStep() { steps += 1 }
}
