import KilnCore
import KilnEngine
import KilnTestKit
import Testing

/// The `int4-rtn` pass loaded through the host: payload, scales and zero points against a scalar
/// reference (bit-exact), the packing order, the dequantization error bound, group-size errors verbatim.
@Suite struct INT4RTNTests {
    typealias T = PassTest

    // MARK: - Scalar reference (DESIGN §4)

    /// Symmetric: s = amax/7 (1 for a zero block), q = clamp(round_half_even(w/s), −8, 7).
    /// Asymmetric: lo = min(0, min w), hi = max(0, max w), s = (hi−lo)/15, z = round(−lo/s),
    /// q = clamp(round(w/s) + z, 0, 15). Blocks of `g` along each row; the last may be partial.
    static func reference(_ w: [Float], cols: Int, g: Int, asymmetric: Bool = false) -> (q: [Int8], s: [Float], z: [Int8]) {
        var q: [Int8] = [], s: [Float] = [], z: [Int8] = []
        for r in 0..<(w.count / cols) {
            for b in stride(from: 0, to: cols, by: g) {
                let block = Array(w[(r * cols + b)..<(r * cols + min(b + g, cols))])
                if asymmetric {
                    let lo = min(0, block.min()!), hi = max(0, block.max()!)
                    var sc = (hi - lo) / 15
                    if sc == 0 { sc = 1 }
                    let zp = min(max((-lo / sc).rounded(.toNearestOrEven), 0), 15)
                    s.append(sc)
                    z.append(Int8(zp))
                    q += block.map { Int8(min(max(($0 / sc).rounded(.toNearestOrEven) + zp, 0), 15)) }
                } else {
                    var sc = block.map(abs).max()! / 7
                    if sc == 0 { sc = 1 }
                    s.append(sc)
                    q += block.map { Int8(min(max(($0 / sc).rounded(.toNearestOrEven), -8), 7)) }
                }
            }
        }
        return (q, s, z)
    }

    // MARK: - Tests

    @Test func bothPassesLoadThroughTheHost() throws {
        let names = TestEnvironment.plugins.passes.map(\.name)
        #expect(names.contains("int4-rtn") && names.contains("int4-awq"))
    }

    @Test(arguments: [32, 64], [false, true])
    func payloadScalesAndZerosMatchTheReference(group: Int, asymmetric: Bool) throws {
        let model = try T.llama()
        let out = try T.run("int4-rtn", model, ["group-size": String(group), "zero-point": String(asymmetric)], service: nil)
        for name in T.linears() {
            let w = try model[name]!.floats(), t = out[name]!
            let (rows, cols) = (t.shape[0], t.shape[1])
            let ref = INT4RTNTests.reference(w, cols: cols, g: group, asymmetric: asymmetric)
            let q = try #require(t.quant)
            #expect(t.dtype == (asymmetric ? .u4 : .i4) && t.shape == model[name]!.shape)
            #expect(q.format == (asymmetric ? .uint4 : .int4) && q.granularity == .perBlock(axis: 1, size: group))
            #expect(q.scale.dtype == .f32 && q.scale.shape == [rows, cols / group])
            #expect(q.preQuantScale == nil && q.inputScale == nil)
            #expect(try Int4Packing.unpackIR(t) == ref.q, "\(name)")
            #expect(try q.scale.floats().map(\.bitPattern) == ref.s.map(\.bitPattern), "\(name)")
            if asymmetric {
                let zp = try #require(q.zeroPoint)
                #expect(zp.dtype == .u4 && zp.shape == [rows, cols / group])
                #expect(try Int4Packing.unpackIR(zp) == ref.z)
            } else {
                #expect(q.zeroPoint == nil)
            }
        }
        #expect(out.quantization == QuantizationRecord(algorithm: "W4A16_AWQ", groupSize: group, excludedModules: ["lm_head"]))
        #expect(out["model.embed_tokens.weight"]!.dtype == .f32 && out["model.norm.weight"]!.dtype == .f32)
    }

    @Test func packsTwoPerByteLowNibbleFirst() throws {
        let model = try T.llama()
        let name = T.name(0, "self_attn.o_proj.weight")
        var w = try model[name]!.floats()
        for (j, v) in [Float(7), -7, 1, 0, -3.4, 2.6, 7, 7].enumerated() { w[j] = v }
        for j in 8..<32 { w[j] = 0 }  // block 0 of row 0: amax 7 → s = 1
        model.set(Tensor(name: name, dtype: .f32, shape: model[name]!.shape, values: w))
        let out = try T.run("int4-rtn", model, ["group-size": "32"], service: nil)
        let bytes = try ModelDiff.bytes(out[name]!)
        #expect(Array(bytes[0..<4]) == [0x97, 0x01, 0x3D, 0x77])  // (7, −7) (1, 0) (−3, 3) (7, 7)
        #expect(bytes.count == 64 * 64 / 2)
    }

    @Test(arguments: [false, true])
    func dequantizedErrorIsAtMostHalfAStep(asymmetric: Bool) throws {
        let model = try T.llama()
        let out = try T.run("int4-rtn", model, ["group-size": "32", "zero-point": String(asymmetric)], service: nil)
        for name in T.linears() {
            let w = try model[name]!.floats(), t = out[name]!
            let q = try #require(t.quant)
            let deq = try q.dequantize(t).floats(), s = try q.scale.floats()
            let cols = t.shape[1]
            for i in w.indices {
                let step = s[(i / cols) * (cols / 32) + (i % cols) / 32]
                #expect(abs(deq[i] - w[i]) <= step / 2 * (1 + 1e-6), "\(name)[\(i)]")
            }
        }
    }

