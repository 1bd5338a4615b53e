import Foundation
import KilnCore
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
            #expect(throws: KilnError.self, "\(s) → \(d)") {
                try buffer.withUnsafeMutableBytes { try DType.convert(4, from: s, $0.baseAddress!, to: d, $0.baseAddress! + 32) }
            }
            do {
                try buffer.withUnsafeMutableBytes { try DType.convert(4, from: s, $0.baseAddress!, to: d, $0.baseAddress! + 32) }
            } catch let error as KilnError {
                #expect(error.kind == .unsupported)
            }
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
            let bits = ConversionCheck.generatedSource(s)
            for d in ConversionCheck.floats where d != s {
                let failures = try ConversionCheck.bulkVersusScalar(s, d, bits)
                #expect(failures.isEmpty, "\(s) → \(d): \(failures.joined(separator: "; "))")
            }
        }
    }

    @Test("every conversion matches numpy + ml_dtypes bit for bit")
    func matchesMLDtypes() throws {
        guard let python = ProcessInfo.processInfo.environment["KILN_TEST_PYTHON"], !python.isEmpty else {
            print("skipping: KILN_TEST_PYTHON not set")
            return
        }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("kiln-dtype-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        try ConversionCheck.runScript(python: python, into: dir)

        var compared = 0
        var (f16NaNs, f16NaNExact) = (0, 0)
        for s in ConversionCheck.sources {
            let bits = try ConversionCheck.load(dir, "src_\(s.name)", width: s.bits / 8)
            for d in ConversionCheck.floats where d != s {
                let expected = try ConversionCheck.load(dir, "\(s.name)__\(d.name)", width: d.bits / 8)
                let report = try ConversionCheck.compare(s, d, bits, expected)
                #expect(report.failures.isEmpty, "\(s) → \(d) vs ml_dtypes: \(report.failures.joined(separator: "; "))")
                let scalar = try ConversionCheck.bulkVersusScalar(s, d, bits)
                #expect(scalar.isEmpty, "\(s) → \(d) bulk vs scalar: \(scalar.joined(separator: "; "))")
                compared += bits.count
                f16NaNs += report.f16NaNs
                f16NaNExact += report.f16NaNExact
            }
        }
        let f32 = try ConversionCheck.load(dir, "src_f32", width: 4)
        let saturated = try ConversionCheck.load(dir, "f32__f8e4m3fn_sat", width: 1)
        var failures: [String] = []
        for (i, u) in f32.enumerated() {
            let got = UInt64(FloatBits.f8e4m3fnSaturating(fromF32: Float(bitPattern: UInt32(u))))
            if got != saturated[i], failures.count < 5 { failures.append(ConversionCheck.hex(u, got, saturated[i])) }
        }
        #expect(failures.isEmpty, "f8e4m3fnSaturating vs np.clip + astype: \(failures.joined(separator: "; "))")
        compared += f32.count
        print("dtype conversions: \(compared) values compared with ml_dtypes; \(f16NaNExact) of \(f16NaNs) NaNs to/from f16 also bit-exact")
    }
}

/// Helpers for the suite: plain functions returning the first few failures in hex.
enum ConversionCheck {
    static let floats: [DType] = [.f64, .f32, .f16, .bf16, .f8e4m3fn, .f8e5m2]
    static let sources: [DType] = floats + [.i64, .i32, .i16, .i8, .u8, .bool]

    static func hex(_ input: UInt64, _ got: UInt64, _ want: UInt64) -> String {
        "in 0x\(String(input, radix: 16)): got 0x\(String(got, radix: 16)), want 0x\(String(want, radix: 16))"
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

    /// The scalar definition of one conversion, composed from the public `FloatBits` functions.
    static func reference(_ s: DType, _ d: DType, _ bits: UInt64) -> UInt64 {
        let narrow = { (x: Float) -> UInt64 in
            switch d {
            case .f64: return Double(x).bitPattern
            case .f32: return UInt64(x.bitPattern)
            case .f16: return UInt64(FloatBits.f16(fromF32: x))
            case .bf16: return UInt64(FloatBits.bf16(fromF32: x))
            case .f8e4m3fn: return UInt64(FloatBits.f8e4m3fn(fromF32: x))
            default: return UInt64(FloatBits.f8e5m2(fromF32: x))
            }
        }
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
        case .f64: return narrow(Float(Double(bitPattern: bits)))
        case .f32: return narrow(Float(bitPattern: UInt32(truncatingIfNeeded: bits)))
        case .f16: return narrow(FloatBits.f32(fromF16: b16))
        case .bf16: return narrow(FloatBits.f32(fromBF16: b16))
        case .f8e4m3fn: return narrow(FloatBits.f32(fromF8E4M3FN: b8))
        case .f8e5m2: return narrow(FloatBits.f32(fromF8E5M2: b8))
        case .i64: return narrow(Float(Int64(bitPattern: bits)))
        case .i32: return narrow(Float(Int32(truncatingIfNeeded: bits)))
        case .i16: return narrow(Float(Int16(truncatingIfNeeded: bits)))
        case .i8: return narrow(Float(Int8(truncatingIfNeeded: bits)))
        case .u8: return narrow(Float(b8))
        default: return narrow(b8 == 0 ? 0 : 1)
        }
    }

