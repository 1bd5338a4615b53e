// Bit-exact float conversions, matching numpy (f16, f32, f64) and ml_dtypes (bf16, fp8).
//
// Formats (sign.exponent.mantissa, bias):
//   f16      1.5.10  bias 15   max 65504    inf, NaN (payload kept, as numpy)
//   bf16     1.8.7   bias 127  max ~3.4e38  inf, NaN (ml_dtypes writes 0x7FC0 | sign)
//   f8e4m3fn 1.4.3   bias 7    max 448      no inf; S.1111.111 is NaN
//   f8e5m2   1.5.2   bias 15   max 57344    inf, NaN (ml_dtypes writes 0x7E | sign)
//
// Rounding is to nearest, ties to even. Normal results are rounded with integer
// arithmetic on the f32 bits; results in the target's subnormal range are rounded
// by the FPU with one f32 addition of a "magic" power of two whose ulp is the
// target's smallest subnormal (IEEE addition rounds to nearest even by default;
// FTZ/DAZ cannot change a result: no f32 subnormal is ever an operand that matters or a sum).
// The hot loops work on SIMD16 lanes and live in `ConversionKernels` (internal,
// non-generic) so that they are compiled and vectorized inside KilnCore.

extension DType {
    /// Convert `count` elements stored as `source` into `destination`, bit-exact with numpy / ml_dtypes.
    ///
    /// Float ↔ float among f64 f32 f16 bf16 f8e4m3fn f8e5m2, and i64 i32 i16 i8 u8 bool → any of
    /// those float types. Each result equals `src.astype(destination)` in numpy + ml_dtypes:
    /// narrow ← wide goes through f32 (one rounding from f32, as ml_dtypes does), except
    /// f64 → f16 (rounded once, as numpy) and integers → f64 (direct). bf16 → f16 writes NaN as
    /// `0x7E00 | sign` (ml_dtypes). A bool byte is 0 → 0, anything else → 1 (numpy). The same
    /// type on both sides is a byte copy (packed types too). f8e4m3fn results are not saturated
    /// (out of range → NaN, as ml_dtypes); quantizers use ``FloatBits/f8e4m3fnSaturating(_:fromF32:to:)``.
    ///
    /// - Parameters:
    ///   - count: number of elements, ≥ 0.
    ///   - source: element type of `src`.
    ///   - src: `count` elements of `source`, little-endian, any alignment.
    ///   - destination: element type to write.
    ///   - dst: room for `count` elements of `destination`, any alignment; must not overlap `src`.
    /// - Throws: `KilnError(.unsupported)` for packed types (i4, u4, fp4e2m1) and for
    ///   non-float destinations.
    /// - Complexity: O(`count`).
    public static func convert(
        _ count: Int, from source: DType, _ src: UnsafeRawPointer, to destination: DType,
        _ dst: UnsafeMutableRawPointer
    ) throws {
        precondition(count >= 0, "DType.convert: negative count \(count)")
        if source == destination {
            guard let bytes = source.byteCount(elements: count) else {
                throw KilnError(.invalidInput, "\(count) elements of \(source) overflow the address space")
            }
            dst.copyMemory(from: src, byteCount: bytes)
            return
        }
        typealias K = ConversionKernels
        guard K.isFloat(destination), K.isFloat(source) || K.isInteger(source) else {
            throw KilnError(
                .unsupported,
                "cannot convert \(source) to \(destination): supported are f64 f32 f16 bf16 f8e4m3fn f8e5m2 "
                    + "and i64 i32 i16 i8 u8 bool to f64 f32 f16 bf16 f8e4m3fn f8e5m2")
        }
        switch (source, destination) {
        case (.f32, _): K.encodeF32(count, src, to: destination, dst)
        case (_, .f32): K.decodeToF32(count, from: source, src, dst)
        case (.f64, .f16): K.f64ToF16(count, src, dst)
        case (.f16, .f64): K.f16ToF64(count, src, dst)
        case (.bf16, .f16): K.bf16ToF16(count, src, dst)
        case (_, .f64) where K.isInteger(source): K.integerToF64(count, from: source, src, dst)
        default: K.throughF32(count, from: source, src, to: destination, dst)
        }
    }
}
