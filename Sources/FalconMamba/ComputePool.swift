#if canImport(Glibc)
import Glibc
#endif
import CKernels
import COpenBLAS
import Synchronization

/// The threads every matrix product and scan is split across: created once, reused
/// for every call. One job runs at a time; concurrent callers take turns per job.
public final class ComputePool: @unchecked Sendable {
    public let threads: Int
    private let pool: OpaquePointer
    private let turn = Mutex(())

    /// A pool on `threads` threads in all (the calling thread is one of them).
    public init(threads: Int) {
        pool = mk_pool_create(Int32(max(1, threads)))
        // fewer if the system would not start them all: forEachThread covers exactly these
        self.threads = Int(mk_pool_threads(pool))
        // We split work ourselves; OpenBLAS must not start threads of its own on top.
        openblas_set_num_threads(1)
    }

    deinit { mk_pool_destroy(pool) }

    /// One pool for the process: MAMBAD_THREADS threads, or one per available core.
    public static let shared: ComputePool = {
        if let text = getenv("MAMBAD_THREADS"), let n = Int(String(cString: text)), n > 0 {
            return ComputePool(threads: n)
        }
        return ComputePool(threads: Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
    }()

    /// Runs the calling thread at the lowest CPU priority (nice 19), for background work
    /// that must not slow requests down; false where the system refused.
    @discardableResult
    public static func lowerCallingThreadPriority() -> Bool { mk_thread_set_nice(19) == 0 }

    /// The instruction set the kernels run on ("avx512", "avx2", "scalar"), and the
    /// fast path's int8 kernel ("avx512-vnni", "avx2" or "scalar").
    public static var instructionSet: String { String(cString: mk_isa()) + ", int8 " + String(cString: mk_q8_path()) }

    /// How the decode products prefetch their weights, for the whole process; nil (the
    /// default): each model chooses on its own decode steps (PrefetchTuner).
    /// MAMBAD_PREFETCH (`0`, `BYTES`, `l2:BYTES`, `nta:BYTES`) fixes it from the start.
    public static var fixedPrefetch: PrefetchPlan? {
        get { mk_prefetch_fixed() != 0 ? PrefetchPlan.current : nil }
        set { mk_fix_prefetch(newValue.map { Int64($0.distance) } ?? -1, newValue?.level.kernelValue ?? Int32(MK_PREFETCH_L2)) }
    }

    /// body(i) for i in 0..<tasks, spread over the pool; returns when all are done.
    /// Tasks must be independent. Do not call parallelFor from inside a task.
    public func parallelFor(_ tasks: Int, _ body: (Int) -> Void) {
        guard tasks > 1, threads > 1 else {
            for i in 0..<tasks { body(i) }
            return
        }
        submit(body) { mk_pool_run(pool, Self.callTask, $0, Int64(tasks)) }
    }

    /// body(i) on thread i, for each of the pool's threads (the caller is thread 0).
    public func forEachThread(_ body: (Int) -> Void) {
        guard threads > 1 else { return body(0) }
        submit(body) { mk_pool_run_each(pool, Self.callTask, $0) }
    }

    /// task(context, i) on thread i, for each of the pool's threads (the caller is thread
    /// 0): `forEachThread` without a closure, for the decode products, which then
    /// allocate nothing.
    public func forEachThread(context: UnsafeMutableRawPointer, _ task: mk_task_fn) {
        guard threads > 1 else { return task(context, 0) }
        turn.withLock { _ in mk_pool_run_each(pool, task, context) }
    }

    /// task(context, i) for i in 0..<tasks, spread over the pool: `parallelFor` without a
    /// closure, for decode steps, which then allocate nothing.
    public func parallelFor(_ tasks: Int, context: UnsafeMutableRawPointer, _ task: mk_task_fn) {
        guard tasks > 1, threads > 1 else {
            for i in 0..<tasks { task(context, Int64(i)) }
            return
        }
        turn.withLock { _ in mk_pool_run(pool, task, context, Int64(tasks)) }
    }

    /// A job's closure, as the workers find it. A struct field holds the closure as it
    /// is (a bare `(Int) -> Void` in memory would need a reabstraction thunk).
    private struct Task {
        let body: (Int) -> Void
    }

    /// Runs `start` with a pointer to `body` (a `Task`) as the context of a pool job, one
    /// job at a time. The task lives on this stack frame and no closure captures a
    /// variable (that would box it on the heap); the one allocation left is the 32-byte
    /// thunk `withoutActuallyEscaping` wraps `body` in, which is why decode steps use
    /// `forEachThread(context:_:)` and `parallelFor(_:context:_:)` instead.
    private func submit(_ body: (Int) -> Void, _ start: (UnsafeMutableRawPointer) -> Void) {
        withoutActuallyEscaping(body) { body in
            var task = Task(body: body)
            withUnsafeMutablePointer(to: &task) { task in
                turn.withLock { _ in start(UnsafeMutableRawPointer(task)) }
            }
        }
    }

    /// A pool task: calls the `Task` that `context` points to.
    private static let callTask: mk_task_fn = { context, index in
        context!.assumingMemoryBound(to: Task.self).pointee.body(Int(index))
    }

    /// Split 0..<count into contiguous ranges (multiples of `granularity`), about
    /// `perThread` per thread, and run body on each in parallel.
    func parallelRanges(_ count: Int, granularity: Int = 1, perThread: Int = 4, _ body: (Range<Int>) -> Void) {
        let (chunk, tasks) = rangeChunks(count, granularity: granularity, perThread: perThread)
        parallelFor(tasks) { i in body(i * chunk..<min(count, (i + 1) * chunk)) }
    }

    /// How `parallelRanges` splits 0..<count: task i takes i * chunk..<(i + 1) * chunk.
    func rangeChunks(_ count: Int, granularity: Int = 1, perThread: Int = 4) -> (chunk: Int, tasks: Int) {
        let pieces = max(1, min(threads * perThread, count / max(granularity, 1)))
        var chunk = (count + pieces - 1) / pieces
        chunk = (chunk + granularity - 1) / granularity * granularity
        return (chunk, (count + chunk - 1) / chunk)
    }
}
