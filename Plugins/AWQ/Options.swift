import KilnCore

/// What to do with a linear whose input width is not a multiple of the group size.
enum Indivisible: String, CaseIterable {
    /// Refuse, naming the tensor (ModelOpt refuses too).
    case error
    /// Keep the linear in high precision and list it in the record's excluded modules.
    case skip
    /// Quantize with a partial last group (as if zero-padded to a multiple): scale shape [out, ⌈in/G⌉].
    case pad
}

/// How AWQ turns activation statistics into a per-input-channel scale candidate.
enum Scaling: String, CaseIterable {
    /// llm-awq: `s = mean|x|^α`.
    case act
    /// ModelOpt awq_lite / AutoAWQ duo scaling: `s = mean|x|^α / mean(|w|/blockmax)^(1−α)`, plus s ≡ 1.
    case duo
    /// Both candidate families (twice the search work).
    case both
}

/// The options both INT4 passes read from ``KilnContext/options``.
///
/// | option | values | default |
/// |---|---|---|
/// | `group-size` | power of two, 4…4096 | 128 |
/// | `zero-point` | true/false: asymmetric uint4 with a zero point per group | false |
/// | `indivisible` | error / skip / pad | error |
/// | `exclude` | comma-separated globs of weight or module names (added to lm_head) | — |
/// | `quantize-lm-head` | true/false (an untied lm_head only) | false |
/// | `grid` (awq) | α grid points, α = i / grid for i in 0 ..< grid | 20 |
/// | `scaling` (awq) | act / duo / both (the better of the two per group) | both |
/// | `clip` (awq) | true/false: weight-clipping search | true |
/// | `clip-qk` (awq) | true/false: also clip q_proj/k_proj (llm-awq skips them) | true |
/// | `fold-norms` (awq) | true/false: fold 1/s into the preceding norm where there is one | true |
/// | `w4a8` / `activations=fp8` (awq) | static FP8 per-tensor input scales → W4A8_AWQ | false |
/// | `calib`, `calib-samples`, `calib-seq-len` (awq) | calibration text and its size | —, 128, 512 |
/// | `calib-gram` (awq) | true: search on XᵀX of all calibration tokens (in²·8 bytes per group, one layer at a time with a layer-by-layer service); false: on `calib-rows` kept rows | true |
/// | `calib-rows` (awq, `calib-gram=false`) | input rows kept per group | 512 |
///
/// The defaults depart from llm-awq (act scaling, q/k unclipped, 512 sampled rows) on measurement:
/// SmolLM2-135M, group 64, 32 × 256 calibration tokens, perplexity by kiln-ppl-v1 (FP32 7.566, RTN 10.739).
/// On XᵀX of all tokens: both 8.469 (default), act 8.475, duo 8.525, act with q/k unclipped 8.581, no
/// clipping 9.481. On 512 rows sampled without the BOS position: 10.221 — the first token's massive
/// activations must be in the objective, which XᵀX of all tokens guarantees and row sampling does not.
struct Int4Options {
    var groupSize = Limits.defaultGroupSize
    var zeroPoint = false
    var indivisible = Indivisible.error
    var exclude: [String] = []
    var quantizeLMHead = false
    var grid = Limits.defaultGrid
    var scaling = Scaling.both
    var clip = true
    var clipQK = true
    var foldNorms = true
    var w4a8 = false
    var calibPath: String?
    var calibSamples: Int?
    var calibSequenceLength: Int?
    var captureRows = Limits.defaultCaptureRows
    var useGram = true

    /// Parse and check the options of `pass`.
    /// - Throws: `KilnError(.invalidInput)` naming the option, what was expected and what was found.
    init(_ options: [String: String], pass: String) throws {
        func bad(_ key: String, _ expected: String) -> KilnError {
            KilnError.mismatch(file: nil, path: ["\(pass) option \"\(key)\""], expected: expected, found: "\"\(options[key]!)\"")
        }
        func int(_ key: String, _ range: ClosedRange<Int>) throws -> Int? {
            guard let text = options[key] else { return nil }
            guard let v = Int(text), range.contains(v) else { throw bad(key, "an integer in \(range.lowerBound)...\(range.upperBound)") }
            return v
        }
        func bool(_ key: String) throws -> Bool? {
            guard let text = options[key]?.lowercased() else { return nil }
            switch text {
            case "", "true", "1", "yes", "on": return true
            case "false", "0", "no", "off": return false
            default: throw bad(key, "true or false")
            }
        }
        func choice<E: RawRepresentable & CaseIterable>(_ key: String, _: E.Type) throws -> E? where E.RawValue == String {
            guard let text = options[key] else { return nil }
            guard let v = E(rawValue: text.lowercased()) else {
                let names = E.allCases.map(\.rawValue)
                throw bad(key, names.dropLast().joined(separator: ", ") + " or " + names.last!)
            }
            return v
        }
        if let g = try int("group-size", Limits.groupSizes) {
            guard g & (g - 1) == 0 else { throw bad("group-size", "a power of two (32, 64, 128, ...)") }
            groupSize = g
        }
        zeroPoint = try bool("zero-point") ?? false
        indivisible = try choice("indivisible", Indivisible.self) ?? .error
        exclude = (options["exclude"] ?? "").split(separator: ",").map { String($0).trimmingSpaces }.filter { !$0.isEmpty }
        quantizeLMHead = try bool("quantize-lm-head") ?? false
        grid = try int("grid", Limits.grids) ?? Limits.defaultGrid
        scaling = try choice("scaling", Scaling.self) ?? .both
        clip = try bool("clip") ?? true
        clipQK = try bool("clip-qk") ?? true
        foldNorms = try bool("fold-norms") ?? true
        w4a8 = try bool("w4a8") ?? false
        if let a = options["activations"] {
            switch a.lowercased() {
            case "fp8": w4a8 = true
            case "none", "fp16", "bf16", "float": break
            default: throw bad("activations", "fp8 or none")
            }
        }
        calibPath = options["calib"]
        calibSamples = try int("calib-samples", 1...1_000_000)
        calibSequenceLength = try int("calib-seq-len", 2...1_000_000)
        captureRows = try int("calib-rows", Limits.captureRows) ?? Limits.defaultCaptureRows
        useGram = try bool("calib-gram") ?? true
    }

    /// The INT4 scheme these options select.
    var scheme: Int4Scheme { zeroPoint ? .asymmetric : .symmetric }

    /// Is the linear `weight` (a weight name, `….weight`) excluded by a pattern? Patterns match the
    /// weight name or its module name (`*.o_proj`, `model.layers.0.*`, `*lm_head*`).
    func excludes(_ weight: String) -> Bool {
        let module = weight.hasSuffix(".weight") ? String(weight.dropLast(".weight".count)) : weight
        return exclude.contains { LinearTopology.matches(weight, pattern: $0) || LinearTopology.matches(module, pattern: $0) }
    }
}

extension String {
    /// The string without leading and trailing spaces.
    var trimmingSpaces: String {
        var s = Substring(self)
        while s.first == " " { s.removeFirst() }
        while s.last == " " { s.removeLast() }
        return String(s)
    }
}
