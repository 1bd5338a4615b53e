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

/// Scalar, bit-exact conversions between `Float` and the narrow float formats.
///
/// Every function agrees bit for bit with `np.float32(x).astype(T)` (numpy for f16,
/// ml_dtypes for bf16 / fp8), including NaN payloads, infinities and overflow. Inputs may be
/// any value, NaN included; outputs are the raw bits of the narrow type. A narrow value with
/// sign `s`, exponent field `e` and `M` mantissa bits `m` is
///
/// ```
/// (-1)^s · 2^(e − bias) · (1 + m / 2^M)    for e > 0 (normal)
/// (-1)^s · 2^(1 − bias) · (m / 2^M)        for e = 0 (subnormal)
/// ```
///
/// and a conversion to it picks the nearest such value, ties to the even `m`.
public enum FloatBits {
    /// f32 → f16 bits: round to nearest even; |x| ≥ 65520 → ±inf; NaN keeps its top 10 payload bits.
    ///
    /// A NaN whose kept payload would be zero becomes `0x7C01 | sign` (numpy's rule).
    @inlinable
    public static func f16(fromF32 x: Float) -> UInt16 {
        let u = x.bitPattern
        let sign = UInt16(truncatingIfNeeded: u >> 16) & 0x8000
        let a = u & 0x7FFF_FFFF
        if a > 0x7F80_0000 {
            let h = UInt16(truncatingIfNeeded: a >> 13) & 0x7FFF
            return sign | (h == 0x7C00 ? 0x7C01 : h)
        }
        if a >= 0x4780_0000 { return sign | 0x7C00 }  // ≥ 2^16, inf
        if a < 0x3880_0000 {  // below 2^-14: f16 subnormal or zero; ulp(0.5) = 2^-24
            let f = Float(bitPattern: a) + 0.5
            return sign | UInt16(truncatingIfNeeded: f.bitPattern &- 0x3F00_0000)
        }
        let odd = (a >> 13) & 1
        return sign | UInt16(truncatingIfNeeded: (a &- 0x3800_0000 &+ 0xFFF &+ odd) >> 13)
    }

    /// f64 → f16 bits, rounded once (numpy converts f64 directly, not through f32).
    @inlinable
    public static func f16(fromF64 x: Double) -> UInt16 {
        let u = x.bitPattern
        let sign = UInt16(truncatingIfNeeded: u >> 48) & 0x8000
        let a = u & 0x7FFF_FFFF_FFFF_FFFF
        if a > 0x7FF0_0000_0000_0000 {
            let h = UInt16(truncatingIfNeeded: a >> 42) & 0x7FFF
            return sign | (h == 0x7C00 ? 0x7C01 : h)
        }
        if a >= 0x40F0_0000_0000_0000 { return sign | 0x7C00 }
        if a < 0x3F10_0000_0000_0000 {  // ulp(2^28) = 2^-24
            let f = Double(bitPattern: a) + 0x1p28
            return sign | UInt16(truncatingIfNeeded: f.bitPattern &- 0x41B0_0000_0000_0000)
        }
        let odd = (a >> 42) & 1
        return sign | UInt16(truncatingIfNeeded: (a &- 0x3F00_0000_0000_0000 &+ 0x1FF_FFFF_FFFF &+ odd) >> 42)
    }

    /// f16 bits → f32, exact; NaN payloads are kept (signalling NaNs stay signalling, as numpy).
    @inlinable
    public static func f32(fromF16 h: UInt16) -> Float {
        let sign = UInt32(h & 0x8000) << 16
        let a = UInt32(h & 0x7FFF)
        if a >= 0x7C00 { return Float(bitPattern: sign | ((a << 13) &+ 0x7000_0000)) }
        if a >= 0x0400 { return Float(bitPattern: sign | ((a << 13) &+ 0x3800_0000)) }
        let f = Float(bitPattern: 0x3F00_0000 | a) - 0.5  // a · 2^-24, exact
        return Float(bitPattern: sign | f.bitPattern)
    }

    /// f16 bits → f64, exact; NaN payloads are kept (numpy's direct f16 → f64 cast).
    @inlinable
    public static func f64(fromF16 h: UInt16) -> Double {
        guard h & 0x7C00 == 0x7C00 else { return Double(f32(fromF16: h)) }
        let sign = UInt64(h & 0x8000) << 48
        return Double(bitPattern: sign | 0x7FF0_0000_0000_0000 | (UInt64(h & 0x3FF) << 42))
    }

    /// f32 → bf16 bits: round to nearest even (`(u + 0x7FFF + lsb) >> 16`); any NaN → `0x7FC0 | sign`.
    @inlinable
    public static func bf16(fromF32 x: Float) -> UInt16 {
        let u = x.bitPattern
        if u & 0x7FFF_FFFF > 0x7F80_0000 { return UInt16(truncatingIfNeeded: u >> 16) & 0x8000 | 0x7FC0 }
        return UInt16(truncatingIfNeeded: (u &+ 0x7FFF &+ ((u >> 16) & 1)) >> 16)
    }

    /// bf16 bits → f32, exact (`u << 16`; NaN payloads kept).
    @inlinable
    public static func f32(fromBF16 h: UInt16) -> Float {
        Float(bitPattern: UInt32(h) << 16)
    }

