import Foundation
import KilnCore
import KilnTestKit
import Testing

/// Bit-exact dtype conversions: against numpy + ml_dtypes (Tools/verify/dtype_vectors.py, run with
/// `KILN_TEST_PYTHON`), and the bulk `DType.convert` loops against the scalar `FloatBits` functions.
@Suite("DType conversions")
struct DTypeConversionTests {
    @Test("ml_dtypes edge behaviour, written out")
    func knownEdges() {
        let nan = Float(bitPattern: 0x7FA0_0001)
        #expect(FloatBits.f8e4m3fn(fromF32: 448) == 0x7E)
        #expect(FloatBits.f8e4m3fn(fromF32: 464) == 0x7E)  // tie, 448 is even
        #expect(FloatBits.f8e4m3fn(fromF32: 465) == 0x7F)  // rounds past 448: NaN, no saturation
        #expect(FloatBits.f8e4m3fn(fromF32: -.infinity) == 0xFF)
        #expect(FloatBits.f8e4m3fn(fromF32: -nan) == 0xFF)
        #expect(FloatBits.f8e4m3fnSaturating(fromF32: 1e9) == 0x7E)
        #expect(FloatBits.f8e4m3fnSaturating(fromF32: -.infinity) == 0xFE)
        #expect(FloatBits.f8e4m3fnSaturating(fromF32: nan) == 0x7F)
        let wide: [Float] = [-.infinity, -465, -448.5, 0, 449, 1e30, .infinity, nan]
            + (0..<37).map { Float($0) * 17.5 - 300 }  // 45: two SIMD blocks and a tail
        var bytes = [UInt8](repeating: 0, count: wide.count)
        wide.withUnsafeBytes { src in
            bytes.withUnsafeMutableBytes { dst in
                FloatBits.f8e4m3fnSaturating(wide.count, fromF32: src.baseAddress!, to: dst.baseAddress!)
            }
        }
        #expect(bytes == wide.map { FloatBits.f8e4m3fnSaturating(fromF32: $0) })
        #expect(FloatBits.f8e5m2(fromF32: 61439) == 0x7B)
        #expect(FloatBits.f8e5m2(fromF32: 61440) == 0x7C)  // tie, rounds to inf
        #expect(FloatBits.f8e5m2(fromF32: -nan) == 0xFE)
        #expect(FloatBits.f16(fromF32: 65519) == 0x7BFF)
        #expect(FloatBits.f16(fromF32: 65520) == 0x7C00)
        #expect(FloatBits.f16(fromF32: Float(bitPattern: 0x7F80_0001)) == 0x7C01)  // numpy keeps it NaN
        #expect(FloatBits.bf16(fromF32: -nan) == 0xFFC0)
        #expect(FloatBits.bf16(fromF32: Float(bitPattern: 0x3F80_8000)) == 0x3F80)  // tie to even
        #expect(FloatBits.bf16(fromF32: Float(bitPattern: 0x3F81_8000)) == 0x3F82)
        #expect(FloatBits.f32(fromF8E4M3FN: 0x01) == 0x1p-9)
        #expect(FloatBits.f32(fromF8E5M2: 0xFC) == -.infinity)
        #expect(FloatBits.f32(fromF16: 0x0001) == 0x1p-24)
    }

