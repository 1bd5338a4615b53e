import KilnCore
import KilnEngine
import KilnTestKit
import Testing

/// The `sparse-2:4` pass loaded through the host: magnitude and SparseGPT against scalar references,
/// SparseGPT's reconstruction advantage, composition with FP8 / INT8-SQ, options and errors.
@Suite struct SparsityPassTests {
    typealias T = PassTest
    typealias R = SparsityReference
    static let pass = "sparse-2:4"

    static func run(_ model: Model, _ options: [String: String] = [:], service: HessianCalibration = HessianCalibration()) throws -> Model {
        try T.run(pass, model, options, service: service)
    }

    /// Are the zeros of `w` where `reference` has them, and the other values within 1e-6 of the row's
    /// largest magnitude?
    static func close(_ w: [Float], _ reference: [Double], cols: Int) -> Bool {
        for r in 0..<(w.count / cols) {
            let row = (r * cols)..<((r + 1) * cols)
            let scale = reference[row].map(abs).max() ?? 0
            for i in row {
                if (w[i] == 0) != (reference[i] == 0) { return false }
                if abs(Double(w[i]) - reference[i]) > 1e-6 * scale { return false }
            }
        }
        return true
    }

    // MARK: - Magnitude

    @Test func magnitudeMatchesTheReferenceAndLeavesTheRestAlone() throws {
        let model = try T.llama(tied: false)
        let out = try Self.run(model, ["method": "magnitude"])
        for w in T.linears() {
            let pruned = try out[w]!.floats()
            #expect(pruned == R.magnitude(try model[w]!.floats()), "\(w)")
            #expect(try StructuredSparsity.twoFour(out[w]!).isTwoFour)
        }
        for name in model.tensorNames where !T.linears().contains(name) {
            #expect(try ModelDiff.bytes(out[name]!) == ModelDiff.bytes(model[name]!), "\(name) changed")
        }
        #expect(out.quantization == QuantizationRecord(algorithm: "NONE", sparsity: "2:4"))
        #expect(out.provenance.last == "sparse-2:4: 14 linears pruned to 2:4 by magnitude; 1 left dense")
    }

    @Test func magnitudeTiesKeepTheLowerIndex() throws {
        let model = try T.llama()
        let name = T.name(0, "self_attn.q_proj.weight")
        let shape = model[name]!.shape
        let pattern: [Float] = [2, -2, 2, 2, 0.5, 1, -1, 1, 0, 0, 0, 3]
        model.set(Tensor(name: name, dtype: .f32, shape: shape, values: (0..<shape.elementCount!).map { pattern[$0 % 12] }))
        let out = try Self.run(model, ["method": "magnitude"])
        #expect(Array(try out[name]!.floats().prefix(12)) == [2, -2, 0, 0, 0, 1, -1, 0, 0, 0, 0, 3])
    }

    // MARK: - SparseGPT

    @Test(arguments: ["32", "128"])
    func sparseGPTMatchesTheScalarReference(blockSize: String) throws {
        let model = try T.llama()
        let service = HessianCalibration()
        let out = try Self.run(model, ["block-size": blockSize], service: service)
        for w in T.linears() {
            let cols = model[w]!.shape[1]
            let reference = R.sparseGPT(try model[w]!.floats(), cols: cols, hessian: try service.hessian(w, model: model), damp: 0.01)
            #expect(Self.close(try out[w]!.floats(), reference, cols: cols), "\(w)")
        }
        #expect(out.quantization == .sparseFloat())
    }