    /// Pack `bits` as little-endian elements of `width` bytes each.
    static func pack(_ bits: ArraySlice<UInt64>, width: Int) -> [UInt8] {
        switch width {
        case 8: return bits.map { $0.littleEndian }.withUnsafeBytes { Array($0) }
        case 4: return bits.map { UInt32(truncatingIfNeeded: $0).littleEndian }.withUnsafeBytes { Array($0) }
        case 2: return bits.map { UInt16(truncatingIfNeeded: $0).littleEndian }.withUnsafeBytes { Array($0) }
        default: return bits.map { UInt8(truncatingIfNeeded: $0) }
        }
    }

    static func unpack(_ bytes: ArraySlice<UInt8>, width: Int) -> [UInt64] {
        bytes.withUnsafeBytes { raw in
            (0..<raw.count / width).map { i in
                switch width {
                case 8: return UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self))
                case 4: return UInt64(UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: i * 4, as: UInt32.self)))
                case 2: return UInt64(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self)))
                default: return UInt64(raw[i])
                }
            }
        }
    }

    /// `DType.convert` on `bits[range]`, written at a one-byte offset (unaligned on both sides).
    static func bulk(_ s: DType, _ d: DType, _ bits: ArraySlice<UInt64>) throws -> [UInt64] {
        let (sw, dw) = (s.bits / 8, d.bits / 8)
        let src = [UInt8](repeating: 0, count: 1) + pack(bits, width: sw)
        var dst = [UInt8](repeating: 0, count: 1 + bits.count * dw)
        try src.withUnsafeBytes { from in
            try dst.withUnsafeMutableBytes { to in
                try DType.convert(bits.count, from: s, from.baseAddress! + 1, to: d, to.baseAddress! + 1)
            }
        }
        return unpack(dst[1...], width: dw)
    }

    /// Bulk against scalar on the whole vector and on short slices of odd lengths and offsets
    /// (SIMD tails, unaligned starts).
    static func bulkVersusScalar(_ s: DType, _ d: DType, _ bits: [UInt64]) throws -> [String] {
        let want = bits.map { reference(s, d, $0) }
        var failures: [String] = []
        let n = bits.count
        let slices = [0..<n, 1..<min(n, 1001), 0..<min(n, 1), 0..<min(n, 15), 3..<min(n, 20), 5..<min(n, 38),
                      max(0, n - 33)..<n]
        for range in slices where range.lowerBound <= range.upperBound {
            let got = try bulk(s, d, bits[range])
            for (k, i) in range.enumerated() where got[k] != want[i] && failures.count < 5 {
                failures.append("elements \(range): " + hex(bits[i], got[k], want[i]))
            }
        }
        return failures
    }

    /// Bulk against ml_dtypes. Exact bits everywhere, NaNs included, except NaNs to or from f16:
    /// numpy converts f16 in software here (payload kept) but with hardware instructions on some
    /// builds (e.g. aarch64, which quiet NaNs), so there only "NaN with the same sign" is required.
    static func compare(_ s: DType, _ d: DType, _ bits: [UInt64], _ expected: [UInt64])
        throws -> (failures: [String], f16NaNs: Int, f16NaNExact: Int)
    {
        guard bits.count == expected.count else { return (["\(bits.count) inputs, \(expected.count) expected"], 0, 0) }
        let got = try bulk(s, d, bits[...])
        let signBit = UInt64(1) << (d.bits - 1)
        let nanIsLoose = s == .f16 || d == .f16
        var failures: [String] = []
        var (f16NaNs, f16NaNExact) = (0, 0)
        for i in 0..<bits.count {
            let (g, e) = (got[i], expected[i])
            if nanIsLoose && isNaN(d, e) {
                f16NaNs += 1
                if g == e { f16NaNExact += 1 }
                if isNaN(d, g) && g & signBit == e & signBit { continue }
            } else if g == e {
                continue
            }
            if failures.count < 5 { failures.append(hex(bits[i], g, e)) }
        }
        return (failures, f16NaNs, f16NaNExact)
    }

    /// Inputs made here, so the bulk/scalar test runs without Python: every 16-bit pattern
    /// (every f16 / bf16 / fp8 value), f32 patterns across the whole range plus their f16 / bf16 /
    /// fp8 rounding neighbourhoods, and pseudo-random bits.
    static func generatedSource(_ s: DType) -> [UInt64] {
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        func next() -> UInt64 {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return state ^ (state >> 29)
        }
        switch s {
        case .f16, .bf16, .i16: return (0..<65536).map { UInt64($0) }
        case .f8e4m3fn, .f8e5m2, .i8, .u8: return (0..<256).map { UInt64($0) }
        case .bool: return [0, 1, 1, 0, 1]
        case .f32:
            let patterns = (0..<65536).flatMap { h -> [UInt64] in
                let top = UInt64(h) << 16
                return [top, top | 0x7FFF, top | 0x8000, top | 0x8001, top | 0x0FFF, top | 0x1000, top | 0x1001]
            }
            return patterns + (0..<100_000).map { _ in next() & 0xFFFF_FFFF }
        case .f64:
            let widened = generatedSource(.f32).map { Double(Float(bitPattern: UInt32($0))).bitPattern }
            return widened + (0..<100_000).map { _ in next() }
        default:
            return (0..<100_000).map { _ in next() >> (next() % 64) }.map { s == .i64 ? $0 : $0 & 0xFFFF_FFFF }
        }
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

    /// Load `name.bin` as little-endian elements of `width` bytes.
    static func load(_ dir: URL, _ name: String, width: Int) throws -> [UInt64] {
        let data = try Data(contentsOf: dir.appendingPathComponent(name + ".bin"))
        return unpack([UInt8](data)[...], width: width)
    }
}
