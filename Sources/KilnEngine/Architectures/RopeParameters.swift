import Foundation
import KilnCore

/// Rotary position embedding settings, read from config.json and carried as `kiln.RoPE` attributes.
///
/// The inverse frequencies are computed exactly as transformers does, in f32:
/// ```
/// default: inv_freq[i] = 1 / theta^(2i / head_dim)                  i = 0 ..< head_dim/2
/// linear:  inv_freq /= factor
/// llama3:  wavelen = 2π / inv_freq
///          wavelen > orig / low_freq_factor   → inv_freq / factor        (low frequencies)
///          wavelen < orig / high_freq_factor  → inv_freq                 (high frequencies)
///          otherwise s = (orig / wavelen − low) / (high − low),
///                    inv_freq = (1 − s) · inv_freq / factor + s · inv_freq
/// angle(pos, i) = f32(inv_freq[i] · pos);  x'[i] = x[i]·cos − x[i+d/2]·sin,  x'[i+d/2] = x[i+d/2]·cos + x[i]·sin
/// ```
/// (the half-split `rotate_half` layout of Hugging Face checkpoints).
public struct RopeParameters: Equatable, Sendable {
    /// How the frequencies are scaled for longer contexts.
    public enum Kind: String, Sendable, CaseIterable {
        case `default`
        case linear
        case llama3
    }

    /// Base of the geometric frequency progression (`rope_theta`).
    public var theta: Double
    /// The scaling rule.
    public var kind: Kind
    /// `factor` (linear, llama3); 1 otherwise.
    public var factor: Double
    /// `low_freq_factor` (llama3).
    public var lowFreqFactor: Double
    /// `high_freq_factor` (llama3).
    public var highFreqFactor: Double
    /// `original_max_position_embeddings` (llama3).
    public var originalMaxPositions: Int

    /// Parameters given directly.
    public init(theta: Double = 10000, kind: Kind = .default, factor: Double = 1, lowFreqFactor: Double = 1,
                highFreqFactor: Double = 4, originalMaxPositions: Int = 8192) {
        self.theta = theta
        self.kind = kind
        self.factor = factor
        self.lowFreqFactor = lowFreqFactor
        self.highFreqFactor = highFreqFactor
        self.originalMaxPositions = originalMaxPositions
    }

    /// Read from a config in either key style: transformers 5 (`rope_parameters` with `rope_theta`
    /// and `rope_type` inside) or 4.x (top-level `rope_theta`, `rope_scaling` with `type`/`rope_type`).
    /// - Throws: `KilnError(.invalidInput)` for missing or malformed scaling fields;
    ///   `KilnError(.unsupported)` for scaling types other than default, linear and llama3.
    public init(config reader: ConfigReader) throws {
        let key = reader.value(["rope_parameters"]) != nil ? "rope_parameters" : "rope_scaling"
        let theta = try reader.optionalPositiveDouble(key, "rope_theta") ?? reader.optionalPositiveDouble("rope_theta") ?? 10000
        self.init(theta: theta)
        guard reader.value([key]) != nil else { return }
        let typeName = try reader.optionalString(key, "rope_type") ?? reader.optionalString(key, "type") ?? "default"
        guard let kind = Kind(rawValue: typeName) else {
            throw KilnError(.unsupported, file: reader.file, path: [key, "rope_type"],
                            "expected one of \(Kind.allCases.map(\.rawValue).joined(separator: ", ")), found \"\(typeName)\"")
        }
        self.kind = kind
        func required(_ field: String) throws -> Double {
            guard let v = try reader.optionalPositiveDouble(key, field) else {
                throw reader.mismatch([key, field], expected: "a positive number for rope type \(typeName)", found: "no value")
            }
            return v
        }
        switch kind {
        case .default:
            break
        case .linear:
            factor = try required("factor")
        case .llama3:
            factor = try required("factor")
            lowFreqFactor = try required("low_freq_factor")
            highFreqFactor = try required("high_freq_factor")
            guard let orig = try reader.optionalInt(key, "original_max_position_embeddings") else {
                throw reader.mismatch([key, "original_max_position_embeddings"], expected: "a positive integer for rope type llama3", found: "no value")
            }
            originalMaxPositions = orig
            guard highFreqFactor != lowFreqFactor else {
                throw reader.mismatch([key, "high_freq_factor"], expected: "a value different from low_freq_factor (\(lowFreqFactor))", found: "\(highFreqFactor)")
            }
        }
    }