    @Test func sparseGPTMatchesTheReferenceOnAWiderLayerWithDeadChannels() throws {
        // Big enough for the threaded paths (factorization bands, row split), 3 blocks of 96 columns.
        let model = try CheckpointFixture.llama(hidden: 128, heads: 4, kvHeads: 2, intermediate: 288, layers: 1)
        let service = HessianCalibration(rows: 320)
        service.dead = [5, 6, 100]
        let out = try Self.run(model, ["block-size": "96", "exclude": "*.k_proj,*.v_proj,*.o_proj,*.up_proj"], service: service)
        for w in [T.name(0, "self_attn.q_proj.weight"), T.name(0, "mlp.gate_proj.weight"), T.name(0, "mlp.down_proj.weight")] {
            let cols = model[w]!.shape[1]
            let pruned = try out[w]!.floats()
            let reference = R.sparseGPT(try model[w]!.floats(), cols: cols, hessian: try service.hessian(w, model: model), damp: 0.01)
            #expect(Self.close(pruned, reference, cols: cols), "\(w)")
            if cols == 128 { #expect(stride(from: 5, to: pruned.count, by: cols).allSatisfy { pruned[$0] == 0 && pruned[$0 + 1] == 0 }) }
        }
    }

    @Test func sparseGPTReconstructsTheOutputBetterThanMagnitude() throws {
        let model = try T.llama()
        let service = HessianCalibration()
        let sparse = try Self.run(model, [:], service: service)
        let magnitude = try Self.run(model, ["method": "magnitude"])
        var totals = (sparse: 0.0, magnitude: 0.0)
        for w in T.linears() {
            let cols = model[w]!.shape[1], h = try service.hessian(w, model: model), dense = try model[w]!.floats()
            let e1 = R.reconstructionError(dense, try sparse[w]!.floats(), cols: cols, hessian: h)
            let e2 = R.reconstructionError(dense, try magnitude[w]!.floats(), cols: cols, hessian: h)
            #expect(e1 < e2, "\(w): SparseGPT \(e1) vs magnitude \(e2)")
            totals.sparse += e1
            totals.magnitude += e2
        }
        #expect(totals.sparse < 0.75 * totals.magnitude, "\(totals)")
    }

    @Test func calibrationIsSequentialOneLayerAtATime() throws {
        let model = try T.llama()
        let service = HessianCalibration()
        _ = try Self.run(model, ["calib-samples": "16", "calib-seq-len": "64"], service: service)
        #expect(service.requests.count == 2)
        #expect(service.requests.allSatisfy { $0.hessian && $0.samples == 16 && $0.sequenceLength == 64 && $0.captureRows == 0 })
        #expect(service.requests.map { $0.only ?? [] } == [Array(T.representatives().prefix(4)), Array(T.representatives().suffix(4))])
        #expect(service.layer0Sparse == [false, true])

        let once = HessianCalibration()
        let out = try Self.run(model, ["sequential": "false"], service: once)
        #expect(once.requests.map { $0.only ?? [] } == [T.representatives()] && once.layer0Sparse == [false])
        // The fake's activations do not depend on the model, so both schedules give the same weights.
        #expect(try T.fingerprint(out) == T.fingerprint(try Self.run(model, [:])))
    }

    @Test func aLayerwiseServiceCalibratesOnceAndGetsEachLayerPruned() throws {
        let model = try T.llama()
        let service = LayerwiseHessianCalibration()
        let out = try Self.run(model, [:], service: service)
        #expect(service.requests.count == 1 && service.requests[0].hessian && service.requests[0].only == T.representatives())
        #expect(service.layer0Sparse == [false, true])
        #expect(service.updates == [T.linears(layers: 2).prefix(7).map { $0 }, T.linears(layers: 2).suffix(7).map { $0 }])
        #expect(try T.fingerprint(out) == T.fingerprint(try Self.run(model, [:])))

        let failing = LayerwiseHessianCalibration()
        failing.omitHessian = true
        #expect(T.error { _ = try Self.run(model, [:], service: failing) }?.description
            == "tensor \"model.layers.0.self_attn.q_proj.weight\": calibration returned no Hessian (XᵀX) for this linear")
    }

    @Test func dampingIsAnOptionAndTheResultIsDeterministic() throws {
        let model = try T.llama()
        let service = HessianCalibration()
        let a = try Self.run(model, ["damp": "0.1"], service: service)
        let b = try Self.run(model, ["damp": "0.1"])
        let c = try Self.run(model, [:])
        #expect(try T.fingerprint(a) == T.fingerprint(b))
        #expect(try T.fingerprint(a) != T.fingerprint(c))
        let w = T.name(1, "mlp.down_proj.weight")
        let reference = R.sparseGPT(try model[w]!.floats(), cols: 128, hessian: try service.hessian(w, model: model), damp: 0.1)
        #expect(Self.close(try a[w]!.floats(), reference, cols: 128))
        #expect(a.provenance.last == "sparse-2:4: 14 linears pruned to 2:4 by SparseGPT (damp 0.1, block 128, sequential); 1 left dense")
    }

    @Test func anIndefiniteHessianGetsMoreDampingNeverNaN() throws {
        let model = try T.llama()
        let service = HessianCalibration()
        let q = T.name(0, "self_attn.q_proj.weight")
        var h = [Double](repeating: 0, count: 64 * 64)
        for i in 0..<64 { h[i * 64 + i] = 1 }
        h[1] = 2; h[64] = 2  // [[1, 2], [2, 1]]: eigenvalue −1; positive definite once λ > 1
        service.hessianOverride[q] = h
        let out = try Self.run(model, [:], service: service)
        for w in T.linears(layers: 1).prefix(3) {
            let values = try out[w]!.floats()
            #expect(values.allSatisfy(\.isFinite) && R.isTwoFour(values), "\(w)")
        }
        #expect(out.provenance.last?.contains("damping raised for model.layers.0.self_attn.q_proj (10.0)") == true)
    }

