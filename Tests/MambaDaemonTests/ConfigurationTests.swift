import FalconMamba
@testable import MambaDaemon
import Testing

@Suite struct ConfigurationTests {
    @Test func fileThenFlagsLaterWins() throws {
        var c = DaemonConfiguration(environment: ["XDG_RUNTIME_DIR": "/run/user/1000"])
        #expect(c.socket == "/run/user/1000/mambad.sock")
        let file = """
            # mambad settings
            [daemon]
            model = "/srv/models/falcon-mamba-7b-4bit"   # the checkpoint
            socket = /run/mambad/mambad.sock
            socket_mode = 0600
            cache-bytes = 512M
            max-queue = 8
            log-level = debug
            lm-head = 4bit
            prefetch = 4K
            """
        try c.apply(DaemonConfiguration.parseFile(file, source: "test.conf"), source: "test.conf")
        #expect(c.model == "/srv/models/falcon-mamba-7b-4bit")
        #expect(c.socket == "/run/mambad/mambad.sock")
        #expect(c.socketMode == 0o600)
        #expect(c.cacheBytes == 512 << 20)
        #expect(c.maxQueue == 8)
        #expect(c.logLevel == .debug)
        #expect(c.lmHead == .rescored4bit)
        #expect(c.prefetch == PrefetchPlan(distance: 4096, level: .l2))
        try c.apply([("max-queue", "2"), ("prefetch", "auto")], source: "flags")
        #expect(c.maxQueue == 2)
        #expect(c.prefetch == nil)
        try c.apply([("prefetch", "0")], source: "flags")
        #expect(c.prefetch == PrefetchPlan.off)
        try c.apply([("prefetch", "nta:6144")], source: "flags")
        #expect(c.prefetch == PrefetchPlan.nonTemporal)
    }

    @Test func badSettingsAreNamed() {
        var c = DaemonConfiguration()
        #expect(throws: ConfigurationError.unknownKey(source: "f:1", key: "colour")) {
            try DaemonConfiguration.parseFile("colour = blue", source: "f")
        }
        #expect(throws: ConfigurationError.malformedLine(source: "f", line: 2, text: "oops")) {
            try DaemonConfiguration.parseFile("\noops", source: "f")
        }
        #expect(throws: ConfigurationError.self) { try c.apply([("max-queue", "-1")], source: "flags") }
        #expect(throws: ConfigurationError.self) { try c.apply([("precision", "fuzzy")], source: "flags") }
        #expect(throws: ConfigurationError.badValue(source: "flags", key: "lm-head", value: "2bit", expected: "int8 or 4bit")) {
            try c.apply([("lm-head", "2bit")], source: "flags")
        }
        #expect(throws: ConfigurationError.self) { try c.apply([("socket-mode", "999")], source: "flags") }
        #expect(throws: ConfigurationError.badValue(source: "flags", key: "prefetch", value: "1M", expected: "auto, or bytes from 0 to 64K, optionally l2: or nta: before them")) {
            try c.apply([("prefetch", "1M")], source: "flags")
        }
        #expect(throws: ConfigurationError.self) { try c.apply([("prefetch", "soon")], source: "flags") }
    }
}
