import KilnCore

/// A 2-D row-major matrix of fixed-size elements in memory, seen either as stored or transposed.
///
/// Logical element (i, j) is stored at `i·cols + j`, or at `j·cols + i` when `transposed`
/// (a Conv1D `[in, out]` weight seen as `[out, in]`). A 1-D tensor of n elements is `[n, 1]`.
/// `Base` is the pointer kind: ``MatrixView`` reads, ``MutableMatrixView`` writes.
struct StridedMatrix<Base> {
    let base: Base
    /// Stored rows and columns.
    let storedRows: Int
    let storedCols: Int
    let elementSize: Int
    let transposed: Bool

    var rows: Int { transposed ? storedCols : storedRows }
    var cols: Int { transposed ? storedRows : storedCols }

    func offset(_ i: Int, _ j: Int) -> Int {
        (transposed ? j * storedCols + i : i * storedCols + j) * elementSize
    }
}

typealias MatrixView = StridedMatrix<UnsafeRawPointer>
typealias MutableMatrixView = StridedMatrix<UnsafeMutableRawPointer>

enum Blocks {
    /// `dst[dstRow + a, dstCol + b] = src[rows.lowerBound + a, cols.lowerBound + b]` for the whole block.
    /// Rows are copied with one memcpy each when neither side is transposed.
    /// - Complexity: O(block elements).
    static func copy(_ src: MatrixView, rows: Range<Int>, cols: Range<Int>, to dst: MutableMatrixView, row dstRow: Int, col dstCol: Int) {
        precondition(src.elementSize == dst.elementSize, "element sizes differ")
        precondition(rows.upperBound <= src.rows && cols.upperBound <= src.cols, "block outside the source")
        precondition(dstRow + rows.count <= dst.rows && dstCol + cols.count <= dst.cols, "block outside the destination")
        let e = src.elementSize
        if !src.transposed && !dst.transposed {
            let n = cols.count * e
            for (a, i) in rows.enumerated() {
                (dst.base + dst.offset(dstRow + a, dstCol)).copyMemory(from: src.base + src.offset(i, cols.lowerBound), byteCount: n)
            }
            return
        }
        for (a, i) in rows.enumerated() {
            for (b, j) in cols.enumerated() {
                (dst.base + dst.offset(dstRow + a, dstCol + b)).copyMemory(from: src.base + src.offset(i, j), byteCount: e)
            }
        }
    }

    /// Rows and columns of a tensor seen as a matrix (1-D: `[n, 1]`, 0-D: `[1, 1]`).
    static func dims(_ shape: Shape) -> (rows: Int, cols: Int) {
        switch shape.rank {
        case 0: return (1, 1)
        case 1: return (shape[0], 1)
        default: return (shape[0], shape.dims.dropFirst().reduce(1, *))
        }
    }

    /// Bytes per element for byte-aligned types (packed types must be unpacked first).
    static func elementSize(_ dtype: DType) -> Int { max(1, dtype.bits / 8) }
}