    @Test("unsupported pairs throw .unsupported")
    func unsupportedPairs() throws {
        var buffer = [UInt8](repeating: 0, count: 64)
        let pairs: [(DType, DType)] = [(.i4, .f32), (.u4, .f16), (.fp4e2m1, .f32), (.f32, .i32), (.f16, .bool)]
        for (s, d) in pairs {
            let error = #expect(throws: KilnError.self, "\(s) → \(d)") {
                try buffer.withUnsafeMutableBytes { try DType.convert(4, from: s, $0.baseAddress!, to: d, $0.baseAddress! + 32) }
            }
            #expect(error?.kind == .unsupported)
        }
        let src: [UInt8] = [0x12, 0x34, 0x56]  // five packed i4 elements: a byte copy
        var dst = [UInt8](repeating: 0, count: 3)
        try src.withUnsafeBytes { s in
            try dst.withUnsafeMutableBytes { try DType.convert(5, from: .i4, s.baseAddress!, to: .i4, $0.baseAddress!) }
        }
        #expect(dst == src)
    }

    @Test("bulk convert equals the scalar functions, every pair, odd counts and offsets")
    func bulkMatchesScalar() throws {
        for s in ConversionCheck.sources {
            let src = ConversionCheck.generatedSource(s)
            for d in ConversionCheck.floats where d != s {
                let failures = try ConversionCheck.bulkVersusScalar(s, d, src)
                #expect(failures.isEmpty, "\(s) → \(d): \(failures.joined(separator: "; "))")
            }
        }
    }

    @Test("every conversion matches numpy + ml_dtypes bit for bit")
    func matchesMLDtypes() throws {
        let python = try TestEnvironment.python
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("kiln-dtype-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        try ConversionCheck.runScript(python: python, into: dir)

        var compared = 0
        var (f16NaNs, f16NaNExact) = (0, 0)
        for s in ConversionCheck.sources {
            let src = try ConversionCheck.load(dir, "src_\(s.name)")
            for d in ConversionCheck.floats where d != s {
                let expected = try ConversionCheck.load(dir, "\(s.name)__\(d.name)")
                let report = try ConversionCheck.compare(s, d, src, expected)
                #expect(report.failures.isEmpty, "\(s) → \(d) vs ml_dtypes: \(report.failures.joined(separator: "; "))")
                let scalar = try ConversionCheck.bulkVersusScalar(s, d, src)
                #expect(scalar.isEmpty, "\(s) → \(d) bulk vs scalar: \(scalar.joined(separator: "; "))")
                compared += src.count / (s.bits / 8)
                f16NaNs += report.f16NaNs
                f16NaNExact += report.f16NaNExact
            }
        }
        let f32 = try ConversionCheck.load(dir, "src_f32")
        let saturated = try ConversionCheck.load(dir, "f32__f8e4m3fn_sat")
        var failures: [String] = []
        f32.withUnsafeBytes { raw in
            for i in 0..<saturated.count {
                let u = ConversionCheck.element(raw, i, width: 4)
                let got = FloatBits.f8e4m3fnSaturating(fromF32: Float(bitPattern: UInt32(u)))
                if got != saturated[i] && failures.count < 5 {
                    failures.append(ConversionCheck.hex(u, UInt64(got), UInt64(saturated[i])))
                }
            }
        }
        #expect(failures.isEmpty, "f8e4m3fnSaturating vs np.clip + astype: \(failures.joined(separator: "; "))")
        var bulk = [UInt8](repeating: 0, count: saturated.count + 1)
        f32.withUnsafeBytes { src in
            bulk.withUnsafeMutableBytes { dst in
                FloatBits.f8e4m3fnSaturating(saturated.count, fromF32: src.baseAddress!, to: dst.baseAddress! + 1)
            }
        }
        #expect(bulk.dropFirst().elementsEqual(saturated), "bulk f8e4m3fnSaturating vs np.clip + astype")
        compared += saturated.count
        print("dtype conversions: \(compared) values compared with ml_dtypes; "
            + "\(f16NaNExact) of \(f16NaNs) NaNs to/from f16 also bit-exact")
    }
}

/// Helpers for the suite. Vectors are raw little-endian bytes (the host is little-endian: x86_64,
/// arm64); failures are reported as the first few inputs in hex.
enum ConversionCheck {
    static let floats: [DType] = [.f64, .f32, .f16, .bf16, .f8e4m3fn, .f8e5m2]
    static let sources: [DType] = floats + [.i64, .i32, .i16, .i8, .u8, .bool]

    static func hex(_ input: UInt64, _ got: UInt64, _ want: UInt64) -> String {
        "in 0x\(String(input, radix: 16)): got 0x\(String(got, radix: 16)), want 0x\(String(want, radix: 16))"
    }

