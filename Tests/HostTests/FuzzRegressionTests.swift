import KilnCore
@testable import KilnHost
import Testing

/// Inputs the fuzz targets of Tools/fuzz found crashing the host, kept as regressions (issue 10).
/// Reader crashes reachable from the CLI are cases of the malformed corpus (Tools/corpus) instead.
@Suite struct FuzzRegressionTests {
    /// FuzzPlugin crash-da654e79: a "}" before the first "{" made the stamp body's range
    /// lowerBound > upperBound (a trap in `PluginStamp(parsing:)`).
    @Test func stampWithClosingBraceFirstIsNoStamp() {
        #expect(PluginStamp(parsing: "}{abi=1;sdk=0.1.0;toolchain=x") == nil)
        #expect(PluginStamp(parsing: "=clang}\u{0}KILN-ABI-STAMP{") == nil)
    }
}
