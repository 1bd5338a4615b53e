// Optional AVX2 + FMA kernels of the INT4-AWQ pass (libKilnPassAWQ.so links them statically).
//
// Swift has no per-function target attributes, and a plugin built for x86-64-v3 would crash on an
// older CPU, so the two hot loops of the AWQ search live here, compiled with
// __attribute__((target("avx2,fma"))) and called only when kiln_awq_has_fma() says the CPU and the
// OS support them. The Swift implementations in Plugins/AWQ/Kernels.swift are the reference and
// the fallback; the results agree up to the rounding of fused multiply-adds.
#ifndef KILN_AWQ_KERNELS_H
#define KILN_AWQ_KERNELS_H

#ifdef __cplusplus
extern "C" {
#endif

/// 1 when this CPU runs AVX2 + FMA code and the OS saves YMM state (cpuid + xgetbv), else 0.
int kiln_awq_has_fma(void);

/// Σ_{i,o} (A·Bᵀ)[i,o]² for A row-major [a_rows, k] (a_rows a multiple of 6) and B packed in panels of
/// 16 rows (element (o, j) of panel p at p·16·k + j·16 + (o − 16p)), panels [panel_begin, panel_end).
/// With upper_triangular, row i of A is zero before column i. Requires kiln_awq_has_fma().
double kiln_awq_sum_of_squares_fma(const float *a, long a_rows, long k, int upper_triangular,
                                   const float *panels, long panel_begin, long panel_end);

/// In-place upper Cholesky factor of the row-major [n, n] matrix g (upper triangle read and written):
/// RᵀR = G + λI. Returns 1 on success, 0 when a pivot is not positive. Requires kiln_awq_has_fma().
int kiln_awq_cholesky_fma(double *g, long n, double lambda);

#ifdef __cplusplus
}
#endif

#endif