    /// Element `i` of a buffer of `width`-byte elements, zero-extended.
    static func element(_ raw: UnsafeRawBufferPointer, _ i: Int, width: Int) -> UInt64 {
        switch width {
        case 8: return raw.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self)
        case 4: return UInt64(raw.loadUnaligned(fromByteOffset: i * 4, as: UInt32.self))
        case 2: return UInt64(raw.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self))
        default: return UInt64(raw[i])
        }
    }

    /// Is `bits` a NaN of float type `t`?
    static func isNaN(_ t: DType, _ bits: UInt64) -> Bool {
        switch t {
        case .f64: return bits & 0x7FFF_FFFF_FFFF_FFFF > 0x7FF0_0000_0000_0000
        case .f32: return bits & 0x7FFF_FFFF > 0x7F80_0000
        case .f16: return bits & 0x7FFF > 0x7C00
        case .bf16: return bits & 0x7FFF > 0x7F80
        case .f8e4m3fn: return bits & 0x7F == 0x7F
        case .f8e5m2: return bits & 0x7F > 0x7C
        default: return false
        }
    }

    /// f32 → `d` with the public scalar functions.
    static func narrow(_ x: Float, to d: DType) -> UInt64 {
        switch d {
        case .f64: return Double(x).bitPattern
        case .f32: return UInt64(x.bitPattern)
        case .f16: return UInt64(FloatBits.f16(fromF32: x))
        case .bf16: return UInt64(FloatBits.bf16(fromF32: x))
        case .f8e4m3fn: return UInt64(FloatBits.f8e4m3fn(fromF32: x))
        default: return UInt64(FloatBits.f8e5m2(fromF32: x))
        }
    }

    /// The scalar definition of one conversion, composed from the public `FloatBits` functions
    /// as `DType.convert` documents it.
    static func reference(_ s: DType, _ d: DType, _ bits: UInt64) -> UInt64 {
        let (b16, b8) = (UInt16(truncatingIfNeeded: bits), UInt8(truncatingIfNeeded: bits))
        switch (s, d) {
        case (.f64, .f16): return UInt64(FloatBits.f16(fromF64: Double(bitPattern: bits)))
        case (.f16, .f64): return FloatBits.f64(fromF16: b16).bitPattern
        case (.bf16, .f16) where isNaN(.bf16, bits): return UInt64(b16 & 0x8000 | 0x7E00)
        case (.i64, .f64): return Double(Int64(bitPattern: bits)).bitPattern
        case (.i32, .f64): return Double(Int32(truncatingIfNeeded: bits)).bitPattern
        default: break
        }
        switch s {
        case .f64: return narrow(Float(Double(bitPattern: bits)), to: d)
        case .f32: return narrow(Float(bitPattern: UInt32(truncatingIfNeeded: bits)), to: d)
        case .f16: return narrow(FloatBits.f32(fromF16: b16), to: d)
        case .bf16: return narrow(FloatBits.f32(fromBF16: b16), to: d)
        case .f8e4m3fn: return narrow(FloatBits.f32(fromF8E4M3FN: b8), to: d)
        case .f8e5m2: return narrow(FloatBits.f32(fromF8E5M2: b8), to: d)
        case .i64: return narrow(Float(Int64(bitPattern: bits)), to: d)
        case .i32: return narrow(Float(Int32(truncatingIfNeeded: bits)), to: d)
        case .i16: return narrow(Float(Int16(truncatingIfNeeded: bits)), to: d)
        case .i8: return narrow(Float(Int8(truncatingIfNeeded: bits)), to: d)
        case .u8: return narrow(Float(b8), to: d)
        default: return narrow(b8 == 0 ? 0 : 1, to: d)
        }
    }

    /// `DType.convert` of the raw elements `src`, read and written one byte past an aligned
    /// address (so both sides are unaligned).
    static func bulk(_ s: DType, _ d: DType, _ src: ArraySlice<UInt8>) throws -> [UInt8] {
        let count = src.count / (s.bits / 8)
        let shifted = [0] + src
        var dst = [UInt8](repeating: 0, count: 1 + count * (d.bits / 8))
        try shifted.withUnsafeBytes { from in
            try dst.withUnsafeMutableBytes { to in
                try DType.convert(count, from: s, from.baseAddress! + 1, to: d, to.baseAddress! + 1)
            }
        }
        return Array(dst[1...])
    }

    /// Bulk against scalar on the whole vector and on short slices of odd lengths and offsets
    /// (SIMD tails, unaligned starts).
    static func bulkVersusScalar(_ s: DType, _ d: DType, _ src: [UInt8]) throws -> [String] {
        let (sw, dw) = (s.bits / 8, d.bits / 8)
        let n = src.count / sw
        var failures: [String] = []
        let slices = [0..<n, 1..<min(n, 1001), 0..<min(n, 1), 0..<min(n, 15), 3..<min(n, 20), 5..<min(n, 38),
                      max(0, n - 33)..<n]
        for range in slices where range.lowerBound <= range.upperBound {
            let got = try bulk(s, d, src[range.lowerBound * sw..<range.upperBound * sw])
            src.withUnsafeBytes { input in
                got.withUnsafeBytes { output in
                    for (k, i) in range.enumerated() {
                        let x = element(input, i, width: sw)
                        let (g, want) = (element(output, k, width: dw), reference(s, d, x))
                        if g != want && failures.count < 5 { failures.append("elements \(range): " + hex(x, g, want)) }
                    }
                }
            }
        }
        return failures
    }

    /// Bulk against ml_dtypes. Exact bits everywhere, NaNs included, except NaNs to or from f16:
    /// numpy converts f16 in software here (payload kept) but with hardware instructions on some
    /// builds (e.g. aarch64, which quiet NaNs), so there only "NaN with the same sign" is required.
    static func compare(_ s: DType, _ d: DType, _ src: [UInt8], _ expected: [UInt8])
        throws -> (failures: [String], f16NaNs: Int, f16NaNExact: Int)
    {
        let (sw, dw) = (s.bits / 8, d.bits / 8)
        guard src.count / sw == expected.count / dw else {
            return (["\(src.count / sw) inputs, \(expected.count / dw) expected"], 0, 0)
        }
        let got = try bulk(s, d, src[...])
        let nanIsLoose = s == .f16 || d == .f16
        let identical = got.withUnsafeBytes { g in
            expected.withUnsafeBytes { e in memcmp(g.baseAddress!, e.baseAddress!, g.count) == 0 }
        }
        if identical && !nanIsLoose { return ([], 0, 0) }
        let signBit = UInt64(1) << (d.bits - 1)
        var failures: [String] = []
        var (f16NaNs, f16NaNExact) = (0, 0)
        src.withUnsafeBytes { input in
            got.withUnsafeBytes { output in
                expected.withUnsafeBytes { want in
                    for i in 0..<expected.count / dw {
                        let (g, e) = (element(output, i, width: dw), element(want, i, width: dw))
                        if nanIsLoose && isNaN(d, e) {
                            f16NaNs += 1
                            if g == e { f16NaNExact += 1 }
                            if isNaN(d, g) && g & signBit == e & signBit { continue }
                        } else if g == e {
                            continue
                        }
                        if failures.count < 5 { failures.append(hex(element(input, i, width: sw), g, e)) }
                    }
                }
            }
        }
        return (failures, f16NaNs, f16NaNExact)
    }

    /// Inputs made here, so the bulk/scalar test runs without Python: every 16-bit pattern
    /// (every f16 / bf16 / fp8 value), f32 patterns across the whole range around every
    /// bf16 / f16 rounding position, and pseudo-random bits.
    static func generatedSource(_ s: DType) -> [UInt8] {
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        func next() -> UInt64 {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return state ^ (state >> 29)
        }
        var values: [UInt64]
        switch s {
        case .f16, .bf16, .i16: values = (0..<65536).map { UInt64($0) }
        case .f8e4m3fn, .f8e5m2, .i8, .u8: values = (0..<256).map { UInt64($0) }
        case .bool: values = [0, 1, 1, 0, 1]
        case .f32, .f64:
            values = []
            for h in 0..<UInt64(65536) {
                let top = h << 16
                values += [top, top | 0x7FFF, top | 0x8000, top | 0x1000]
            }
            values += (0..<50_000).map { _ in next() & 0xFFFF_FFFF }
            if s == .f64 {
                values = values.map { Double(Float(bitPattern: UInt32($0))).bitPattern } + (0..<50_000).map { _ in next() }
            }
        default:
            values = (0..<50_000).map { _ in next() >> (next() % 64) }
        }
        let width = s.bits / 8
        var bytes = [UInt8](repeating: 0, count: values.count * width)
        bytes.withUnsafeMutableBytes { raw in
            for (i, v) in values.enumerated() {
                withUnsafeBytes(of: v.littleEndian) { le in
                    (raw.baseAddress! + i * width).copyMemory(from: le.baseAddress!, byteCount: width)
                }
            }
        }
        return bytes
    }

    /// Run Tools/verify/dtype_vectors.py into `dir`.
    static func runScript(python: String, into dir: URL) throws {
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Tools/verify/dtype_vectors.py")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let log = dir.appendingPathComponent("stderr.txt")
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = [script.path, dir.path]
        process.standardError = try FileHandle(forWritingTo: log)
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            let text = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
            throw KilnError(.internal, "\(script.path) exited \(process.terminationStatus): \(text)")
        }
    }

    /// The raw bytes of `name.bin`.
    static func load(_ dir: URL, _ name: String) throws -> [UInt8] {
        [UInt8](try Data(contentsOf: dir.appendingPathComponent(name + ".bin")))
    }
}
