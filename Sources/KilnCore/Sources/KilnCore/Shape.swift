/// A tensor shape: a list of non-negative dimensions, row-major.
public struct Shape: Hashable, Sendable, CustomStringConvertible, ExpressibleByArrayLiteral {
    public var dims: [Int]

    public init(_ dims: [Int]) { self.dims = dims }
    public init(arrayLiteral elements: Int...) { self.dims = elements }

    public var rank: Int { dims.count }
    public subscript(i: Int) -> Int { dims[i] }

    /// Number of elements (1 for a scalar).
    /// - Returns: nil if a dimension is negative or the product overflows.
    public var elementCount: Int? {
        var n = 1
        for d in dims {
            guard d >= 0 else { return nil }
            let (p, o) = n.multipliedReportingOverflow(by: d)
            if o { return nil }
            n = p
        }
        return n
    }

    /// `[64, 172]`
    public var description: String { "[" + dims.map(String.init).joined(separator: ", ") + "]" }
}
