#if canImport(Glibc)
import Glibc
#endif
import CKernels

/// A weight matrix repacked for the int8 fast path (layout in CKernels/packed.c):
/// 4-bit checkpoint weights keep their codes (16-row panels, a uint8 scale per block of
/// 64 times a float per row: 4.125 bits a weight instead of 4.5); a dense matrix (the
/// lm_head) becomes int8 with the same scales (8.125 bits instead of 16). One pass over a panel serves every
/// sequence of a decode batch. The bytes live in memory owned by `owner`: a packed-weights
/// cache file mapped from the page cache, or anonymous memory.
final class PackedWeights: @unchecked Sendable {
    let matrix: mk_packed_matrix
    let layout: PackedLayout
    private let owner: AnyObject

    init(matrix: mk_packed_matrix, layout: PackedLayout, owner: AnyObject) {
        self.matrix = matrix
        self.layout = layout
        self.owner = owner
    }

    /// Bytes one product reads: codes and scales.
    var bytes: Int { layout.codeBytes + layout.scaleCount + layout.rowScaleCount * 4 }

    /// The memory a product reads (for the bandwidth probe).
    var regions: [(UnsafeRawPointer, Int)] {
        [(UnsafeRawPointer(matrix.codes!), layout.codeBytes),
         (UnsafeRawPointer(matrix.scales!), layout.scaleCount),
         (UnsafeRawPointer(matrix.row_scales!), layout.rowScaleCount * 4)]
    }
}

/// The shape of one packed matrix and the bytes it takes.
struct PackedLayout: Equatable, Sendable {
    let rows: Int, cols: Int, bits: Int32
    var codeBytes: Int { Int(mk_packed_code_bytes(Int64(rows), Int64(cols), bits)) }
    var scaleCount: Int { Int(mk_packed_scale_count(Int64(rows), Int64(cols))) }
    var rowScaleCount: Int { Int(mk_packed_row_count(Int64(rows))) }
    private var scaleOffset: Int { (codeBytes + 63) / 64 * 64 }
    private var rowScaleOffset: Int { scaleOffset + (scaleCount + 63) / 64 * 64 }
    /// Codes, block scales, row scales, each start 64-byte aligned; the whole rounded to 4 KiB.
    var span: Int { (rowScaleOffset + rowScaleCount * 4 + 4095) / 4096 * 4096 }

    /// The matrix description for memory at `base`.
    func matrix(at base: UnsafeMutableRawPointer) -> mk_packed_matrix {
        var m = mk_packed_matrix()
        m.codes = UnsafePointer(base.assumingMemoryBound(to: UInt8.self))
        m.scales = UnsafePointer((base + scaleOffset).assumingMemoryBound(to: UInt8.self))
        m.row_scales = UnsafePointer((base + rowScaleOffset).assumingMemoryBound(to: Float.self))
        m.rows = Int64(rows)
        m.cols = Int64(cols)
        m.bits = bits
        return m
    }
}

/// Packing from the checkpoint's matrices, split across the pool.
enum Packing {
    /// Pack a bitsandbytes 4-bit matrix into `base` (layout.span bytes); returns the
    /// description with its table and output scale.
    static func pack(q4 source: mk_q4_matrix, layout: PackedLayout, into base: UnsafeMutableRawPointer,
                     pool: ComputePool) -> mk_packed_matrix {
        var source = source
        var m = layout.matrix(at: base)
        let table = withUnsafeBytes(of: source.table) { Array($0.bindMemory(to: Float.self)) }
        var lut = [UInt8](repeating: 0, count: 16)
        m.out_scale = mk_q8_lut(table, &lut)
        withUnsafeMutableBytes(of: &m.lut) { $0.copyBytes(from: lut) }
        let codes = UnsafeMutablePointer(mutating: m.codes!), scales = UnsafeMutablePointer(mutating: m.scales!)
        let rowScales = UnsafeMutablePointer(mutating: m.row_scales!)
        split(panels: Int(mk_packed_panels(source.rows)), pool: pool, scratchBytes: Int(mk_packed_scratch_bytes(source.cols))) {
            _, range, scratch in
            mk_pack_q4(&source, Int64(range.lowerBound), Int64(range.upperBound), codes, scales, rowScales, scratch)
        }
        return m
    }