    @Test func dtypeIsKeptAndAlreadySparseLayersAreLeftAsTheyAre() throws {
        let model = try T.llama(dtype: .bf16)
        let out = try Self.run(model)
        for w in T.linears() {
            #expect(try out[w]!.dtype == .bf16 && R.isTwoFour(out[w]!.floats()), "\(w)")
        }
        let service = HessianCalibration()
        let again = try Self.run(out, [:], service: service)
        #expect(service.requests.isEmpty)
        #expect(try T.fingerprint(again) == T.fingerprint(out))
        #expect(again.provenance.last == "sparse-2:4: 0 linears pruned to 2:4 by SparseGPT (damp 0.01, block 128, sequential); 14 already 2:4, unchanged; 1 left dense")
    }

    @Test func excludedLayersAreUntouched() throws {
        let model = try T.llama(tied: false)
        let out = try Self.run(model, ["exclude": "*.down_proj,model.layers.0.self_attn.q_proj"])
        let excluded = Set([T.name(0, "mlp.down_proj.weight"), T.name(1, "mlp.down_proj.weight"), T.name(0, "self_attn.q_proj.weight")])
        for name in model.tensorNames {
            let same = try ModelDiff.bytes(out[name]!) == ModelDiff.bytes(model[name]!)
            if T.linears().contains(name) && !excluded.contains(name) {
                #expect(R.isTwoFour(try out[name]!.floats()) && !same, "\(name)")
            } else {
                #expect(same, "\(name) changed")
            }
        }
    }

    // MARK: - Composition

    @Test(arguments: ["fp8", "int8-sq"])
    func quantizingASparseModelKeepsEveryGroupTwoFour(quantizer: String) throws {
        let sparse = try Self.run(try T.llama())
        let quantized = try T.run(quantizer, sparse)
        #expect(quantized.quantization?.sparsity == "2:4")
        #expect(quantized.quantization?.algorithm == (quantizer == "fp8" ? "FP8" : "W8A8_SQ_PER_CHANNEL"))
        for w in T.linears() {
            let t = quantized[w]!
            #expect(t.quant != nil, "\(w) was not quantized")
            let stats = try StructuredSparsity.twoFour(t)
            #expect(stats.isTwoFour && stats.zeros >= stats.elements / 2, "\(w): \(stats)")
            // Every pruned position is still zero after dequantization.
            let before = try sparse[w]!.floats(), after = try t.quant!.dequantize(t).floats()
            #expect(before.indices.allSatisfy { before[$0] != 0 || after[$0] == 0 }, "\(w)")
        }
    }

    // MARK: - Errors

    @Test func errorsSayWhatAndWhere() throws {
        let model = try T.llama()
        let p = try T.pass(Self.pass)
        let noCalib = T.error { _ = try p.run(model, context: KilnContext(calibration: HessianCalibration())) }
        #expect(noCalib?.description == "sparse-2:4 --method sparsegpt needs --calib FILE (calibration text for the Hessians); --method magnitude needs none")
        let noService = T.error { _ = try p.run(model, context: KilnContext(options: ["calib": "c.txt"])) }
        #expect(noService?.description == "sparse-2:4 needs --calib FILE and a host that runs calibration (this one provides no calibration service)")
        #expect(T.error { _ = try Self.run(model, ["method": "obs"]) }?.description
            == "sparse-2:4 --method: expected one of sparsegpt, magnitude, found \"obs\"")
        #expect(T.error { _ = try Self.run(model, ["block-size": "30"]) }?.description
            == "sparse-2:4 --block-size: expected a multiple of 4 (groups of 4 must not straddle a block), found 30")

        let narrow = try CheckpointFixture.llama(hidden: 6, heads: 2, kvHeads: 1, intermediate: 12, layers: 1, vocab: 32)
        for method in ["magnitude", "sparsegpt"] {
            #expect(T.error { _ = try Self.run(narrow, ["method": method]) }?.description
                == "tensor \"model.layers.0.self_attn.q_proj.weight\": input width 6 is not a multiple of 4, so it has no 2:4 groups; leave it dense with --exclude")
        }

        let silent = HessianCalibration()
        silent.omitHessian = true
        let missing = T.error { _ = try Self.run(model, [:], service: silent) }
        #expect(missing?.kind == .internal)
        #expect(missing?.description == "tensor \"model.layers.0.self_attn.q_proj.weight\": calibration returned no Hessian (XᵀX) for this linear")

        let poisoned = HessianCalibration()
        var h = [Double](repeating: 0, count: 128 * 128)
        h[129] = .nan
        poisoned.hessianOverride[T.name(0, "mlp.down_proj.weight")] = h
        #expect(T.error { _ = try Self.run(model, [:], service: poisoned) }?.description
            == "tensor \"model.layers.0.mlp.down_proj.weight\" › Hessian: element [1, 1] is nan; calibration activations must be finite")
    }
}