    /// f32 → f8e4m3fn bits, as ml_dtypes `astype`: round to nearest even, and anything that
    /// rounds above 448 (|x| > 464), ±inf and NaN become NaN (`0x7F | sign`). No saturation.
    @inlinable
    public static func f8e4m3fn(fromF32 x: Float) -> UInt8 {
        let u = x.bitPattern
        let sign = UInt8(truncatingIfNeeded: u >> 24) & 0x80
        let a = u & 0x7FFF_FFFF
        if a > 0x43E8_0000 { return sign | 0x7F }  // > 464, inf, NaN
        if a < 0x3C80_0000 {  // below 2^-6: subnormal or zero; ulp(2^14) = 2^-9
            let f = Float(bitPattern: a) + 0x1p14
            return sign | UInt8(truncatingIfNeeded: f.bitPattern &- 0x4680_0000)
        }
        let odd = (a >> 20) & 1
        return sign | UInt8(truncatingIfNeeded: (a &- 0x3C00_0000 &+ 0x7_FFFF &+ odd) >> 20)
    }

    /// f32 → f8e4m3fn bits for quantizers: clamps to ±448 first, so ±inf and |x| > 448 give ±448.
    ///
    /// Same as `np.clip(x, -448, 448).astype(float8_e4m3fn)`; NaN stays NaN (`0x7F | sign`):
    ///
    /// ```
    /// q = f8e4m3fn(min(max(x, -448), 448))
    /// ```
    @inlinable
    public static func f8e4m3fnSaturating(fromF32 x: Float) -> UInt8 {
        let u = x.bitPattern
        let a = u & 0x7FFF_FFFF
        if a > 0x43E0_0000 && a <= 0x7F80_0000 { return UInt8(truncatingIfNeeded: u >> 24) & 0x80 | 0x7E }
        return f8e4m3fn(fromF32: x)
    }

    /// Bulk ``f8e4m3fnSaturating(fromF32:)``: `count` f32 values at `src` → `count` bytes at `dst`.
    ///
    /// - Parameters:
    ///   - count: number of elements, ≥ 0.
    ///   - src: `count` little-endian f32 values, any alignment.
    ///   - dst: room for `count` bytes; must not overlap `src`.
    /// - Complexity: O(`count`), vectorized.
    public static func f8e4m3fnSaturating(_ count: Int, fromF32 src: UnsafeRawPointer, to dst: UnsafeMutableRawPointer) {
        precondition(count >= 0, "FloatBits.f8e4m3fnSaturating: negative count \(count)")
        ConversionKernels.f32ToE4M3(count, src, dst, saturating: true)
    }

    /// f8e4m3fn bits → f32, exact; S.1111.111 → `0x7FC00000 | sign` (ml_dtypes' quiet NaN).
    @inlinable
    public static func f32(fromF8E4M3FN b: UInt8) -> Float {
        let sign = UInt32(b & 0x80) << 24
        let a = UInt32(b & 0x7F)
        if a == 0x7F { return Float(bitPattern: sign | 0x7FC0_0000) }
        if a >= 0x08 { return Float(bitPattern: sign | ((a << 20) &+ 0x3C00_0000)) }
        return Float(bitPattern: sign | (Float(a) * 0x1p-9).bitPattern)
    }

    /// f32 → f8e5m2 bits, as ml_dtypes `astype`: round to nearest even, |x| ≥ 61440 → ±inf,
    /// ±inf → ±inf, NaN → `0x7E | sign` (payload dropped).
    @inlinable
    public static func f8e5m2(fromF32 x: Float) -> UInt8 {
        let u = x.bitPattern
        let sign = UInt8(truncatingIfNeeded: u >> 24) & 0x80
        let a = u & 0x7FFF_FFFF
        if a > 0x7F80_0000 { return sign | 0x7E }
        if a >= 0x4770_0000 { return sign | 0x7C }  // ≥ 61440, inf
        if a < 0x3880_0000 {  // below 2^-14; ulp(2^7) = 2^-16
            let f = Float(bitPattern: a) + 0x1p7
            return sign | UInt8(truncatingIfNeeded: f.bitPattern &- 0x4300_0000)
        }
        let odd = (a >> 21) & 1
        return sign | UInt8(truncatingIfNeeded: (a &- 0x3800_0000 &+ 0xF_FFFF &+ odd) >> 21)
    }

    /// f8e5m2 bits → f32, exact; NaN codes (0x7D–0x7F) → `0x7FC00000 | sign`.
    @inlinable
    public static func f32(fromF8E5M2 b: UInt8) -> Float {
        let sign = UInt32(b & 0x80) << 24
        let a = UInt32(b & 0x7F)
        if a > 0x7C { return Float(bitPattern: sign | 0x7FC0_0000) }
        if a == 0x7C { return Float(bitPattern: sign | 0x7F80_0000) }
        if a >= 0x04 { return Float(bitPattern: sign | ((a << 21) &+ 0x3800_0000)) }
        return Float(bitPattern: sign | (Float(a) * 0x1p-16).bitPattern)
    }
}
