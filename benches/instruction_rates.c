/* Multiply-add rates of the instructions the CPU kernels are built on, on one core: each
 * instruction in 12 independent accumulator chains (enough to hide its latency), timed by the
 * thread's CPU time. A measurement of the CPU, not of faiss-nn; it runs instructions the CPU may
 * lack (SIGILL then: AVX-512 F / BF16 / VNNI, AVX-VNNI).
 *   gcc -O2 benches/instruction_rates.c -o /tmp/rates && /tmp/rates
 */
#include <stdio.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

#define N 100000000L
#define ONE(INS, R, D) INS " %%" R "13,%%" R "14,%%" R #D "\n\t"
#define TWELVE(INS, R)                                                                          \
    ONE(INS, R, 0) ONE(INS, R, 1) ONE(INS, R, 2) ONE(INS, R, 3) ONE(INS, R, 4) ONE(INS, R, 5)    \
    ONE(INS, R, 6) ONE(INS, R, 7) ONE(INS, R, 8) ONE(INS, R, 9) ONE(INS, R, 10) ONE(INS, R, 11)
#define RATE(NAME, INS, R, MACS)                                                                \
    {                                                                                           \
        double t0 = now();                                                                      \
        for (long i = 0; i < N / 12; i++) __asm__ volatile(TWELVE(INS, R)::: "memory");         \
        double t = now() - t0;                                                                  \
        printf("%-30s %6.1f G multiply-adds/s\n", NAME, (double)(N / 12 * 12) * MACS / t / 1e9); \
        fflush(stdout);                                                                         \
    }

int main(void) {
    RATE("vfmadd231ps ymm (f32)", "vfmadd231ps", "ymm", 8);
    RATE("vfmadd231ps zmm (f32)", "vfmadd231ps", "zmm", 16);
    RATE("vdpbf16ps zmm (bf16)", "vdpbf16ps", "zmm", 32);
    RATE("vpdpbusd zmm (int8)", "vpdpbusd", "zmm", 64);
    RATE("{vex} vpdpbusd ymm (int8)", "%{vex%} vpdpbusd", "ymm", 32);
    return 0;
}
