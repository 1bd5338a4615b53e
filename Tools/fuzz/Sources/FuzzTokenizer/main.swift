// tokenizer.json (first byte even) or a sentencepiece tokenizer.model (odd) through
// Tokenizer.load, then encode and decode a few texts.
import FuzzSupport
import KilnCore
import KilnEngine

private let texts = ["Hello, world! héllo wörld 123 4567", "  <s> multiple   spaces\tand\nnewlines </s>", "日本語のテキスト 🙂 ∑x²", ""]

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTokenizer(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data, size >= 1 else { return 0 }
    let name = data[0] & 1 == 0 ? "tokenizer.json" : "tokenizer.model"
    let path = Fuzz.write(UnsafeRawBufferPointer(start: data + 1, count: size - 1), to: "tok\(data[0] & 1)/" + name)
    Fuzz.refusalsOnly {
        let tokenizer = try Tokenizer.load(path: path)
        for text in texts {
            for special in [false, true] {
                let ids = tokenizer.encode(text, addSpecialTokens: special)
                Fuzz.blackHole(tokenizer.decode(ids, skipSpecialTokens: !special))
            }
        }
    }
    return 0
}
