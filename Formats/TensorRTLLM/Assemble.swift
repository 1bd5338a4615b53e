import KilnCore

/// A tensor seen as a 2-D matrix, ready to give blocks: as stored, transposed (Conv1D), or an
/// int4 payload unpacked to one value per byte.
struct Source {
    enum Unpack {
        case none
        /// IR i4/u4 layout (Int4Packing.unpackIR).
        case irInt4
        /// ModelOpt row-pair layout (`[rows / 2, cols]` bytes → `[rows, cols]` values).
        case rowPairs
    }

    let tensor: Tensor
    var transposed = false
    var unpack = Unpack.none

    /// Logical rows × cols (after unpacking and transposition).
    var dims: (rows: Int, cols: Int) {
        var (r, c) = Blocks.dims(tensor.shape)
        if unpack == .rowPairs { r *= 2 }
        return transposed ? (c, r) : (r, c)
    }

    /// Bytes per logical element.
    var elementSize: Int { unpack == .none ? Blocks.elementSize(tensor.dtype) : 1 }

    /// Call `body` with the matrix view (unpacking into a temporary buffer when needed).
    func withView<R>(_ body: (MatrixView) throws -> R) throws -> R {
        var (r, c) = Blocks.dims(tensor.shape)
        switch unpack {
        case .none:
            return try tensor.withBytes { bytes in
                try body(MatrixView(base: bytes.baseAddress ?? UnsafeRawPointer(bitPattern: 1)!, storedRows: r, storedCols: c,
                                    elementSize: elementSize, transposed: transposed))
            }
        case .irInt4:
            let values = try Int4Packing.unpackIR(tensor)
            return try values.withUnsafeBytes { bytes in
                try body(MatrixView(base: bytes.baseAddress ?? UnsafeRawPointer(bitPattern: 1)!, storedRows: r, storedCols: c,
                                    elementSize: 1, transposed: transposed))
            }
        case .rowPairs:
            let values = try tensor.withBytes { Int4Packing.unpackRowPairs($0, packedRows: r, cols: c) }
            r *= 2
            return try values.withUnsafeBytes { bytes in
                try body(MatrixView(base: bytes.baseAddress ?? UnsafeRawPointer(bitPattern: 1)!, storedRows: r, storedCols: c,
                                    elementSize: 1, transposed: transposed))
            }
        }
    }
}

/// One block of an assembled matrix: rows × cols of a source, or zero rows (padding).
struct Block {
    let source: Source?
    let rows: Range<Int>
    let cols: Range<Int>
    /// Row count when `source` is nil.
    var zeroRows = 0

    var rowCount: Int { source == nil ? zeroRows : rows.count }
}

enum Assemble {
    /// Stack `blocks` vertically into a `[Σ rows, cols]` row-major buffer of `elementSize` bytes.
    /// - Throws: whatever reading a source throws.
    /// - Complexity: O(output bytes) plus unpacking of int4 sources.
    static func rows(_ blocks: [Block], cols: Int, elementSize: Int) throws -> TensorBuffer {
        let total = blocks.reduce(0) { $0 + $1.rowCount }
        let out = TensorBuffer(count: total * cols * elementSize)
        let dst = MutableMatrixView(base: out.pointer, storedRows: total, storedCols: cols, elementSize: elementSize, transposed: false)
        var at = 0
        for b in blocks {
            if let s = b.source {
                precondition(b.cols.count == cols, "block width \(b.cols.count) ≠ \(cols)")
                try s.withView { Blocks.copy($0, rows: b.rows, cols: b.cols, to: dst, row: at, col: 0) }
            }
            at += b.rowCount
        }
        return out
    }

    /// Scatter pieces into a `[rows, cols]` destination (stored transposed when `transposed`):
    /// each piece copies `src[srcRows, all cols]` to destination rows starting at `row`, columns
    /// starting at `col`.
    static func scatter(_ pieces: [(source: Source, srcRows: Range<Int>, row: Int, col: Int)], rows: Int, cols: Int,
                        elementSize: Int, transposed: Bool) throws -> TensorBuffer {
        let out = TensorBuffer(count: rows * cols * elementSize)
        let dst = MutableMatrixView(base: out.pointer, storedRows: transposed ? cols : rows, storedCols: transposed ? rows : cols,
                                    elementSize: elementSize, transposed: transposed)
        for p in pieces {
            try p.source.withView { v in
                Blocks.copy(v, rows: p.srcRows, cols: 0..<v.cols, to: dst, row: p.row, col: p.col)
            }
        }
        return out
    }

    /// A lazy tensor whose bytes come from `produce` (run when the writer streams it).
    static func deferred(_ name: String, _ dtype: DType, _ shape: Shape, _ produce: @escaping @Sendable () throws -> TensorBuffer) -> Tensor {
        Tensor(name: name, dtype: dtype, shape: shape, storage: .deferred(produce))
    }

    /// A small f32 tensor holding `values`.
    static func f32(_ name: String, _ shape: Shape, _ values: [Float]) -> Tensor {
        Tensor(name: name, dtype: .f32, shape: shape, values: values)
    }
}
