#include "awq_kernels.h"

#include <cpuid.h>
#include <immintrin.h>

static int detect(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    const int fma = (c >> 12) & 1, osxsave = (c >> 27) & 1, avx = (c >> 28) & 1;
    if (!(fma && osxsave && avx)) return 0;
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    if ((lo & 6) != 6) return 0;  // XMM and YMM state saved by the OS
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    return (b >> 5) & 1;          // AVX2
}

int kiln_awq_has_fma(void) {
    static int cached = -1;  // a benign race: every thread computes the same value
    if (cached < 0) cached = detect();
    return cached;
}

// A 6 × 16 register tile: 12 accumulators + 2 panel vectors + 1 broadcast of the 16 YMM registers.
__attribute__((target("avx2,fma")))
double kiln_awq_sum_of_squares_fma(const float *a, long a_rows, long k, int upper_triangular,
                                   const float *panels, long panel_begin, long panel_end) {
    long block_rows = (192L << 10) / (k * 4 > 0 ? k * 4 : 1) / 6 * 6;
    if (block_rows < 6) block_rows = 6;
    if (block_rows > a_rows) block_rows = a_rows;
    double total = 0;
    for (long r0 = 0; r0 < a_rows; r0 += block_rows) {
        const long r1 = r0 + block_rows < a_rows ? r0 + block_rows : a_rows;
        for (long p = panel_begin; p < panel_end; p++) {
            const float *panel = panels + p * 16 * k;
            __m256 acc = _mm256_setzero_ps();
            for (long i = r0; i < r1; i += 6) {
                const float *a0 = a + i * k, *a1 = a0 + k, *a2 = a1 + k, *a3 = a2 + k, *a4 = a3 + k, *a5 = a4 + k;
                __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
                __m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
                for (long j = upper_triangular ? (i < k ? i : k) : 0; j < k; j++) {
                    const __m256 b0 = _mm256_loadu_ps(panel + j * 16), b1 = _mm256_loadu_ps(panel + j * 16 + 8);
                    __m256 x = _mm256_broadcast_ss(a0 + j);
                    c00 = _mm256_fmadd_ps(x, b0, c00); c01 = _mm256_fmadd_ps(x, b1, c01);
                    x = _mm256_broadcast_ss(a1 + j);
                    c10 = _mm256_fmadd_ps(x, b0, c10); c11 = _mm256_fmadd_ps(x, b1, c11);
                    x = _mm256_broadcast_ss(a2 + j);
                    c20 = _mm256_fmadd_ps(x, b0, c20); c21 = _mm256_fmadd_ps(x, b1, c21);
                    x = _mm256_broadcast_ss(a3 + j);
                    c30 = _mm256_fmadd_ps(x, b0, c30); c31 = _mm256_fmadd_ps(x, b1, c31);
                    x = _mm256_broadcast_ss(a4 + j);
                    c40 = _mm256_fmadd_ps(x, b0, c40); c41 = _mm256_fmadd_ps(x, b1, c41);
                    x = _mm256_broadcast_ss(a5 + j);
                    c50 = _mm256_fmadd_ps(x, b0, c50); c51 = _mm256_fmadd_ps(x, b1, c51);
                }
                acc = _mm256_fmadd_ps(c00, c00, acc); acc = _mm256_fmadd_ps(c01, c01, acc);
                acc = _mm256_fmadd_ps(c10, c10, acc); acc = _mm256_fmadd_ps(c11, c11, acc);
                acc = _mm256_fmadd_ps(c20, c20, acc); acc = _mm256_fmadd_ps(c21, c21, acc);
                acc = _mm256_fmadd_ps(c30, c30, acc); acc = _mm256_fmadd_ps(c31, c31, acc);
                acc = _mm256_fmadd_ps(c40, c40, acc); acc = _mm256_fmadd_ps(c41, c41, acc);
                acc = _mm256_fmadd_ps(c50, c50, acc); acc = _mm256_fmadd_ps(c51, c51, acc);
            }
            float lanes[8];
            _mm256_storeu_ps(lanes, acc);
            double sum = 0;
            for (int l = 0; l < 8; l++) sum += lanes[l];
            total += sum;
        }
    }
    return total;
}

__attribute__((target("avx2,fma")))
int kiln_awq_cholesky_fma(double *g, long n, double lambda) {
    for (long k = 0; k < n; k++) {
        const double d = g[k * n + k] + lambda;
        if (!(d > 0) || d > 1.7976931348623157e308) return 0;
        const double root = __builtin_sqrt(d), inv = 1 / root;
        double *rk = g + k * n;
        rk[k] = root;
        for (long j = k + 1; j < n; j++) rk[j] *= inv;
        for (long i = k + 1; i < n; i++) {
            const double f = rk[i];
            if (f == 0) continue;
            double *ri = g + i * n;
            const __m256d vf = _mm256_set1_pd(f);
            long j = i;
            for (; j + 4 <= n; j += 4) {
                _mm256_storeu_pd(ri + j, _mm256_fnmadd_pd(vf, _mm256_loadu_pd(rk + j), _mm256_loadu_pd(ri + j)));
            }
            for (; j < n; j++) ri[j] -= f * rk[j];
        }
    }
    return 1;
}
