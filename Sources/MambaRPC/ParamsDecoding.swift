import FoundationEssentials

/// Turns a request's `params` into its typed struct, with every failure as -32602
/// naming the field: a wrong type, a missing field, or a value out of range (the
/// structs' own checks throw `RPCError` directly).
public enum RPCParams {
    public static func decode<P: Decodable>(_ type: P.Type, from params: JSONValue?) throws(RPCError) -> P {
        let value = params ?? .object([:])
        guard value.isObject else { throw .invalidParams(field: "", reason: "must be an object") }
        do {
            let data = try WireJSON.encode(value)
            return try JSONDecoder().decode(type, from: data)
        } catch let error as RPCError {
            throw error
        } catch let DecodingError.typeMismatch(expected, context) {
            throw .invalidParams(field: path(context), reason: "must be \(describe(expected))")
        } catch let DecodingError.valueNotFound(expected, context) {
            throw .invalidParams(field: path(context), reason: "must be \(describe(expected)), not null")
        } catch let DecodingError.keyNotFound(key, context) {
            throw .invalidParams(field: path(context, key), reason: "is required")
        } catch let DecodingError.dataCorrupted(context) {
            throw .invalidParams(field: path(context), reason: "is out of range or malformed")
        } catch {
            throw .invalidParams(field: "", reason: "could not be read: \(error)")
        }
    }

    static func path(_ context: DecodingError.Context, _ key: (any CodingKey)? = nil) -> String {
        var parts: [String] = []
        for k in context.codingPath + (key.map { [$0] } ?? []) {
            if let i = k.intValue { parts.append("[\(i)]") } else { parts.append((parts.isEmpty ? "" : ".") + k.stringValue) }
        }
        return parts.joined()
    }

    static func describe(_ type: Any.Type) -> String {
        switch type {
        case is String.Type: "a string"
        case is Bool.Type: "a boolean"
        case is Int.Type, is Int64.Type, is UInt64.Type: "an integer"
        case is Float.Type, is Double.Type: "a number"
        case is [Any].Type: "an array"
        default: "of type \(type)"
        }
    }
}

/// Range checks shared by the params structs: each throws -32602 naming the field.
enum Check {
    static func that(_ condition: Bool, _ field: String, _ reason: String) throws(RPCError) {
        if !condition { throw .invalidParams(field: field, reason: reason) }
    }
}

extension KeyedDecodingContainer {
    /// The field's value, or `fallback` when absent or null.
    func value<T: Decodable>(_ key: Key, or fallback: T) throws -> T {
        try optional(key) ?? fallback
    }

    /// The field's value or nil; a number that does not fit names the field (JSONDecoder's
    /// error for it leaves the key out of the coding path).
    func optional<T: Decodable>(_ key: Key) throws -> T? {
        do {
            return try decodeIfPresent(T.self, forKey: key)
        } catch let error where Self.isUnrepresentableNumber(error) {
            let field = RPCParams.path(DecodingError.Context(codingPath: codingPath + [key], debugDescription: ""))
            throw RPCError.invalidParams(field: field, reason: "is out of range or malformed")
        }
    }

    /// JSONDecoder reports a number that does not fit (1.5 for an Int) with an internal
    /// error type at this level, DecodingError.dataCorrupted without the key above it.
    static func isUnrepresentableNumber(_ error: any Error) -> Bool {
        if error is RPCError { return false }
        if case DecodingError.dataCorrupted = error { return true }
        return !(error is DecodingError)
    }
}
