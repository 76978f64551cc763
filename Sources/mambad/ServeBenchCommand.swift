import ArgumentParser
import Foundation
import MambaDaemon
import MambaRPC

struct ServeBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-serve",
        abstract: "Measure a running daemon: time to first token and tokens/s for N concurrent streams.",
        discussion: """
            For each N in --streams, N connections each send one streamed `complete` at the same time \
            (cache off, greedy, end-of-sequence ignored by prompt choice only); reported are the median \
            time to the first streamed token, the aggregate tokens/s (all tokens over the wall time from \
            the first request to the last reply) and the median per-stream decode tokens/s.
            """)

    @Option(help: ArgumentHelp("The daemon's socket.", valueName: "path"))
    var socket: String

    @Option(help: ArgumentHelp("Concurrent stream counts, comma separated.", valueName: "list"))
    var streams = "1,2,4,8"

    @Option(name: .customLong("max-tokens"), help: "Tokens per stream.")
    var maxTokens = 64

    @Option(help: "The prompt of each stream (stream i gets ' #i' appended, so prompts differ).")
    var prompt = "def fibonacci(n):\n    "

    @Option(help: "Runs per stream count; the median run is reported.")
    var repeats = 1

    @Flag(help: "Print one JSON object per stream count instead of a table.")
    var json = false

    struct StreamResult {
        var ttft: Double
        var tokens: Int
        var decodeSeconds: Double
        var end: Double
    }

    func run() throws {
        let counts = try streams.split(separator: ",").map { text in
            guard let n = Int(text), n > 0 else { throw ValidationError("bad --streams entry '\(text)'") }
            return n
        }
        // warm up: maps the weights into memory and fills the caches
        _ = try oneStream(index: 0, start: Date())
        if !json { print("streams  ttft_ms(median)  ttft_ms(max)  aggregate_tok/s  per_stream_tok/s(median)  wall_s") }
        for n in counts {
            var runs: [(ttft: Double, ttftMax: Double, aggregate: Double, perStream: Double, wall: Double)] = []
            for _ in 0..<repeats {
                let results = Mutex<[StreamResult]>([])
                let errors = Mutex<[String]>([])
                let start = Date()
                // one thread per stream (concurrentPerform would run only one per core)
                let group = DispatchGroup()
                for i in 0..<n {
                    group.enter()
                    Thread {
                        defer { group.leave() }
                        do {
                            let r = try oneStream(index: i, start: start)
                            results.withLock { $0.append(r) }
                        } catch {
                            errors.withLock { $0.append("\(error)") }
                        }
                    }.start()
                }
                group.wait()
                if let error = errors.withLock({ $0.first }) { throw ValidationError("stream failed: \(error)") }
                let all = results.withLock { $0 }
                let wall = all.map(\.end).max() ?? 0
                let ttfts = all.map(\.ttft).sorted()
                let rates = all.map { Double($0.tokens) / max($0.decodeSeconds, 1e-9) }.sorted()
                let tokens = all.reduce(0) { $0 + $1.tokens }
                runs.append((ttfts[ttfts.count / 2] * 1e3, (ttfts.last ?? 0) * 1e3, Double(tokens) / wall, rates[rates.count / 2], wall))
            }
            let r = runs.sorted { $0.aggregate < $1.aggregate }[runs.count / 2]
            if json {
                print(#"{"streams":\#(n),"ttftMsMedian":\#(fmt(r.ttft)),"ttftMsMax":\#(fmt(r.ttftMax)),"aggregateTokensPerSecond":\#(fmt(r.aggregate)),"perStreamTokensPerSecond":\#(fmt(r.perStream)),"wallSeconds":\#(fmt(r.wall))}"#)
            } else {
                print(String(format: "%7d  %15.1f  %12.1f  %15.2f  %24.2f  %6.2f", n, r.ttft, r.ttftMax, r.aggregate, r.perStream, r.wall))
            }
        }
    }

    func fmt(_ x: Double) -> String { String(format: "%.2f", x) }

    func oneStream(index: Int, start: Date) throws -> StreamResult {
        let client = try SocketClient(path: socket, timeoutSeconds: 600)
        let text = prompt + " #\(index)"
        let escaped = String(decoding: try JSONEncoder().encode(text), as: UTF8.self)
        try client.request("complete", id: 1, params: #"{"prompt":\#(escaped),"maxTokens":\#(maxTokens),"stream":true,"cache":false}"#)
        var first: Double?
        while true {
            let message = try client.receiveJSON()
            let now = Date().timeIntervalSince(start)
            if message["method"] != nil {
                if first == nil { first = now }
                continue
            }
            if let error = message["error"] { throw ValidationError("error reply: \(error)") }
            let result = message["result"]
            let tokens = result?["usage"]?["completionTokens"]?.int ?? 0
            let decodeMs = result?["timings"]?["decodeMs"]?.double ?? 0
            return StreamResult(ttft: first ?? now, tokens: tokens, decodeSeconds: decodeMs / 1e3, end: now)
        }
    }
}

import Synchronization