    /// Pack a dense matrix into `base` (layout.span bytes): int8, or 4 bits (the high
    /// nibble of the int8 weights) for a first pass that is rescored.
    static func pack(dense source: mk_dense_matrix, layout: PackedLayout, into base: UnsafeMutableRawPointer,
                     pool: ComputePool) -> mk_packed_matrix {
        var source = source
        var m = layout.matrix(at: base)
        let panels = Int(mk_packed_panels(source.rows)), cols = Int(source.cols)
        // rows as float32, and for 4 bits the panel packed as int8 first
        let floatBytes = 16 * cols * 4, scratchBytes = floatBytes + (layout.bits == 4 ? 16 * cols : 0)
        m.out_scale = 1
        let codes = UnsafeMutablePointer(mutating: m.codes!), scales = UnsafeMutablePointer(mutating: m.scales!)
        let rowScales = UnsafeMutablePointer(mutating: m.row_scales!)
        if layout.bits == 4 { withUnsafeMutableBytes(of: &m.lut) { mk_dense_q4_lut($0.baseAddress!.assumingMemoryBound(to: UInt8.self)) } }
        split(panels: panels, pool: pool, scratchBytes: scratchBytes) { _, range, scratch in
            let floats = scratch.assumingMemoryBound(to: Float.self)
            if layout.bits == 4 {
                mk_pack_dense_q4(&source, Int64(range.lowerBound), Int64(range.upperBound), codes, scales, rowScales, floats,
                                 (scratch + floatBytes).assumingMemoryBound(to: UInt8.self))
            } else {
                mk_pack_dense_q8(&source, Int64(range.lowerBound), Int64(range.upperBound), codes, scales, rowScales, floats)
            }
        }
        return m
    }

    /// Panels per task (about four tasks a thread) and the number of tasks.
    private static func chunking(panels: Int, pool: ComputePool) -> (chunk: Int, tasks: Int) {
        let chunk = max(1, (panels + pool.threads * 4 - 1) / (pool.threads * 4))
        return (chunk, (panels + chunk - 1) / chunk)
    }

    /// Run body(task, panels, scratch) on contiguous panel ranges across the pool,
    /// each task with its own scratch.
    private static func split(panels: Int, pool: ComputePool, scratchBytes: Int,
                              _ body: (Int, Range<Int>, UnsafeMutableRawPointer) -> Void) {
        let (chunk, tasks) = chunking(panels: panels, pool: pool)
        let stride = (scratchBytes + 63) / 64 * 64
        let scratch = UnsafeMutableRawPointer.allocate(byteCount: stride * tasks, alignment: 64)
        defer { scratch.deallocate() }
        pool.parallelFor(tasks) { i in body(i, i * chunk..<min(panels, (i + 1) * chunk), scratch + i * stride) }
    }
}

/// Anonymous memory for packed weights when no cache file can be used, in transparent
/// huge pages where the kernel allows (THP "madvise" mode is common).
final class HugePageMemory: @unchecked Sendable {
    let base: UnsafeMutableRawPointer
    private let mapping: UnsafeMutableRawPointer
    private let length: Int

    init?(bytes: Int) {
        let huge = 2 << 20
        length = (max(bytes, 1) + huge - 1) / huge * huge + huge
        guard let mapped = mmap(nil, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
              mapped != MAP_FAILED else { return nil }
        mapping = mapped
        base = UnsafeMutableRawPointer(bitPattern: (Int(bitPattern: mapped) + huge - 1) / huge * huge)!
        _ = madvise(base, length - huge, MADV_HUGEPAGE)
    }

    deinit { munmap(mapping, length) }
}