    /// The node attributes that carry these parameters.
    public var attributes: [(name: String, value: AttributeValue)] {
        var a: [(name: String, value: AttributeValue)] = [
            ("theta", .float(Float(theta))),
            ("rope_type", .string(Array(kind.rawValue.utf8))),
        ]
        switch kind {
        case .default: break
        case .linear: a.append(("factor", .float(Float(factor))))
        case .llama3:
            a += [("factor", .float(Float(factor))), ("low_freq_factor", .float(Float(lowFreqFactor))),
                  ("high_freq_factor", .float(Float(highFreqFactor))),
                  ("original_max_position_embeddings", .int(Int64(originalMaxPositions)))]
        }
        return a
    }

    /// Read back from a `kiln.RoPE` node.
    /// - Throws: `KilnError(.invalidInput)` naming the node for a missing or unknown attribute value.
    public init(node: Node) throws {
        func float(_ key: String) -> Double? {
            if case .float(let f)? = node.attribute(key) { return Double(f) }
            if case .int(let i)? = node.attribute(key) { return Double(i) }
            return nil
        }
        var typeName = "default"
        if case .string(let bytes)? = node.attribute("rope_type") { typeName = String(decoding: bytes, as: UTF8.self) }
        guard let kind = Kind(rawValue: typeName) else {
            throw KilnError(.unsupported, path: ["node \"\(node.name)\"", "rope_type"], "expected one of default, linear, llama3, found \"\(typeName)\"")
        }
        var orig = 8192
        if case .int(let i)? = node.attribute("original_max_position_embeddings") { orig = Int(i) }
        self.init(theta: float("theta") ?? 10000, kind: kind, factor: float("factor") ?? 1,
                  lowFreqFactor: float("low_freq_factor") ?? 1, highFreqFactor: float("high_freq_factor") ?? 4,
                  originalMaxPositions: orig)
    }

    /// The `head_dim / 2` inverse frequencies, in f32 as transformers computes them.
    /// - Parameter headDim: the rotated width, even and > 0.
    public func inverseFrequencies(headDim: Int) -> [Float] {
        precondition(headDim > 0 && headDim % 2 == 0, "head_dim must be even")
        let base = Float(theta)
        var inv = (0..<(headDim / 2)).map { i -> Float in
            let exponent = Float(2 * i) / Float(headDim)
            return 1 / Foundation.pow(base, exponent)
        }
        switch kind {
        case .default:
            break
        case .linear:
            let f = Float(factor)
            inv = inv.map { $0 / f }
        case .llama3:
            let f = Float(factor), low = Float(lowFreqFactor), high = Float(highFreqFactor)
            let old = Float(originalMaxPositions)
            let lowWavelen = Double(originalMaxPositions) / lowFreqFactor
            let highWavelen = Double(originalMaxPositions) / highFreqFactor
            inv = inv.map { freq in
                // torch evaluates `scalar / tensor` as reciprocal(tensor) * scalar, in f32.
                let wavelen = (1 / freq) * Float(2 * Double.pi)
                let scaled = Double(wavelen) > lowWavelen ? freq / f : freq
                let isMedium = !(Double(wavelen) < highWavelen) && !(Double(wavelen) > lowWavelen)
                guard isMedium else { return scaled }
                let smooth = ((1 / wavelen) * old - low) / (high - low)
                return (1 - smooth) * scaled / f + smooth * scaled
            }
        }
        return inv
    }
}
