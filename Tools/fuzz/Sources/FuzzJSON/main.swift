// The JSON parser (config.json, index.json, headers), its serializer (parse ∘ serialize = id),
// and the architecture config reader the engine builds a Llama from.
// Input: 1 flag byte (bit 0: reject duplicate keys), then the JSON text.
import FuzzSupport
import KilnCore
import KilnEngine

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzJSON(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data, size >= 1 else { return 0 }
    let strict = data[0] & 1 == 1
    let text = UnsafeRawBufferPointer(start: data + 1, count: size - 1)
    let value: JSONValue
    do {
        value = try JSONValue.parse(text, maxDepth: 64, rejectDuplicateKeys: strict)
    } catch let error as KilnError {
        precondition(error.kind == .invalidInput && error.offset != nil && error.offset! <= size - 1, "bad parse error: \(error)")
        return 0
    } catch {
        fatalError("not a KilnError: \(error)")
    }
    for pretty in [false, true] {
        let text = value.serialized(pretty: pretty)
        guard let again = try? JSONValue.parse(text, maxDepth: 64, rejectDuplicateKeys: true) else {
            fatalError("serialized JSON does not parse: \(text.prefix(200))")
        }
        precondition(again == value, "parse(serialize(v)) != v: \(text.prefix(200))")
    }
    Fuzz.refusalsOnly {
        let config = try LlamaConfig(config: value)
        Fuzz.blackHole(config.expectedWeights(tied: config.tieWordEmbeddings).count)
    }
    return 0
}
