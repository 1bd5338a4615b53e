import Foundation
import KilnCore
import KilnTestKit
import Testing

/// One hand-made bad input per rejection, with the offset, path and message asserted verbatim.
struct JSONRejection: CustomTestStringConvertible, Sendable {
    let name: String
    let input: [UInt8]
    let offset: Int
    let path: [String]
    let message: String

    init(_ name: String, _ input: [UInt8], at offset: Int, path: [String] = [], _ message: String) {
        self.name = name
        self.input = input
        self.offset = offset
        self.path = path
        self.message = message
    }

    init(_ name: String, _ text: String, at offset: Int, path: [String] = [], _ message: String) {
        self.init(name, Array(text.utf8), at: offset, path: path, message)
    }

    var testDescription: String { name }

    static let all: [JSONRejection] = [
        .init("empty input", "", at: 0, "expected a JSON value, found end of input"),
        .init("only whitespace", " \n", at: 2, "expected a JSON value, found end of input"),
        .init("trailing garbage", #"{"a":1} x"#, at: 8, "expected end of input, found 'x'"),
        .init("second value", "1 2", at: 2, "expected end of input, found '2'"),
        .init("byte order mark", [0xEF, 0xBB, 0xBF, 0x7B, 0x7D], at: 0,
              "expected a JSON value, found a UTF-8 byte order mark"),
        .init("non-JSON whitespace", "[1,\u{0C}2]", at: 3, path: ["[1]"], "expected a JSON value, found byte 0x0C"),
        // UTF-8
        .init("truncated UTF-8", [0x5B, 0x22, 0x61, 0x62, 0xC3, 0x22, 0x5D], at: 4, path: ["[0]"],
              "expected UTF-8 text in string, found ill-formed sequence starting with byte 0xC3"),
        .init("overlong UTF-8", [0x22, 0xC0, 0xAF, 0x22], at: 1,
              "expected UTF-8 text in string, found ill-formed sequence starting with byte 0xC0"),
        .init("UTF-8 encoded surrogate", [0x22, 0x61, 0xED, 0xA0, 0x80, 0x22], at: 2,
              "expected UTF-8 text in string, found ill-formed sequence starting with byte 0xED"),
        .init("UTF-8 above U+10FFFF", [0x22, 0xF4, 0x90, 0x80, 0x80, 0x22], at: 1,
              "expected UTF-8 text in string, found ill-formed sequence starting with byte 0xF4"),
        .init("stray continuation byte", [0x22, 0xC3, 0xA9, 0x80, 0x22], at: 3,
              "expected UTF-8 text in string, found ill-formed sequence starting with byte 0x80"),
        .init("invalid UTF-8 after an escape", [0x22, 0x5C, 0x6E, 0xFF, 0x22], at: 3,
              "expected UTF-8 text in string, found ill-formed sequence starting with byte 0xFF"),
        .init("UTF-8 outside a string", [0xC3, 0xA9], at: 0, "expected a JSON value, found byte 0xC3"),
        // Strings
        .init("raw newline in string", "\"a\nb\"", at: 2,
              "expected a printable character or escape in string, found control character U+000A"),
        .init("raw tab in key", "{\"a\tb\":1}", at: 3,
              "expected a printable character or escape in string, found control character U+0009"),
        .init("unterminated string", #"["abc"#, at: 5, path: ["[0]"],
              "expected '\"' to close the string at offset 1, found end of input"),
        .init("bad escape", #""a\x""#, at: 2,
              #"expected an escape character (" \ / b f n r t u) after '\', found 'x'"#),
        .init("escape at end", #""\"#, at: 2, #"expected an escape character after '\', found end of input"#),
        .init("short \\u", #""\u12G4""#, at: 1, #"expected 4 hex digits after \u, found '12G4'"#),
        .init("lone high surrogate", #""\uD800""#, at: 1,
              #"expected a low surrogate \uDC00-\uDFFF after \uD800, found '"' (lone high surrogate)"#),
        .init("high surrogate then non-surrogate", #"{"k":"x\ud83d\u0041"}"#, at: 7, path: [#""k""#],
              #"expected a low surrogate \uDC00-\uDFFF after \uD83D, found \u0041 (lone high surrogate)"#),
        .init("lone low surrogate", #""\uDE00""#, at: 1,
              #"expected a high surrogate before \uDE00, found none (lone low surrogate)"#),
        // Numbers and literals
        .init("leading zero", "[01]", at: 1, path: ["[0]"], "expected a number, found '01' (leading zeros are not allowed)"),
        .init("negative leading zero", "-007", at: 0, "expected a number, found '-007' (leading zeros are not allowed)"),
        .init("lone minus", "-", at: 1, "expected a digit after '-', found end of input"),
        .init("bare fraction", "1.", at: 2, "expected a digit after '.', found end of input"),
        .init("fraction without integer", ".5", at: 0, "expected a JSON value, found '.5'"),
        .init("empty exponent", "1e+]", at: 3, "expected a digit after the exponent marker, found ']'"),
        .init("plus sign", "+1", at: 0, "expected a JSON value, found '+1'"),
        .init("NaN", "[NaN]", at: 1, path: ["[0]"], "expected a JSON value, found 'NaN' (NaN and Infinity are not JSON)"),
        .init("Infinity", "Infinity", at: 0, "expected a JSON value, found 'Infinity' (NaN and Infinity are not JSON)"),
        .init("-Infinity", "-Infinity", at: 1, "expected a digit after '-', found 'Infinity' (NaN and Infinity are not JSON)"),
        .init("overflowing double", #"{"x":1e400}"#, at: 5, path: [#""x""#],
              "expected a number within the range of Double, found 1e400"),
        .init("Python True", "True", at: 0, "expected a JSON value, found 'True'"),
        .init("truncated literal", "[tru]", at: 1, path: ["[0]"], "expected 'true', found 'tru'"),
        .init("null typo", "nul", at: 0, "expected 'null', found 'nul'"),
        // Structure
        .init("trailing comma in array", "[1,]", at: 3, "expected a JSON value after ',', found ']' (trailing comma)"),
        .init("trailing comma in object", #"{"a":1,}"#, at: 7, "expected a string key after ',', found '}' (trailing comma)"),
        .init("missing comma", "[1 2]", at: 3, "expected ',' or ']' after array element, found '2'"),
        .init("unclosed array", "[1,2", at: 4, "expected ',' or ']' after array element, found end of input"),
        .init("missing colon", #"{"a" 1}"#, at: 5, #"expected ':' after key "a", found '1'"#),
        .init("unquoted key", "{a:1}", at: 1, "expected a string key, found 'a'"),
        .init("single-quoted string", "['a']", at: 1, path: ["[0]"], "expected a JSON value, found '''"),
        .init("unclosed object", #"{"a":1"#, at: 6, "expected ',' or '}' after object member, found end of input"),
        .init("deep path", #"{"model.layers.0.w":{"data_offsets":[0, x]}}"#, at: 40,
              path: [#""model.layers.0.w""#, #""data_offsets""#, "[1]"], "expected a JSON value, found 'x'"),
        .init("escaped key in path", #"{"a\"b":[}"#, at: 9, path: [#""a\"b""#, "[0]"], "expected a JSON value, found '}'"),
        // Duplicates
        .init("duplicate key", #"{"a":1,"b":2,"a":3}"#, at: 13, #"duplicate key "a" (first at offset 1)"#),
        .init("duplicate key in a large object",
              "{" + (0..<20).map { "\"k\($0)\": [\($0)]" }.joined(separator: ", ") + ", \"k7\": 0}", at: 241,
              #"duplicate key "k7" (first at offset 78)"#),
        .init("nested duplicate key", #"[{}, {"x": {"y": 1, "y": 2}}]"#, at: 20, path: ["[1]", #""x""#],
              #"duplicate key "y" (first at offset 12)"#),
    ]
}

@Suite("JSON")
struct JSONTests {
    func rejection(_ input: [UInt8], maxDepth: Int = 256, rejectDuplicateKeys: Bool = true) -> KilnError? {
        do {
            let value = try JSONValue.parse(input, maxDepth: maxDepth, rejectDuplicateKeys: rejectDuplicateKeys)
            Issue.record("accepted: \(value)")
        } catch let error as KilnError {
            return error
        } catch {
            Issue.record("not a KilnError: \(error)")
        }
        return nil
    }

    @Test("rejections: offset, path and message", arguments: JSONRejection.all)
    func rejects(_ bad: JSONRejection) throws {
        let error = try #require(rejection(bad.input))
        #expect(error.kind == .invalidInput)
        #expect(error.file == nil)
        #expect(error.offset == bad.offset)
        #expect(error.path == bad.path)
        #expect(error.message == bad.message)
    }

    @Test("an error renders on one line once the caller names the file")
    func errorRendering() throws {
        let error = try #require(rejection(Array(#"{"w": {"data_offsets": [0, 01]}}"#.utf8)))
        #expect(error.inFile("model.safetensors").description
            == #"model.safetensors@0x1B: "w" › "data_offsets" › [1]: expected a number, found '01' (leading zeros are not allowed)"#)
    }

    @Test("scalars and number classification")
    func scalars() throws {
        #expect(try JSONValue.parse("null") == .null)
        #expect(try JSONValue.parse(" true ") == .bool(true))
        #expect(try JSONValue.parse("\t\r\nfalse") == .bool(false))
        #expect(try JSONValue.parse("0") == .int(0))
        #expect(try JSONValue.parse("-0") == .int(0))
        #expect(try JSONValue.parse("42") == .int(42))
        #expect(try JSONValue.parse("9223372036854775807") == .int(.max))
        #expect(try JSONValue.parse("-9223372036854775808") == .int(.min))
        #expect(try JSONValue.parse("9223372036854775808") == .double(9_223_372_036_854_775_808))
        #expect(try JSONValue.parse("-9223372036854775809") == .double(-0x1p63))  // rounds to -2^63, but is no Int64 literal
        #expect(try JSONValue.parse("123456789012345678901234567890") == .double(1.2345678901234568e29))
        #expect(try JSONValue.parse("1.0") == .double(1))
        #expect(try JSONValue.parse("1e2") == .double(100))
        #expect(try JSONValue.parse("1E-2") == .double(0.01))
        #expect(try JSONValue.parse("-0.0").doubleValue?.sign == .minus)
        #expect(try JSONValue.parse("0.1") == .double(0.1))
        #expect(try JSONValue.parse("1.7976931348623157e308") == .double(.greatestFiniteMagnitude))
        #expect(try JSONValue.parse("5e-324") == .double(.leastNonzeroMagnitude))
        #expect(try JSONValue.parse("2.2250738585072014e-308") == .double(.leastNormalMagnitude))
        #expect(try JSONValue.parse("1e-400") == .double(0))
        #expect(try JSONValue.parse("3.14159265358979323846264338327950288") == .double(.pi))
        #expect(try JSONValue.parse("0.000000000000000000000000000001") == .double(1e-30))
    }

    @Test("strings: escapes, surrogate pairs, raw UTF-8")
    func strings() throws {
        #expect(try JSONValue.parse(#""\"\\\/\b\f\n\r\t""#) == .string("\"\\/\u{8}\u{C}\n\r\t"))
        #expect(try JSONValue.parse(#""\u00e9\u00E9\u0000""#) == .string("éé\u{0}"))
        #expect(try JSONValue.parse(#""\uD83D\uDE00 \ud83e\udd16""#) == .string("😀 🤖"))
        #expect(try JSONValue.parse(#""\uFFFF\uDBFF\uDFFF""#) == .string("\u{FFFF}\u{10FFFF}"))
        #expect(try JSONValue.parse("\"日本語 ĠtheĊ 😀 \u{7F}\"") == .string("日本語 ĠtheĊ 😀 \u{7F}"))
        #expect(try JSONValue.parse(#""mixed é \u00e9 😀\n""#) == .string("mixed é é 😀\n"))
        #expect(try JSONValue.parse(#""""#) == .string(""))
    }

    @Test("offsets count UTF-8 bytes when parsing a String")
    func stringOffsets() throws {
        let error = try #require(rejection(Array(#"["é😀", x]"#.utf8)))
        #expect(error.offset == 11)
        #expect(error.path == ["[1]"])
    }

    @Test("objects keep insertion order and look keys up")
    func objects() throws {
        let value = try JSONValue.parse(#"{"b": 1, "a": [true, null], "c": {"d": "e"}}"#)
        let object = try #require(value.objectValue)
        #expect(object.keys == ["b", "a", "c"])
        #expect(object.count == 3)
        #expect(object.map(\.key) == ["b", "a", "c"])
        #expect(value["a"]?[1]?.isNull == true)
        #expect(value["c"]?["d"]?.stringValue == "e")
        #expect(value["missing"] == nil)
        #expect(value == ["b": 1, "a": [true, nil], "c": ["d": "e"]])
        #expect(value != ["a": [true, nil], "b": 1, "c": ["d": "e"]])  // order matters
    }

    @Test("JSONObject mutation, small and indexed")
    func objectMutation() {
        for size in [3, 8, 9, 40] {
            var object = JSONObject((0..<size).map { ("k\($0)", .int(Int64($0))) })
            object["k1"] = "replaced"
            object["new"] = true
            #expect(object.keys == ["k0", "k1"] + (2..<size).map { "k\($0)" } + ["new"], "size \(size)")
            #expect(object["k1"] == "replaced")
            object["k0"] = nil
            #expect(object.count == size)
            #expect(object["k0"] == nil)
            #expect(object["new"] == true)
            #expect(object["k\(size - 1)"] == .int(Int64(size - 1)))
            object["k0"] = 0
            #expect(object.keys.last == "k0")
        }
        let repeated = JSONObject([("a", 1), ("b", 2), ("a", 3)])
        #expect(repeated.keys == ["a", "b"])
        #expect(repeated["a"] == 3)
    }

    @Test("keys and strings compare by UTF-8 bytes, not canonical equivalence")
    func byteExactKeys() throws {
        let value = try JSONValue.parse(#"{"\u00e9": 1, "e\u0301": 2}"#)
        #expect(value.objectValue?.count == 2)
        #expect(value["\u{E9}"] == 1)
        #expect(value["e\u{301}"] == 2)
        #expect(JSONValue.string("\u{E9}") != .string("e\u{301}"))
        let big = JSONObject((0..<20).map { ("k\($0)", .null) } + [("\u{E9}", 1), ("e\u{301}", 2)])
        #expect(big["\u{E9}"] == 1 && big["e\u{301}"] == 2)
    }

    @Test("duplicate keys: the last value wins in place when allowed")
    func duplicatesAllowed() throws {
        let value = try JSONValue.parse(#"{"a": 1, "b": 2, "a": 3}"#, rejectDuplicateKeys: false)
        #expect(value.objectValue?.keys == ["a", "b"])
        #expect(value["a"] == 3)
    }

    @Test("depth limit")
    func depth() throws {
        func nested(_ n: Int) -> String { String(repeating: "[", count: n) + String(repeating: "]", count: n) }
        #expect(try JSONValue.parse(nested(256)).arrayValue != nil)
        let error = try #require(rejection(Array(nested(257).utf8)))
        #expect(error.offset == 256)
        #expect(error.path == Array(repeating: "[0]", count: 256))
        #expect(error.message == "expected nesting depth at most 256, found 257")
        let objects = String(repeating: #"{"a":"#, count: 3) + "1" + String(repeating: "}", count: 3)
        #expect(try JSONValue.parse(objects, maxDepth: 3)["a"]?["a"]?["a"] == 1)
        #expect(rejection(Array(objects.utf8), maxDepth: 2)?.path == [#""a""#, #""a""#])
        #expect(try JSONValue.parse("7", maxDepth: 0) == 7)
        #expect(rejection(Array("[]".utf8), maxDepth: 0)?.offset == 0)
        let ceiling = JSONLimits.maxDepthCeiling
        #expect(try JSONValue.parse(nested(ceiling), maxDepth: ceiling).arrayValue?.count == 1)
        #expect(rejection(Array(nested(ceiling + 1).utf8), maxDepth: ceiling)?.offset == ceiling)
    }

    @Test("accessors")
    func accessors() {
        let value: JSONValue = ["i": 3, "d": 2.0, "f": 2.5, "big": 1e19, "s": "x", "b": false, "n": nil, "a": [1, 2]]
        #expect(value["i"]?.intValue == 3)
        #expect(value["d"]?.intValue == 2)
        #expect(value["f"]?.intValue == nil)
        #expect(value["big"]?.intValue == nil)
        #expect(value["i"]?.doubleValue == 3)
        #expect(value["f"]?.doubleValue == 2.5)
        #expect(value["s"]?.stringValue == "x" && value["s"]?.intValue == nil)
        #expect(value["b"]?.boolValue == false)
        #expect(value["n"]?.isNull == true && value["missing"]?.isNull == nil)
        #expect(value["a"]?.arrayValue == [1, 2])
        #expect(value["a"]?[1] == 2 && value["a"]?[2] == nil && value["a"]?[-1] == nil)
        #expect(value[0] == nil && value["a"]?["x"] == nil)
        #expect(value.objectValue?.keys == ["i", "d", "f", "big", "s", "b", "n", "a"])
    }

    @Test("serialization: compact, pretty (as Python's indent=2), escaping")
    func serialization() {
        let value: JSONValue = ["name": "kiln", "list": [1, -2.5, true, nil, [], [:]], "nested": ["k": []]]
        #expect(value.serialized() == #"{"name":"kiln","list":[1,-2.5,true,null,[],{}],"nested":{"k":[]}}"#)
        #expect(value.serialized(pretty: true) == """
            {
              "name": "kiln",
              "list": [
                1,
                -2.5,
                true,
                null,
                [],
                {}
              ],
              "nested": {
                "k": []
              }
            }
            """)
        let tricky: JSONValue = "q\" b\\ \n\r\t\u{8}\u{C}\u{0}\u{1F}\u{7F} é 😀 /"
        #expect(tricky.serialized() == #""q\" b\\ \n\r\t\b\f\u0000\u001f"# + "\u{7F} é 😀 /\"")
        #expect(JSONValue.object(JSONObject([("a\"\n", 1)])).serialized() == #"{"a\"\n":1}"#)
    }

    @Test("numbers serialize in shortest round-trip form, as Python's repr")
    func numberSerialization() {
        let cases: [(JSONValue, String)] = [
            (.int(.min), "-9223372036854775808"), (.int(.max), "9223372036854775807"), (0, "0"),
            (10000.0, "10000.0"), (0.1, "0.1"), (-0.0, "-0.0"), (1e-5, "1e-05"), (0.0001, "0.0001"),
            (1e15, "1000000000000000.0"), (9_007_199_254_740_994.0, "9007199254740994.0"),
            (9_999_999_999_999_998.0, "9999999999999998.0"), (1e16, "1e+16"), (1.5e300, "1.5e+300"),
            (.double(.leastNonzeroMagnitude), "5e-324"), (.double(.nan), "null"), (.double(.infinity), "null"), (.double(-.infinity), "null"),
        ]
        for (value, text) in cases {
            #expect(value.serialized() == text)
        }
    }

    @Test("sortKeys: code point order, deterministic whatever the insertion order")
    func sortKeys() {
        let one = JSONValue.object(JSONObject([("b", 1), ("a", ["z": 1, "y": 2]), ("é", 3), ("B", 4), ("😀", 5), ("ab", 6)]))
        let two = JSONValue.object(JSONObject([("😀", 5), ("ab", 6), ("B", 4), ("é", 3), ("a", ["y": 2, "z": 1]), ("b", 1)]))
        #expect(one.serialized(sortKeys: true) == #"{"B":4,"a":{"y":2,"z":1},"ab":6,"b":1,"é":3,"😀":5}"#)
        #expect(one.serialized(sortKeys: true) == two.serialized(sortKeys: true))
        #expect(one.serialized(pretty: true, sortKeys: true) == two.serialized(pretty: true, sortKeys: true))
        #expect(one.serialized() != two.serialized())
    }

    @Test("round trips: parse(serialized(v)) == v in every form")
    func roundTrips() throws {
        let value: JSONValue = [
            "ints": [0, 1, -1, .int(.max), .int(.min)],
            "doubles": [0.5, -0.0, 1e-300, 1.7976931348623157e308, 1e16, 123.456, 9_007_199_254_740_994.0],
            "strings": ["", "\u{0}\u{1F}\"\\", "é e\u{301} 日本 😀", "\u{10FFFF}"],
            "nested": [[[["deep": [true, false, nil]]]]],
            "empty": ["a": [], "o": [:]],
        ]
        for pretty in [false, true] {
            for sortKeys in [false, true] {
                let text = value.serialized(pretty: pretty, sortKeys: sortKeys)
                let back = try JSONValue.parse(text)
                #expect(back.serialized(pretty: pretty, sortKeys: sortKeys) == text)
                if !sortKeys { #expect(back == value) }
            }
        }
        let canonical = #"{"a":[1,2.5,"x\ny",{"b":null}],"c":{}}"#
        #expect(try JSONValue.parse(canonical).serialized() == canonical)
    }

    @Test("tokenizer.json of SmolLM2-135M: parses, vocab and merges, round trip")
    func tokenizer() throws {
        let path = try TestEnvironment.sharedModel("SmolLM2-135M/tokenizer.json")
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        let bytes = [UInt8](data)
        let start = ContinuousClock.now
        let value = try JSONValue.parse(bytes)
        print("parsed \(bytes.count) bytes of tokenizer.json in \(ContinuousClock.now - start)")
        let vocab = try #require(value["model"]?["vocab"]?.objectValue)
        #expect(vocab.count == 49152)
        #expect(vocab["<|endoftext|>"] == 0)
        #expect(vocab["<|im_start|>"] == 1)
        #expect(value["model"]?["type"] == "BPE")
        #expect(value["model"]?["merges"]?[0] == ["Ġ", "t"])
        #expect(value["model"]?["merges"]?.arrayValue?.count == 48900)
        // The file is Python's json.dumps(indent=2, ensure_ascii=False): we write it back byte for byte.
        #expect(value.serialized(pretty: true) == String(decoding: bytes, as: UTF8.self))
        #expect(try JSONValue.parse(value.serialized()) == value)
    }
}
