import FalconMamba
import MambaRPC

/// The methods of PROTOCOL.md, run on the connection's queue. Quick ones answer here;
/// `complete` and `embed` become scheduler jobs that answer when they end.
extension ClientConnection {
    func handleNotification(_ method: String, params: JSONValue?) {
        switch method {
        case RPCMethod.cancelRequest:
            guard let cancel = try? RPCParams.decode(CancelParams.self, from: params) else { return }
            if let job = inflight.withLock({ $0[cancel.id] }) {
                logger.info("cancel requested", metadata: ["req": "\(cancel.id)"])
                job.cancel(.request)
            }
        case RPCMethod.exit:
            close()
        default:
            break  // `initialized` and unknown notifications are ignored
        }
    }

    func handleRequest(id: RPCID, method: String, params: JSONValue?, slot: Slot,
                       receivedAt: ContinuousClock.Instant) throws(RPCError) {
        switch method {
        case RPCMethod.status:
            reply(RPCOutbound.response(id: id, result: context.host.status()), to: slot)
        case RPCMethod.shutdown:
            reply(RPCOutbound.response(id: id, rawResult: Array("null".utf8)), to: slot)
        case RPCMethod.initialize:
            _ = try RPCParams.decode(InitializeParams.self, from: params)
            let engine = try readyEngine()
            reply(RPCOutbound.response(id: id, result: InitializeResult(
                serverInfo: .init(name: "mambad", version: context.version), model: engine.info)), to: slot)
        case RPCMethod.modelInfo:
            reply(RPCOutbound.response(id: id, result: try readyEngine().info), to: slot)
        case RPCMethod.tokenize:
            let p = try RPCParams.decode(TokenizeParams.self, from: params)
            let tokenizer = try textTokenizer(field: "text")
            let tokens = tokenizer.encode(p.text, addSpecialTokens: p.addSpecialTokens)
            let pieces = p.pieces ? (try? tokenizer.pieces(tokens)) : nil
            reply(RPCOutbound.response(id: id, result: TokenizeResult(tokens: tokens, pieces: pieces)), to: slot)
        case RPCMethod.detokenize:
            let p = try RPCParams.decode(DetokenizeParams.self, from: params)
            let tokenizer = try textTokenizer(field: "tokens")
            try checkVocabulary(p.tokens, size: tokenizer.vocabSize, field: "tokens")
            do {
                let text = try tokenizer.decode(p.tokens, skipSpecialTokens: p.skipSpecialTokens)
                reply(RPCOutbound.response(id: id, result: DetokenizeResult(text: text)), to: slot)
            } catch {
                throw .invalidParams(field: "tokens", reason: "\(error)")
            }
        case RPCMethod.complete:
            try startCompletion(id: id, params: params, slot: slot, receivedAt: receivedAt)
        case RPCMethod.embed:
            try startEmbedding(id: id, params: params, slot: slot, receivedAt: receivedAt)
        default:
            throw .methodNotFound(method)
        }
    }

    private func readyEngine() throws(RPCError) -> Engine {
        switch context.host.current {
        case .loading: throw .notReady()
        case .ready(let engine): return engine
        case .draining(let engine?): return engine
        case .draining(nil): throw .notReady("the daemon is shutting down")
        }
    }

    private func textTokenizer(field: String) throws(RPCError) -> Tokenizer {
        guard let tokenizer = try readyEngine().tokenizer else {
            throw .invalidParams(field: field, reason: "this model has no tokenizer: use token ids")
        }
        return tokenizer
    }

    private func checkVocabulary(_ tokens: [Int], size: Int, field: String) throws(RPCError) {
        if let bad = tokens.firstIndex(where: { $0 < 0 || $0 >= size }) {
            throw .invalidParams(field: "\(field)[\(bad)]", reason: "\(tokens[bad]) is outside the vocabulary [0, \(size))")
        }
    }

