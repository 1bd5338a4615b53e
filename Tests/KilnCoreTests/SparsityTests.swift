import KilnCore
import Testing

/// `StructuredSparsity.twoFour`: counts on hand-made tensors (float, bf16, streamed in small chunks,
/// quantized with a zero point), the inspect text, and the shape errors.
@Suite struct SparsityTests {
    /// Rows of 8: groups [1,0,0,2] ok, [1,2,3,0] not, [0,0,0,0] ok, [-0,5,-0,nan] ok (nan is non-zero).
    static let values: [Float] = [1, 0, 0, 2, 1, 2, 3, 0, 0, 0, 0, 0, -0.0, 5, -0.0, .nan]

    @Test func countsGroupsConformingAndZeros() throws {
        let t = Tensor(name: "w", dtype: .f32, shape: [2, 8], values: Self.values)
        let s = try StructuredSparsity.twoFour(t)
        #expect(s == StructuredSparsity.Statistics(groups: 4, conforming: 3, zeros: 9))
        #expect(!s.isTwoFour && s.elements == 16)
        #expect(s.description == "2:4 75.0% of 4 groups, 56.3% zeros")
        #expect(try StructuredSparsity.twoFour(t.converted(to: .bf16)) == s)
        #expect(try StructuredSparsity.twoFour(Tensor(name: "e", dtype: .f32, shape: [0, 4], values: [Float]())).isTwoFour == false)
    }

    @Test func streamsAcrossChunkBoundaries() throws {
        // Chunks of 9 elements: groups straddle chunk boundaries, in owned and converted storage.
        let values: [Float] = (0..<1200).map { (i: Int) -> Float in
            let zero = i % 4 == 1 || i % 12 == 7
            return zero ? 0 : Float(i % 7 + 1)
        }
        let t = Tensor(name: "w", dtype: .f32, shape: [10, 120], values: values)
        let whole = try StructuredSparsity.twoFour(t)
        #expect(whole == StructuredSparsity.Statistics(groups: 300, conforming: 100, zeros: 400))
        #expect(try StructuredSparsity.twoFour(t, chunkBytes: 36) == whole)
        #expect(try StructuredSparsity.twoFour(t.converted(to: .f16), chunkBytes: 36) == whole)
    }

    @Test func measuresQuantizedWeightsOnTheirDequantizedValues() throws {
        // u8 payload with zero point 3: payload 3 is the weight 0, payload 0 is −3·s.
        let payload: [UInt8] = [3, 3, 7, 0, 3, 3, 3, 9]
        let spec = QuantSpec(format: .uint8, granularity: .perTensor,
                             scale: Tensor(name: "s", dtype: .f32, shape: [1], values: [Float(0.5)]),
                             zeroPoint: Tensor(name: "z", dtype: .u8, shape: [1], values: [UInt8(3)]))
        let t = Tensor(name: "q", dtype: .u8, shape: [1, 8], storage: .owned(TensorBuffer(values: payload)), quant: spec)
        #expect(try StructuredSparsity.twoFour(t) == StructuredSparsity.Statistics(groups: 2, conforming: 2, zeros: 5))
    }

    @Test func shapesWithoutGroupsOfFourAreErrorsNamingTheTensor() {
        let odd = Tensor(name: "model.layers.0.mlp.down_proj.weight", dtype: .f32, shape: [2, 6], values: [Float](repeating: 1, count: 12))
        #expect(throws: KilnError.self) { try StructuredSparsity.twoFour(odd) }
        do { _ = try StructuredSparsity.twoFour(odd) } catch {
            #expect("\(error)" == "tensor \"model.layers.0.mlp.down_proj.weight\": input width 6 is not a multiple of 4: no groups of 4 along the input dimension")
        }
        let vector = Tensor(name: "norm", dtype: .f32, shape: [8], values: [Float](repeating: 1, count: 8))
        #expect(!StructuredSparsity.appliesTo(vector) && !StructuredSparsity.appliesTo(odd))
        #expect(QuantizationRecord.sparseFloat().quantizesNothing)
        #expect(!QuantizationRecord(algorithm: "NONE", kvCacheAlgorithm: "FP8").quantizesNothing)
    }
}
