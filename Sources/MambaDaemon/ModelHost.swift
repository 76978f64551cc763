import FalconMamba
import Foundation
import Logging
import MambaRPC
import Synchronization
import Tokenizer

/// The loaded model with what serves it: tokenizer, scheduler, and its description.
struct Engine: Sendable {
    /// The model serving now: the scheduler's (which a first start replaces once the
    /// packed weights are made).
    var model: FalconMambaModel { scheduler.currentModel }
    let tokenizer: Tokenizer?
    let scheduler: Scheduler
    let info: ModelInfo

    /// Loads the checkpoint (mmap) and its tokenizer, runs one token through every layer
    /// (so the first request does not pay for paging the weights in), starts the
    /// scheduler thread and waits for one round trip through it. `phase` hears each step.
    static func load(_ config: DaemonConfiguration, logger: Logger, phase: (String) -> Void = { _ in }) throws -> Engine {
        guard let directory = config.model else { throw ServeError.noModel }
        let pool = config.threads > 0 ? ComputePool(threads: config.threads) : ComputePool.shared
        if let plan = config.prefetch { ComputePool.fixedPrefetch = plan }
        phase(config.precision == "exact" ? "mapping the model: \(directory)"
                  : "mapping the model and its packed weights: \(directory)")
        let precision: Precision = config.precision == "exact" ? .exact : .fast
        let cache = config.packedCache.map(PackedWeightsCache.init)
        // Packed weights not made yet (a first start): serve at once with the exact
        // kernels, and pack on another thread (below).
        let model = try FalconMambaModel(directory: directory, precision: precision, lmHead: config.lmHead, pool: pool,
                                         cache: cache, deferPacking: true)
        Self.logPacking(model, logger: logger)
        phase("reading the tokenizer")
        let tokenizer = Self.tokenizer(directory: directory, vocabSize: model.vocabSize, logger: logger)
        phase("warming up: one token through all \(model.layerCount) layers")
        var state = model.newState()
        let token = model.config.bosTokenId.flatMap { (0..<model.vocabSize).contains($0) ? $0 : nil } ?? 0
        _ = try model.decodeStep(token, state: &state)
        phase("starting the scheduler")
        let scheduler = Scheduler(model: model, tokenizer: tokenizer,
                                  limits: .init(maxActive: config.maxActive, maxQueue: config.maxQueue,
                                                prefillChunk: config.prefillChunk, cacheBytes: config.cacheBytes),
                                  logger: logger)
        scheduler.start()
        guard scheduler.heartbeat(timeout: .seconds(30)) else { throw ServeError.schedulerSilent }
        if model.packingDeferred {
            logger.info("serving with the exact kernels while the packed weights are made")
            let thread = Thread {
                // One thread at the lowest priority: requests keep both cores, packing
                // takes what they leave (all of it while the daemon is idle).
                ComputePool.lowerCallingThreadPriority()
                do {
                    let packed = try FalconMambaModel(directory: directory, precision: precision, lmHead: config.lmHead,
                                                      pool: pool, cache: cache, packingPool: ComputePool(threads: 1))
                    scheduler.replaceModel(packed)
                    Self.logPacking(packed, logger: logger)  // once requests sent from now on get the packed weights
                } catch {
                    logger.error("packing the weights failed: the exact kernels keep serving", metadata: ["error": "\(error)"])
                }
            }
            thread.name = "mambad-packing"
            thread.start()
        }
        return Engine(tokenizer: tokenizer, scheduler: scheduler, info: Self.describe(model, directory: directory))
    }

    static func logPacking(_ model: FalconMambaModel, logger: Logger) {
        switch model.packSource {
        case .none: break
        case .cacheFile(let path):
            logger.info("packed weights mapped from the cache",
                        metadata: ["file": "\(path)", "pages": "\(model.packedPages?.description ?? "?")"])
        case .packed(let path): logger.info("weights packed for the fast path", metadata: ["saved": "\(path ?? "no (in memory)")"])
        }
    }