    private func startCompletion(id: RPCID, params: JSONValue?, slot: Slot, receivedAt: ContinuousClock.Instant) throws(RPCError) {
        let p = try RPCParams.decode(CompleteParams.self, from: params)
        let engine = try readyEngine()
        let limits = context.configuration
        guard p.maxTokens <= limits.maxCompletionTokens else {
            throw .invalidParams(field: "maxTokens", reason: "must be at most \(limits.maxCompletionTokens)")
        }
        var prompt: [Int]
        if let tokens = p.tokens {
            try checkVocabulary(tokens, size: engine.model.vocabSize, field: "tokens")
            prompt = tokens
        } else {
            let text = p.prompt ?? ""
            guard text.utf8.count <= limits.maxPromptTokens * 64 else { throw .tooLarge("the prompt", limit: limits.maxPromptTokens) }
            prompt = try textTokenizer(field: "prompt").encode(text, addSpecialTokens: true)
        }
        if prompt.isEmpty {
            // An empty buffer: continue from the start-of-text token.
            guard let bos = engine.model.config.bosTokenId ?? engine.model.config.eosTokenId else {
                throw .invalidParams(field: p.tokens == nil ? "prompt" : "tokens", reason: "has no tokens")
            }
            prompt = [bos]
        }
        guard prompt.count <= limits.maxPromptTokens else { throw .tooLarge("the prompt", limit: limits.maxPromptTokens) }

        let request = CompletionRequest(prompt: prompt, params: p, seed: p.seed ?? UInt64.random(in: .min ... .max))
        let job = Job(work: .complete(request), label: "\(number)/\(id)", received: receivedAt,
                      deadline: p.deadlineMs.map { receivedAt + .milliseconds($0) },
                      onProgress: { [self] text, tokens in
                          queue.async { self.notify(RPCMethod.completeProgress, params: CompleteProgress(id: id, text: text, tokens: tokens)) }
                      },
                      onFinish: { [self] job, outcome in
                          if let session = p.session { context.sessions.finished(session, job) }
                          queue.async { self.finished(job, id: id, outcome: outcome, slot: slot) }
                      })
        try submit(job, id: id, session: p.session, engine: engine)
    }

    private func startEmbedding(id: RPCID, params: JSONValue?, slot: Slot, receivedAt: ContinuousClock.Instant) throws(RPCError) {
        let p = try RPCParams.decode(EmbedParams.self, from: params)
        let engine = try readyEngine()
        let tokenizer = try textTokenizer(field: "input")
        var inputs: [[Int]] = []
        var total = 0
        for (i, text) in p.input.enumerated() {
            let tokens = tokenizer.encode(text, addSpecialTokens: true)
            guard !tokens.isEmpty else { throw .invalidParams(field: p.single ? "input" : "input[\(i)]", reason: "has no tokens") }
            total += tokens.count
            guard total <= context.configuration.maxPromptTokens else {
                throw .tooLarge("the input", limit: context.configuration.maxPromptTokens)
            }
            inputs.append(tokens)
        }
        let job = Job(work: .embed(EmbeddingRequest(inputs: inputs, pooling: p.pooling, normalize: p.normalize)),
                      label: "\(number)/\(id)", received: receivedAt,
                      onFinish: { [self] job, outcome in queue.async { self.finished(job, id: id, outcome: outcome, slot: slot) } })
        try submit(job, id: id, session: nil, engine: engine)
    }

    private func submit(_ job: Job, id: RPCID, session: String?, engine: Engine) throws(RPCError) {
        inflight.withLock { $0[id] = job }
        if let session { context.sessions.supersede(session, with: job) }
        do {
            try engine.scheduler.submit(job)
        } catch {
            inflight.withLock { if $0[id] === job { $0[id] = nil } }
            if let session { context.sessions.finished(session, job) }
            throw error
        }
    }

    private func finished(_ job: Job, id: RPCID, outcome: JobOutcome, slot: Slot) {
        inflight.withLock { if $0[id] === job { $0[id] = nil } }
        switch outcome {
        case .completion(let result):
            reply(RPCOutbound.response(id: id, rawResult: result.json), to: slot)
        case .embedding(let result):
            reply(RPCOutbound.response(id: id, rawResult: result.json), to: slot)
        case .failure(let error):
            reply(RPCOutbound.error(id: id, error), to: slot)
        case .dropped:
            reply([], to: slot)  // keeps the count of pending replies; nothing reaches the dead socket
        }
    }
}

import Tokenizer