    @Test func groupSizeErrorsAreVerbatim() throws {
        let stories = try SyntheticModel.llama()  // hidden 64, intermediate 172 (stories260K's widths)
        let e = T.error { _ = try T.run("int4-rtn", stories, ["group-size": "64"], service: nil) }
        #expect(e?.description == "tensor \"model.layers.0.mlp.down_proj.weight\": input width 172 is not a multiple of the group size 64; use indivisible=skip to keep it in high precision or indivisible=pad for a partial last group")
        let model = try T.llama()
        #expect(T.error { _ = try T.run("int4-rtn", model, ["group-size": "48"], service: nil) }?.description
            == "int4-rtn option \"group-size\": expected a power of two (32, 64, 128, ...), found \"48\"")
        #expect(T.error { _ = try T.run("int4-rtn", model, ["group-size": "2"], service: nil) }?.description
            == "int4-rtn option \"group-size\": expected an integer in 4...4096, found \"2\"")
        #expect(T.error { _ = try T.run("int4-rtn", model, ["indivisible": "round"], service: nil) }?.description
            == "int4-rtn option \"indivisible\": expected error, skip or pad, found \"round\"")
        // Default group 128 does not divide the 64-wide q/k/v input.
        #expect(T.error { _ = try T.run("int4-rtn", model, [:], service: nil) }?.description
            == "tensor \"model.layers.0.self_attn.q_proj.weight\": input width 64 is not a multiple of the group size 128; use indivisible=skip to keep it in high precision or indivisible=pad for a partial last group")
    }

    @Test func indivisibleLayersAreSkippedWithARecordOrPadded() throws {
        let stories = try SyntheticModel.llama()
        let skipped = try T.run("int4-rtn", stories, ["group-size": "64", "indivisible": "skip"], service: nil)
        #expect(skipped.quantization?.excludedModules == ["model.layers.0.mlp.down_proj", "model.layers.1.mlp.down_proj", "lm_head"])
        #expect(skipped[T.name(0, "mlp.down_proj.weight")]!.dtype == .f32 && skipped[T.name(0, "mlp.up_proj.weight")]!.dtype == .i4)
        #expect(skipped.provenance.last == "int4-rtn: 12 linears to INT4 symmetric, group 64; high precision: model.layers.0.mlp.down_proj, model.layers.1.mlp.down_proj, lm_head; 2 linears of input width 172 (not a multiple of 64) kept in high precision")

        let padded = try T.run("int4-rtn", stories, ["group-size": "64", "indivisible": "pad"], service: nil)
        let name = T.name(1, "mlp.down_proj.weight")
        let t = padded[name]!, q = try #require(t.quant)
        #expect(q.scale.shape == [64, 3])  // ⌈172 / 64⌉
        let ref = INT4RTNTests.reference(try stories[name]!.floats(), cols: 172, g: 64)
        #expect(try Int4Packing.unpackIR(t) == ref.q && q.scale.floats() == ref.s)
        #expect(padded.quantization?.excludedModules == ["lm_head"])
        #expect(padded.provenance.last?.hasSuffix("; 2 linears of input width 172 quantized with a last group of 44") == true)
    }

    @Test func refusesQuantizedModelsAndHonorsExcludes() throws {
        let model = try T.llama(tied: false)
        let once = try T.run("int4-rtn", model, ["group-size": "32", "exclude": "*.o_proj, model.layers.1.mlp.*"], service: nil)
        #expect(once["lm_head.weight"]!.dtype == .f32 && once[T.name(0, "self_attn.o_proj.weight")]!.dtype == .f32)
        #expect(once[T.name(1, "mlp.gate_proj.weight")]!.dtype == .f32 && once[T.name(0, "mlp.gate_proj.weight")]!.dtype == .i4)
        #expect(once.quantization?.excludedModules == [
            "model.layers.0.self_attn.o_proj", "model.layers.1.self_attn.o_proj", "model.layers.1.mlp.gate_proj",
            "model.layers.1.mlp.up_proj", "model.layers.1.mlp.down_proj", "lm_head",
        ])
        #expect(T.error { _ = try T.run("int4-rtn", once, ["group-size": "32"], service: nil) }?.description
            == "quantization record: the model is already quantized (W4A16_AWQ); int4-rtn needs a floating-point checkpoint")
        let withHead = try T.run("int4-rtn", model, ["group-size": "32", "quantize-lm-head": "true"], service: nil)
        #expect(withHead["lm_head.weight"]!.dtype == .i4 && withHead.quantization?.excludedModules == [])
    }

    @Test func bf16InputsAndDeterminism() throws {
        let model = try T.llama(dtype: .bf16)
        let a = try T.run("int4-rtn", model, ["group-size": "64"], service: nil)
        let b = try T.run("int4-rtn", model, ["group-size": "64"], service: nil)
        #expect(try T.fingerprint(a) == T.fingerprint(b))
        let name = T.name(0, "mlp.up_proj.weight")
        let ref = INT4RTNTests.reference(try model[name]!.floats(), cols: 64, g: 64)
        #expect(try Int4Packing.unpackIR(a[name]!) == ref.q)
    }
}
