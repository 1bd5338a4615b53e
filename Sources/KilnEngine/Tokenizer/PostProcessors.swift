import KilnCore

/// A tokenizer.json `post_processor`: what `addSpecialTokens` adds around one sequence.
indirect enum PostProcessor {
    /// TemplateProcessing's `single` template: special-token ids and the sequence.
    case template([TemplateItem])
    /// BertProcessing and RobertaProcessing: `cls` + sequence + `sep`.
    case wrap(cls: Int32, sep: Int32)
    /// ByteLevel (offsets only) and anything else that adds no tokens.
    case none
    case sequence([PostProcessor])

    enum TemplateItem: Equatable {
        case special([Int32])
        case sequence
    }

    static let types = ["TemplateProcessing", "BertProcessing", "RobertaProcessing", "ByteLevel", "Sequence"]

    /// Reads a post-processor object.
    /// - Throws: `KilnError(.unsupported)` for an unknown `type`, `KilnError(.invalidInput)`
    ///   for a malformed template or a special token the template uses but does not define.
    init(_ node: JSONNode) throws {
        switch try node.type(oneOf: PostProcessor.types) {
        case "TemplateProcessing":
            let specials = try node["special_tokens"]?.members() ?? []
            var items: [TemplateItem] = []
            for item in try node.required("single", expected: "an array").elements() {
                if let special = item["SpecialToken"] {
                    let name = try special.string("id")
                    guard let entry = specials.first(where: { $0.key == name })?.node else {
                        throw KilnError(.invalidInput, file: node.file, path: special.path + ["id"],
                                        "special token \(JSONNode.describe(.string(name))) is not in special_tokens")
                    }
                    items.append(.special(try entry.required("ids", expected: "an array").elements().map { try $0.tokenId() }))
                } else if item["Sequence"] != nil {
                    items.append(.sequence)
                } else {
                    throw item.mismatch(expected: "{\"SpecialToken\": …} or {\"Sequence\": …}")
                }
            }
            self = .template(items)
        case "BertProcessing", "RobertaProcessing":
            func id(_ key: String) throws -> Int32 {
                let pair = try node.required(key, expected: "[token, id]").elements()
                guard pair.count == 2 else { throw node[key]!.mismatch(expected: "[token, id]") }
                return try pair[1].tokenId()
            }
            self = .wrap(cls: try id("cls"), sep: try id("sep"))
        case "ByteLevel":
            self = .none
        default:
            self = .sequence(try node.required("processors", expected: "an array").elements().map(PostProcessor.init))
        }
    }

    /// `ids` with the special tokens added.
    func apply(_ ids: [Int32]) -> [Int32] {
        switch self {
        case .template(let items):
            var out: [Int32] = []
            out.reserveCapacity(ids.count + items.count)
            for item in items {
                switch item {
                case .special(let s): out.append(contentsOf: s)
                case .sequence: out.append(contentsOf: ids)
                }
            }
            return out
        case .wrap(let cls, let sep):
            return [cls] + ids + [sep]
        case .none:
            return ids
        case .sequence(let steps):
            return steps.reduce(ids) { $1.apply($0) }
        }
    }

    /// The special token placed before the sequence (BOS, CLS), if exactly one id.
    var leadingSpecial: Int32? {
        switch self {
        case .template(let items):
            if case .special(let s)? = items.first, s.count == 1, items.count > 1 { return s[0] }
            return nil
        case .wrap(let cls, _): return cls
        case .none: return nil
        case .sequence(let steps): return steps.lazy.compactMap(\.leadingSpecial).first
        }
    }

    /// The special token placed after the sequence (EOS, SEP), if exactly one id.
    var trailingSpecial: Int32? {
        switch self {
        case .template(let items):
            if case .special(let s)? = items.last, s.count == 1, items.count > 1 { return s[0] }
            return nil
        case .wrap(_, let sep): return sep
        case .none: return nil
        case .sequence(let steps): return steps.lazy.compactMap(\.trailingSpecial).last
        }
    }
}
