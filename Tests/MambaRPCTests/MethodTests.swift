import FoundationEssentials
import MambaRPC
import Testing

/// Golden JSON for every method's params and result, both ways.
@Suite struct MethodTests {
    func decode<P: Decodable>(_ type: P.Type, _ json: String) throws(RPCError) -> P {
        let value = try! JSONDecoder().decode(JSONValue.self, from: Data(json.utf8))
        return try RPCParams.decode(type, from: value)
    }
    func json(_ value: some Encodable) -> String { String(decoding: try! WireJSON.encode(value), as: UTF8.self) }

    func expectInvalid<P: Decodable>(_ type: P.Type, _ text: String, field: String, sourceLocation: SourceLocation = #_sourceLocation) {
        do {
            _ = try decode(type, text)
            Issue.record("accepted \(text)", sourceLocation: sourceLocation)
        } catch {
            #expect(error.code == -32602, sourceLocation: sourceLocation)
            #expect(error.data?["field"] == .string(field), "\(error)", sourceLocation: sourceLocation)
        }
    }

    @Test func completeParamsDefaultsAndGolden() throws {
        let p = try decode(CompleteParams.self, #"{"prompt":"def f(","unknown":1}"#)
        #expect(p.prompt == "def f(")
        #expect(p.maxTokens == 64 && p.temperature == 0 && p.topP == 1 && p.repeatLastN == 64 && p.cache && !p.stream)
        #expect(json(p) == #"{"cache":true,"logprobs":0,"maxTokens":64,"minP":0,"prompt":"def f(","repeatLastN":64,"repeatPenalty":1,"singleLine":false,"stop":[],"stream":false,"temperature":0,"topK":0,"topP":1}"#)
        let full = try decode(CompleteParams.self, #"{"tokens":[1,2],"maxTokens":0,"temperature":0.5,"topK":40,"topP":0.9,"minP":0.05,"repeatPenalty":1.1,"repeatLastN":32,"seed":18446744073709551615,"stop":["\n\n"],"singleLine":true,"stream":true,"logprobs":3,"deadlineMs":500,"cache":false,"session":"file:///a.swift"}"#)
        #expect(full.tokens == [1, 2] && full.maxTokens == 0 && full.seed == UInt64.max && full.stop == ["\n\n"])
        #expect(full.singleLine && full.stream && full.logprobs == 3 && full.deadlineMs == 500 && !full.cache)
        #expect(full.session == "file:///a.swift" && full.topK == 40 && full.minP == 0.05)
    }

    @Test func completeParamsErrorsNameTheField() {
        expectInvalid(CompleteParams.self, #"{"prompt":"x","maxTokens":-1}"#, field: "maxTokens")
        expectInvalid(CompleteParams.self, #"{"prompt":"x","maxTokens":"many"}"#, field: "maxTokens")
        expectInvalid(CompleteParams.self, #"{"prompt":"x","maxTokens":1.5}"#, field: "maxTokens")
        expectInvalid(CompleteParams.self, #"{"prompt":"x","temperature":-1}"#, field: "temperature")
        expectInvalid(CompleteParams.self, #"{"prompt":"x","topP":0}"#, field: "topP")
        expectInvalid(CompleteParams.self, #"{"prompt":"x","stop":[""]}"#, field: "stop[0]")
        expectInvalid(CompleteParams.self, #"{"prompt":"x","stop":"\n"}"#, field: "stop")
        expectInvalid(CompleteParams.self, #"{"prompt":"x","tokens":[1]}"#, field: "prompt")
        expectInvalid(CompleteParams.self, #"{}"#, field: "tokens")
        expectInvalid(CompleteParams.self, #"{"prompt":"x","logprobs":21}"#, field: "logprobs")
        expectInvalid(CompleteParams.self, #"{"prompt":"x","deadlineMs":0}"#, field: "deadlineMs")
        expectInvalid(CompleteParams.self, #"{"tokens":[1,"a"]}"#, field: "tokens[1]")
        do { _ = try RPCParams.decode(CompleteParams.self, from: .array([])); Issue.record("array params") }
        catch { #expect(error.code == -32602) }
    }

    @Test func tokenizeAndDetokenize() throws {
        let t = try decode(TokenizeParams.self, #"{"text":"Hi","pieces":true}"#)
        #expect(t == TokenizeParams(text: "Hi", addSpecialTokens: false, pieces: true))
        #expect(json(t) == #"{"addSpecialTokens":false,"pieces":true,"text":"Hi"}"#)
        expectInvalid(TokenizeParams.self, #"{}"#, field: "text")
        #expect(json(TokenizeResult(tokens: [1, 2])) == #"{"tokens":[1,2]}"#)
        #expect(json(TokenizeResult(tokens: [1], pieces: ["�"])) == #"{"pieces":["�"],"tokens":[1]}"#)
        let d = try decode(DetokenizeParams.self, #"{"tokens":[5,6]}"#)
        #expect(d == DetokenizeParams(tokens: [5, 6]))
        #expect(json(d) == #"{"skipSpecialTokens":false,"tokens":[5,6]}"#)
        expectInvalid(DetokenizeParams.self, #"{"tokens":"5"}"#, field: "tokens")
        #expect(json(DetokenizeResult(text: "x")) == #"{"text":"x"}"#)
    }

    @Test func embed() throws {
        let one = try decode(EmbedParams.self, #"{"input":"a"}"#)
        #expect(one.input == ["a"] && one.single && one.pooling == .mean && one.normalize)
        #expect(json(one) == #"{"input":"a","normalize":true,"pooling":"mean"}"#)
        let many = try decode(EmbedParams.self, #"{"input":["a","b"],"pooling":"last","normalize":false}"#)
        #expect(many.input == ["a", "b"] && !many.single && many.pooling == .last && !many.normalize)
        expectInvalid(EmbedParams.self, #"{"input":"a","pooling":"max"}"#, field: "pooling")
        expectInvalid(EmbedParams.self, #"{"input":[]}"#, field: "input")
        expectInvalid(EmbedParams.self, #"{}"#, field: "input")
        let result = EmbedResult(embeddings: [[0.5, -0.25]], dimensions: 2, usage: .init(promptTokens: 3))
        let golden = #"{"dimensions":2,"embeddings":[[0.5,-0.25]],"usage":{"promptTokens":3}}"#
        #expect(String(decoding: result.json, as: UTF8.self) == golden)
        #expect(json(result) == golden)
        #expect(try WireJSON.decode(EmbedResult.self, from: Data(golden.utf8)) == result)
    }

    @Test func infoInitializeStatusCancel() throws {
        let info = ModelInfo(name: "m", path: "/m", quantization: "nf4", parameters: 10, vocabSize: 65024, hiddenSize: 32,
                             layers: 2, stateSize: 16, bosTokenId: 11, eosTokenId: 11, mappedBytes: 100, stateBytesPerSequence: 40)
        let infoJSON = #"{"architecture":"falcon_mamba","bosTokenId":11,"eosTokenId":11,"hiddenSize":32,"layers":2,"mappedBytes":100,"name":"m","parameters":10,"path":"/m","quantization":"nf4","stateBytesPerSequence":40,"stateSize":16,"vocabSize":65024}"#
        #expect(json(info) == infoJSON)
        let initialize = InitializeResult(serverInfo: .init(name: "mambad", version: "0.1.0"), model: info)
        #expect(json(initialize) == #"{"capabilities":{"framing":["lsp","ndjson"],"methods":["initialize","model/info","tokenize","detokenize","complete","embed","status","$/cancelRequest","shutdown","exit"],"streaming":true},"model":"# + infoJSON + #","serverInfo":{"name":"mambad","version":"0.1.0"}}"#)
        let p = try decode(InitializeParams.self, #"{"processId":1,"clientInfo":{"name":"nvim"},"capabilities":{}}"#)
        #expect(p.clientInfo?.name == "nvim")
        var status = StatusResult(state: .ready, uptimeSeconds: 1.5, model: .init(name: "m", path: "/m", quantization: "nf4"))
        status.requests.completed = 2
        #expect(json(status) == #"{"cache":{"bytes":0,"entries":0,"hits":0,"misses":0},"engine":{"batchedSequences":0,"decodeSteps":0,"generatedTokens":0,"prefillTokens":0},"memory":{"mappedBytes":0,"rssBytes":0},"model":{"name":"m","path":"/m","quantization":"nf4"},"requests":{"active":0,"cancelled":0,"completed":2,"failed":0,"queued":0},"state":"ready","uptimeSeconds":1.5}"#)
        #expect(try decode(CancelParams.self, #"{"id":"r1"}"#) == CancelParams(id: .string("r1")))
        #expect(try decode(CancelParams.self, #"{"id":4}"#) == CancelParams(id: .number(4)))
    }
}