    /// The folder's own tokenizer.json, else the bundled Falcon one when the vocabularies
    /// agree, else none (prompts must then be token ids).
    static func tokenizer(directory: String, vocabSize: Int, logger: Logger) -> Tokenizer? {
        let own = URL(fileURLWithPath: directory).appendingPathComponent("tokenizer.json")
        if FileManager.default.fileExists(atPath: own.path) {
            do { return try Tokenizer(contentsOf: own) } catch {
                logger.warning("tokenizer.json not usable, text methods disabled", metadata: ["error": "\(error)"])
                return nil
            }
        }
        if let falcon = try? Tokenizer.falcon(), falcon.vocabSize == vocabSize { return falcon }
        logger.warning("no tokenizer for this vocabulary: prompts must be token ids")
        return nil
    }

    static func describe(_ model: FalconMambaModel, directory: String) -> ModelInfo {
        let c = model.config
        let quantization: String = if let q = c.quantization, q.loadIn4bit == true, let type = q.quantType { type.lowercased() }
            else { (c.torchDType ?? "float32").replacingOccurrences(of: "bfloat16", with: "bf16")
                .replacingOccurrences(of: "float16", with: "f16").replacingOccurrences(of: "float32", with: "f32") }
        let url = URL(fileURLWithPath: directory).standardizedFileURL
        return ModelInfo(name: url.lastPathComponent, path: url.path, quantization: quantization, parameters: c.parameterCount,
                         vocabSize: model.vocabSize, hiddenSize: model.hiddenSize, layers: model.layerCount,
                         stateSize: model.stateSize, bosTokenId: c.bosTokenId, eosTokenId: c.eosTokenId,
                         mappedBytes: model.checkpoint.mappedBytes, stateBytesPerSequence: c.stateBytesPerSequence)
    }
}

/// The daemon's life: loading, then ready with an engine, then draining.
final class ModelHost: Sendable {
    enum State: Sendable {
        case loading
        case ready(Engine)
        case draining(Engine?)
    }

    private let state = Mutex(State.loading)
    let started = ContinuousClock.now

    var engine: Engine? {
        state.withLock { s in
            switch s {
            case .loading: nil
            case .ready(let e): e
            case .draining(let e): e
            }
        }
    }

    var current: State { state.withLock { $0 } }

    func ready(_ engine: Engine) {
        state.withLock { s in if case .loading = s { s = .ready(engine) } }
    }

    /// Returns the engine to drain, if any; later calls return nil.
    func beginDraining() -> (first: Bool, engine: Engine?) {
        state.withLock { s in
            switch s {
            case .loading: s = .draining(nil); return (true, nil)
            case .ready(let e): s = .draining(e); return (true, e)
            case .draining(let e): return (false, e)
            }
        }
    }

    /// `status`: counters from the scheduler, memory from /proc.
    func status() -> StatusResult {
        let current = self.current
        let (stateName, engine): (StatusResult.State, Engine?) = switch current {
        case .loading: (.loading, nil)
        case .ready(let e): (.ready, e)
        case .draining(let e): (.draining, e)
        }
        var result = StatusResult(state: stateName, uptimeSeconds: (ContinuousClock.now - started).seconds,
                                  model: engine.map { .init(name: $0.info.name, path: $0.info.path, quantization: $0.info.quantization) })
        if let engine {
            let counters = engine.scheduler.counters
            result.requests = counters.requests
            result.cache = counters.cache
            result.engine = counters.engine
            result.memory.mappedBytes = engine.info.mappedBytes
        }
        result.memory.rssBytes = Self.residentBytes()
        return result
    }

    /// Resident set size from /proc/self/statm (pages).
    static func residentBytes() -> Int {
        guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
        let fields = text.split(separator: " ")
        guard fields.count > 1, let pages = Int(fields[1]) else { return 0 }
        return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
    }
}

public enum ServeError: Error, CustomStringConvertible {
    case noModel
    case alreadyRunning(String)
    case notASocket(String)
    case socket(String)
    case schedulerSilent

    public var description: String {
        switch self {
        case .noModel: "no model: give --model DIR or set model = DIR in the config file"
        case .alreadyRunning(let path): "another mambad is already answering on \(path)"
        case .notASocket(let path): "\(path) exists and is not a socket; refusing to remove it"
        case .socket(let why): why
        case .schedulerSilent: "the scheduler thread did not answer within 30 s of starting"
        }
    }
}
