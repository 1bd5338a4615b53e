// Named constants of the INT4 passes: defaults, accepted ranges and the fixed search grids,
// with the reference implementation each one follows.

/// Named defaults and bounds of the INT4 passes.
enum Limits {
    /// Block size along the input dim when `group-size` is not given (ModelOpt's INT4_AWQ_CFG, TRT-LLM W4A16_AWQ).
    static let defaultGroupSize = 128
    /// Smallest and largest accepted `group-size` (powers of two only).
    static let groupSizes = 4...4096
    /// α grid points when `grid` is not given (llm-awq auto_scale `n_grid`).
    static let defaultGrid = 20
    static let grids = 1...1000
    /// Input rows the AWQ search asks the calibration to keep per group (llm-awq auto_clip `n_sample_token`).
    static let defaultCaptureRows = 512
    static let captureRows = 16...65_536
    /// Clip search: shrink the block max to `1 − i/clipGrid` for i in 0 ..< clipSteps (llm-awq auto_clip:
    /// n_grid 20, max_shrink 0.5).
    static let clipGrid = 20
    static let clipSteps = 10
    /// AWQ scales are clamped to this range before normalization (llm-awq, ModelOpt awq_lite).
    static let scaleRange: ClosedRange<Float> = 1e-4...1e4
    /// FP8 e4m3 largest magnitude: W4A8 input scale = amax / 448.
    static let fp8Max: Float = 448
}
