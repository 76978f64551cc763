import CKernels

/// How the decode products ask for their weights ahead of use: how far ahead, and into
/// which cache level. Written as text the way the settings take it: `0` (none: the
/// hardware prefetchers alone), `BYTES` or `l2:BYTES` (into L2), `nta:BYTES`
/// (non-temporal, into L1). A distance is rounded down to whole 64-byte lines and capped
/// at 64 KiB.
public struct PrefetchPlan: Hashable, Sendable, CustomStringConvertible {
    public enum Level: Hashable, Sendable {
        /// prefetcht1: into L2, whose miss queue is deeper than L1's.
        case l2
        /// prefetchnta: into L1, out of the outer caches' way.
        case nonTemporal

        var kernelValue: Int32 { self == .l2 ? Int32(MK_PREFETCH_L2) : Int32(MK_PREFETCH_NONTEMPORAL) }

        init(kernelValue: Int32) { self = kernelValue == Int32(MK_PREFETCH_NONTEMPORAL) ? .nonTemporal : .l2 }
    }

    public let distance: Int
    public let level: Level

    public init(distance: Int, level: Level = .l2) {
        self.distance = Int(mk_prefetch_clamp(Int64(distance)))
        self.level = self.distance > 0 ? level : .l2
    }

    /// No software prefetch (not `none`, which an optional plan would read as nil).
    public static let off = PrefetchPlan(distance: 0)
    /// 6 KiB ahead into L2.
    public static let l2 = PrefetchPlan(distance: Int(MK_PREFETCH_BYTES), level: .l2)
    /// 6 KiB ahead, non-temporal.
    public static let nonTemporal = PrefetchPlan(distance: Int(MK_PREFETCH_BYTES), level: .nonTemporal)

    /// `0`, `BYTES`, `l2:BYTES` or `nta:BYTES`, with K for KiB (`6K`); nil for anything
    /// else, or a distance beyond 64 KiB. Read by the kernels' own parser
    /// (mk_prefetch_parse), the one MAMBAD_PREFETCH goes through, so every setting takes
    /// the same text.
    public init?(_ text: String) {
        var bytes: Int64 = 0, level: Int32 = 0
        guard !text.utf8.contains(0), mk_prefetch_parse(text, &bytes, &level) != 0 else { return nil }
        self.init(distance: Int(bytes), level: Level(kernelValue: level))
    }

    public var description: String {
        distance == 0 ? "0" : (level == .l2 ? "l2:" : "nta:") + String(distance)
    }

    /// The plan the products use now (MAMBAD_PREFETCH, a tuner's or a fixed setting).
    static var current: PrefetchPlan {
        PrefetchPlan(distance: Int(mk_prefetch_distance()), level: Level(kernelValue: mk_prefetch_level()))
    }

    /// Make it the products' plan, as a tuner does: fixed or not stays as it was.
    func apply() { mk_set_prefetch(Int64(distance), level.kernelValue) }
}
