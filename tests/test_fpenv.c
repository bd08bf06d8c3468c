/* tests/test_fpenv.c - the floating-point environment of the CPU kernels (nam.h >>kernels,
   "Floating-point environment and subnormals"; mechanism in >>kernel-common).

   Checks:
     1. every kernel entry (nam_ssd on both CPU backends, nam_ssd_step, nam_conv1d,
        nam_attention on both, the MoE route / dispatch / permute / ffn / combine, the
        workspace queries, nam__sgemm, and an entry that fails validation) is called from a
        thread whose environment is set to each of: the default, round toward zero, round
        down with every status flag set, round up with FTZ and DAZ already on, and every
        exception unmasked (x86-64 MXCSR; AArch64 FPCR; elsewhere the <fenv.h> rounding
        mode). After the call the register must read exactly what the test wrote, and the
        outputs must be bit-identical to those of the default-environment call (nam computes
        in its own environment, so the caller's rounding cannot reach a result; with every
        exception unmasked an escaped exception would kill the test with SIGFPE). The one
        exception: under NAM_KEEP_SUBNORMALS a caller's own FTZ/DAZ bits stay in force, so
        that row checks the register only.
     2. what nam does with subnormals, against values fixed by the documentation (not by
        the code): with the flush (x86-64 and AArch64 builds without NAM_KEEP_SUBNORMALS)
        subnormal f32 inputs read as 0 in arithmetic, so conv1d, GEMM, SSD, attention and
        combine over subnormal data give exactly 0, also on the worker threads (2 threads);
        results below FLT_MIN are 0; nam_moe_permute, a pure move, keeps the bits. Under
        NAM_KEEP_SUBNORMALS the same calls must give the IEEE (nonzero) results.
   The caller environments are written with stmxcsr/ldmxcsr (x86-64) or mrs/msr (AArch64)
   here, independently of nam's own helpers.
   Output (tests/test.h): one line per check, "ok <desc>", "FAIL <desc>: <why>" or "skip <desc>: <reason>";
   last line "test_fpenv: N passed, M failed"; exit status 1 on any failure.

   gcc -std=c99 -O2 -Wall -Wextra -Werror -pedantic -I/usr/include/stb tests/test_fpenv.c -o build/test_fpenv -lstb -lm -lpthread
   (and with -DNAM_KEEP_SUBNORMALS for the opt-out build) */
#define NAM_IMPLEMENTATION
#include "test.h"

#include <float.h>

/* ---- the caller's environment, read and written without nam ----------------------------- */
#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
#define ENV_KIND "MXCSR"
#define ENV_DEFAULT 0x1F80u
typedef unsigned int envword;
static envword env_get(void) { envword v; __asm__ __volatile__("stmxcsr %0" : "=m"(v) : : "memory"); return v; }
static void env_set(envword v) { __asm__ __volatile__("ldmxcsr %0" : : "m"(v) : "memory"); }
static const struct { envword v; const char *name; int ftz; } g_envs[] = {
    {0x1F80u, "default 0x1F80", 0},
    {0x7F80u, "round toward zero 0x7F80", 0},
    {0x3FBFu, "round down, all status flags set 0x3FBF", 0},
    {0xDFC0u, "round up, FTZ and DAZ on 0xDFC0", 1},
    {0x0000u, "every exception unmasked 0x0000", 0},
};
#define FLUSH_PLATFORM 1
#elif (defined(__GNUC__) || defined(__clang__)) && defined(__aarch64__)
#define ENV_KIND "FPCR"
#define ENV_DEFAULT 0u
typedef uint64_t envword;
static envword env_get(void) { envword v; __asm__ __volatile__("mrs %0, fpcr" : "=r"(v) : : "memory"); return v; }
static void env_set(envword v) { __asm__ __volatile__("msr fpcr, %0" : : "r"(v) : "memory"); }
static const struct { envword v; const char *name; int ftz; } g_envs[] = {
    {0u, "default", 0},
    {UINT64_C(3) << 22, "round toward zero", 0},
    {(UINT64_C(1) << 24) | (UINT64_C(1) << 22), "round up, FZ on", 1},
};
#define FLUSH_PLATFORM 1
#else
#include <fenv.h>
#define ENV_KIND "rounding mode"
#define ENV_DEFAULT FE_TONEAREST
typedef int envword;
static envword env_get(void) { return fegetround(); }
static void env_set(envword v) { fesetround(v); }
static const struct { envword v; const char *name; int ftz; } g_envs[] = {
    {FE_TONEAREST, "to nearest", 0},
#ifdef FE_TOWARDZERO
    {FE_TOWARDZERO, "toward zero", 0},
#endif
};
#define FLUSH_PLATFORM 0
#endif
#if FLUSH_PLATFORM && !defined(NAM_KEEP_SUBNORMALS)
#define EXPECT_FLUSH 1
#else
#define EXPECT_FLUSH 0
#endif

/* ---- inputs --------------------------------------------------------------------------------- */
static float *frand(size_t n, float lo, float hi) { return (float *)test_rand_buf((int64_t)n, NAM_F32, lo, hi); }
static float *ffill(size_t n, float v) {
    float *p = (float *)test_alloc(sizeof(float) * n);
    size_t i;
    for (i = 0; i < n; i++) p[i] = v;
    return p;
}

/* sizes */
enum { SB = 1, SL = 128, SH = 2, SP = 16, SN = 16 };                 /* ssd */
enum { CL = 32, CC = 24, CW = 4 };                                   /* conv1d */
enum { AS = 40, AHQ = 4, AHK = 2, AD = 32 };                         /* attention */
enum { MT = 24, ME = 6, MK = 2, MH = 32, MF = 48 };                  /* moe */
enum { GM = 20, GN = 36, GK = 50 };                                  /* gemm */

static nam_ssd_desc g_ssd, g_ssd_ref;
static void *g_ssd_ws, *g_ssd_ref_ws;
static size_t g_ssd_need, g_ssd_ref_need, g_ws_out;
static nam_ssd_step_desc g_step;
static float *g_step_state0;
static nam_conv1d_desc g_conv;
static nam_attention_desc g_att, g_att_ref;
static void *g_att_ws, *g_att_ref_ws;
static size_t g_att_need, g_att_ref_need;
static nam_moe_route_desc g_route;
static nam_moe_dispatch_desc g_plan, g_disp;
static nam_tensor g_tokens, g_perm, g_eout, g_w, g_comb;
static nam_moe_ffn_desc g_ffn;
static void *g_ffn_ws;
static size_t g_ffn_need;
static float *g_ga, *g_gb, *g_gc, *g_gpack;

static void setup(void) {
    nam_error e;
    int64_t i;
    /* SSD: nam-bench's worst case (A from U[-8,-1], dt = softplus(U[-3,0])), so the kernel
       meets values in the subnormal band; D, z, 2 threads */
    {
        float *A = frand(SH, -8.0f, -1.0f);
        g_ssd.x = test_tensor(frand(SB * SL * SH * SP, -1, 1), NAM_F32, 4, SB, SL, SH, SP);
        g_ssd.dt = test_tensor(frand(SB * SL * SH, -3, 0), NAM_F32, 3, SB, SL, SH, 0);
        g_ssd.A = test_tensor(A, NAM_F32, 1, SH, 0, 0, 0);
        g_ssd.B = test_tensor(frand(SB * SL * SN, -1, 1), NAM_F32, 4, SB, SL, 1, SN);
        g_ssd.C = test_tensor(frand(SB * SL * SN, -1, 1), NAM_F32, 4, SB, SL, 1, SN);
        g_ssd.D = test_tensor(frand(SH, -1, 1), NAM_F32, 1, SH, 0, 0, 0);
        g_ssd.z = test_tensor(frand(SB * SL * SH * SP, -2, 2), NAM_F32, 4, SB, SL, SH, SP);
        g_ssd.out = test_tensor(test_alloc(4 * SB * SL * SH * SP), NAM_F32, 4, SB, SL, SH, SP);
        g_ssd.dt_softplus = 1;
        g_ssd.chunk_size = 32;
        g_ssd.threads = 2;
        g_ssd.backend = NAM_BACKEND_CPU;
        g_ssd_ref = g_ssd;
        g_ssd_ref.backend = NAM_BACKEND_CPU_REF;
        g_ssd_ref.out = test_tensor(test_alloc(4 * SB * SL * SH * SP), NAM_F32, 4, SB, SL, SH, SP);
        if (nam_ssd_workspace_size(&g_ssd, &g_ssd_need, &e) != NAM_OK || nam_ssd_workspace_size(&g_ssd_ref, &g_ssd_ref_need, &e) != NAM_OK) {
            fprintf(stderr, "test_fpenv: ssd setup: %s\n", e.message);
            exit(2);
        }
        g_ssd_ws = test_alloc(g_ssd_need);
        g_ssd_ref_ws = test_alloc(g_ssd_ref_need);
    }
    /* decode step: state reset to g_step_state0 before every call */
    g_step.x = test_tensor(frand(SB * SH * SP, -1, 1), NAM_F32, 3, SB, SH, SP, 0);
    g_step.dt = test_tensor(frand(SB * SH, -3, 0), NAM_F32, 2, SB, SH, 0, 0);
    g_step.A = g_ssd.A;
    g_step.B = test_tensor(frand(SB * SN, -1, 1), NAM_F32, 3, SB, 1, SN, 0);
    g_step.C = test_tensor(frand(SB * SN, -1, 1), NAM_F32, 3, SB, 1, SN, 0);
    g_step.D = g_ssd.D;
    g_step_state0 = frand(SB * SH * SP * SN, -1, 1);
    g_step.state = test_tensor(test_alloc(4 * SB * SH * SP * SN), NAM_F32, 4, SB, SH, SP, SN);
    g_step.out = test_tensor(test_alloc(4 * SB * SH * SP), NAM_F32, 3, SB, SH, SP, 0);
    g_step.dt_softplus = 1;
    /* conv1d + SiLU, 2 threads */
    g_conv.x = test_tensor(frand(CL * CC, -1, 1), NAM_F32, 3, 1, CL, CC, 0);
    g_conv.weight = test_tensor(frand(CC * CW, -1, 1), NAM_F32, 2, CC, CW, 0, 0);
    g_conv.bias = test_tensor(frand(CC, -1, 1), NAM_F32, 1, CC, 0, 0, 0);
    g_conv.out = test_tensor(test_alloc(4 * CL * CC), NAM_F32, 3, 1, CL, CC, 0);
    g_conv.silu = 1;
    g_conv.threads = 2;
    /* attention, causal GQA, both backends */
    g_att.q = test_tensor(frand(AS * AHQ * AD, -1, 1), NAM_F32, 4, 1, AS, AHQ, AD);
    g_att.k = test_tensor(frand(AS * AHK * AD, -1, 1), NAM_F32, 4, 1, AS, AHK, AD);
    g_att.v = test_tensor(frand(AS * AHK * AD, -1, 1), NAM_F32, 4, 1, AS, AHK, AD);
    g_att.out = test_tensor(test_alloc(4 * AS * AHQ * AD), NAM_F32, 4, 1, AS, AHQ, AD);
    g_att.causal = 1;
    g_att.threads = 2;
    g_att.backend = NAM_BACKEND_CPU;
    g_att_ref = g_att;
    g_att_ref.backend = NAM_BACKEND_CPU_REF;
    g_att_ref.out = test_tensor(test_alloc(4 * AS * AHQ * AD), NAM_F32, 4, 1, AS, AHQ, AD);
    if (nam_attention_workspace_size(&g_att, &g_att_need, &e) != NAM_OK || nam_attention_workspace_size(&g_att_ref, &g_att_ref_need, &e) != NAM_OK) {
        fprintf(stderr, "test_fpenv: attention setup: %s\n", e.message);
        exit(2);
    }
    g_att_ws = test_alloc(g_att_need);
    g_att_ref_ws = test_alloc(g_att_ref_need);
    /* MoE: route once (default environment) for the plan the later calls share */
    g_route.logits = test_tensor(frand(MT * ME, -2, 2), NAM_F32, 2, MT, ME, 0, 0);
    g_route.topk_idx = test_tensor(test_alloc(4 * MT * MK), NAM_I32, 2, MT, MK, 0, 0);
    g_route.topk_weight = test_tensor(test_alloc(4 * MT * MK), NAM_F32, 2, MT, MK, 0, 0);
    g_route.topk = MK;
    g_plan.num_experts = ME;
    g_plan.topk_idx = test_tensor(test_alloc(4 * MT * MK), NAM_I32, 2, MT, MK, 0, 0);
    g_plan.counts = test_tensor(test_alloc(4 * ME), NAM_I32, 1, ME, 0, 0, 0);
    g_plan.offsets = test_tensor(test_alloc(4 * (ME + 1)), NAM_I32, 1, ME + 1, 0, 0, 0);
    g_plan.rows = test_tensor(test_alloc(4 * MT * MK), NAM_I32, 1, MT * MK, 0, 0, 0);
    g_w = test_tensor(test_alloc(4 * MT * MK), NAM_F32, 2, MT, MK, 0, 0);
    {
        nam_moe_route_desc r = g_route;
        r.topk_idx = g_plan.topk_idx;
        r.topk_weight = g_w;
        if (nam_moe_route(&r, &e) != NAM_OK || nam_moe_dispatch(&g_plan, &e) != NAM_OK) {
            fprintf(stderr, "test_fpenv: moe setup: %s\n", e.message);
            exit(2);
        }
    }
    g_disp = g_plan;
    g_disp.counts = test_tensor(test_alloc(4 * ME), NAM_I32, 1, ME, 0, 0, 0);
    g_disp.offsets = test_tensor(test_alloc(4 * (ME + 1)), NAM_I32, 1, ME + 1, 0, 0, 0);
    g_disp.rows = test_tensor(test_alloc(4 * MT * MK), NAM_I32, 1, MT * MK, 0, 0, 0);
    g_tokens = test_tensor(frand(MT * MH, -1, 1), NAM_F32, 2, MT, MH, 0, 0);
    g_perm = test_tensor(test_alloc(4 * MT * MK * MH), NAM_F32, 2, MT * MK, MH, 0, 0);
    g_eout = test_tensor(frand(MT * MK * MH, -1, 1), NAM_F32, 2, MT * MK, MH, 0, 0);
    g_comb = test_tensor(test_alloc(4 * MT * MH), NAM_F32, 2, MT, MH, 0, 0);
    g_ffn.in = test_tensor(frand(MT * MK * MH, -1, 1), NAM_F32, 2, MT * MK, MH, 0, 0);
    g_ffn.w1 = test_tensor(frand(ME * MF * MH, -0.2f, 0.2f), NAM_F32, 3, ME, MF, MH, 0);
    g_ffn.w3 = test_tensor(frand(ME * MF * MH, -0.2f, 0.2f), NAM_F32, 3, ME, MF, MH, 0);
    g_ffn.w2 = test_tensor(frand(ME * MH * MF, -0.2f, 0.2f), NAM_F32, 3, ME, MH, MF, 0);
    g_ffn.out = test_tensor(test_alloc(4 * MT * MK * MH), NAM_F32, 2, MT * MK, MH, 0, 0);
    g_ffn.plan = &g_plan;
    g_ffn.threads = 2;
    if (nam_moe_ffn_workspace_size(&g_ffn, &g_ffn_need, &e) != NAM_OK) {
        fprintf(stderr, "test_fpenv: moe ffn setup: %s\n", e.message);
        exit(2);
    }
    g_ffn_ws = test_alloc(g_ffn_need);
    /* GEMM */
    g_ga = frand(GM * GK, -1, 1);
    g_gb = frand(GK * GN, -1, 1);
    g_gc = (float *)test_alloc(4 * GM * GN);
    g_gpack = (float *)test_alloc(sizeof(float) * nam__sgemm_pack_floats(GM, GN, GK));
    for (i = 0; i < SB * SH * SP * SN; i++) NAM__CAST(float *, g_step.state.data)[i] = g_step_state0[i];
}

/* ---- the calls: each only calls nam (nothing else runs in the caller's environment) -------- */
static nam_error g_e;
static nam_status k_ssd(void) { return nam_ssd(&g_ssd, g_ssd_ws, g_ssd_need, &g_e); }
static nam_status k_ssd_ref(void) { return nam_ssd(&g_ssd_ref, g_ssd_ref_ws, g_ssd_ref_need, &g_e); }
static nam_status k_ssd_ws(void) { return nam_ssd_workspace_size(&g_ssd, &g_ws_out, &g_e); }
static nam_status k_ssd_bad(void) { return nam_ssd(NULL, NULL, 0, &g_e); }
static nam_status k_step(void) {
    memcpy(g_step.state.data, g_step_state0, 4 * SB * SH * SP * SN);
    return nam_ssd_step(&g_step, &g_e);
}
static nam_status k_conv(void) { return nam_conv1d(&g_conv, &g_e); }
static nam_status k_att(void) { return nam_attention(&g_att, g_att_ws, g_att_need, &g_e); }
static nam_status k_att_ref(void) { return nam_attention(&g_att_ref, g_att_ref_ws, g_att_ref_need, &g_e); }
static nam_status k_att_ws(void) { return nam_attention_workspace_size(&g_att, &g_ws_out, &g_e); }
static nam_status k_route(void) { return nam_moe_route(&g_route, &g_e); }
static nam_status k_disp(void) { return nam_moe_dispatch(&g_disp, &g_e); }
static nam_status k_disp_ws(void) { return nam_moe_dispatch_workspace_size(&g_disp, &g_ws_out, &g_e); }
static nam_status k_perm(void) { return nam_moe_permute(&g_tokens, &g_plan, &g_perm, &g_e); }
static nam_status k_ffn(void) { return nam_moe_ffn(&g_ffn, g_ffn_ws, g_ffn_need, &g_e); }
static nam_status k_ffn_ws(void) { return nam_moe_ffn_workspace_size(&g_ffn, &g_ws_out, &g_e); }
static nam_status k_comb(void) { return nam_moe_combine(&g_eout, &g_plan, &g_w, &g_comb, &g_e); }
static nam_status k_gemm(void) {
    nam__sgemm(GM, GN, GK, g_ga, GK, g_gb, GN, 0, 0.0f, g_gc, GN, g_gpack);
    return NAM_OK;
}

typedef struct kcall {
    const char *name;
    nam_status (*fn)(void);
    nam_status want;
    void *out;          /* compared bit for bit across environments (NULL: g_ws_out) */
    size_t bytes;
} kcall;

static void test_caller_env(void) {
    kcall k[18];
    unsigned char *base[18];
    int nk = 0, i, j;
    size_t nenv = sizeof g_envs / sizeof g_envs[0];
#define KC(nm, f, w, o, b) do { k[nk].name = nm; k[nk].fn = f; k[nk].want = w; k[nk].out = o; k[nk].bytes = b; nk++; } while (0)
    KC("nam_ssd (cpu, 2 threads)", k_ssd, NAM_OK, g_ssd.out.data, 4 * SB * SL * SH * SP);
    KC("nam_ssd (cpu-ref)", k_ssd_ref, NAM_OK, g_ssd_ref.out.data, 4 * SB * SL * SH * SP);
    KC("nam_ssd_workspace_size", k_ssd_ws, NAM_OK, NULL, sizeof(size_t));
    KC("nam_ssd with a NULL desc (error path)", k_ssd_bad, NAM_ERR_INVALID_ARG, NULL, 0);
    KC("nam_ssd_step", k_step, NAM_OK, g_step.out.data, 4 * SB * SH * SP);
    KC("nam_conv1d (2 threads)", k_conv, NAM_OK, g_conv.out.data, 4 * CL * CC);
    KC("nam_attention (cpu, 2 threads)", k_att, NAM_OK, g_att.out.data, 4 * AS * AHQ * AD);
    KC("nam_attention (cpu-ref)", k_att_ref, NAM_OK, g_att_ref.out.data, 4 * AS * AHQ * AD);
    KC("nam_attention_workspace_size", k_att_ws, NAM_OK, NULL, sizeof(size_t));
    KC("nam_moe_route", k_route, NAM_OK, g_route.topk_weight.data, 4 * MT * MK);
    KC("nam_moe_dispatch", k_disp, NAM_OK, g_disp.rows.data, 4 * MT * MK);
    KC("nam_moe_dispatch_workspace_size", k_disp_ws, NAM_OK, NULL, sizeof(size_t));
    KC("nam_moe_permute", k_perm, NAM_OK, g_perm.data, 4 * MT * MK * MH);
    KC("nam_moe_ffn (2 threads)", k_ffn, NAM_OK, g_ffn.out.data, 4 * MT * MK * MH);
    KC("nam_moe_ffn_workspace_size", k_ffn_ws, NAM_OK, NULL, sizeof(size_t));
    KC("nam_moe_combine", k_comb, NAM_OK, g_comb.data, 4 * MT * MH);
    KC("nam__sgemm", k_gemm, NAM_OK, g_gc, 4 * GM * GN);
#undef KC
    /* baselines in the default environment */
    env_set(ENV_DEFAULT);
    for (i = 0; i < nk; i++) {
        nam_status st = k[i].fn();
        void *o = k[i].out ? k[i].out : (void *)&g_ws_out;
        base[i] = (unsigned char *)test_alloc(k[i].bytes);
        memcpy(base[i], o, k[i].bytes);
        if (st != k[i].want) {
            char why[400];
            snprintf(why, sizeof why, "status %s, expected %s: %.300s", nam_status_str(st), nam_status_str(k[i].want), g_e.message);
            test_check(0, k[i].name, why);
        }
    }
    for (j = 0; j < (int)nenv; j++)
        for (i = 0; i < nk; i++) {
            envword after;
            nam_status st;
            char desc[300], why[500];
            void *o = k[i].out ? k[i].out : (void *)&g_ws_out;
            int same;
            memset(o, 0xA5, k[i].bytes);                 /* a result must be written again */
            env_set(g_envs[j].v);
            st = k[i].fn();
            after = env_get();
            env_set(ENV_DEFAULT);
            same = memcmp(o, base[i], k[i].bytes) == 0;
            snprintf(desc, sizeof desc, "fpenv: %s from a caller with %s %s: %s unchanged%s", k[i].name, ENV_KIND, g_envs[j].name, ENV_KIND,
                     EXPECT_FLUSH || !g_envs[j].ftz ? ", result bit-identical to the default environment's" : "");
            if (st != k[i].want) snprintf(why, sizeof why, "status %s, expected %s: %.300s", nam_status_str(st), nam_status_str(k[i].want), g_e.message);
            else if (after != g_envs[j].v) snprintf(why, sizeof why, "%s was 0x%llx before the call and 0x%llx after", ENV_KIND, (unsigned long long)g_envs[j].v, (unsigned long long)after);
            else if (!same && (EXPECT_FLUSH || !g_envs[j].ftz)) snprintf(why, sizeof why, "the result differs from the default environment's");
            else why[0] = 0;
            test_check(!why[0], desc, why);
        }
    for (i = 0; i < nk; i++) free(base[i]);
}

/* ---- subnormal data ------------------------------------------------------------------------- */
static float subnormal(void) {
    uint32_t u = 0x000AE398u;    /* 1e-39, a subnormal f32 */
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* count of zeros / subnormals / others in x[0..n) */
static void census(const float *x, int64_t n, int64_t *zero, int64_t *sub) {
    int64_t i;
    *zero = *sub = 0;
    for (i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &x[i], 4);
        if ((u & 0x7fffffffu) == 0) (*zero)++;
        else if ((u & 0x7f800000u) == 0) (*sub)++;
    }
}

/* Expectation for a kernel over subnormal inputs whose IEEE result is a nonzero multiple of
   them: flush -> every output exactly 0; keep -> some output nonzero. */
static void expect_flushed(const char *what, nam_status st, const float *out, int64_t n) {
    int64_t zero, sub;
    char desc[300], why[300];
    census(out, n, &zero, &sub);
    if (EXPECT_FLUSH) {
        snprintf(desc, sizeof desc, "subnormal inputs read as 0: %s gives exactly 0", what);
        snprintf(why, sizeof why, "status %s; %lld of %lld outputs are not 0 (%lld subnormal)", nam_status_str(st), (long long)(n - zero), (long long)n, (long long)sub);
        test_check(st == NAM_OK && zero == n, desc, why);
    } else {
        snprintf(desc, sizeof desc, "NAM_KEEP_SUBNORMALS or no flush on this platform: %s keeps the IEEE (nonzero) result", what);
        snprintf(why, sizeof why, "status %s; all %lld outputs are 0", nam_status_str(st), (long long)n);
        test_check(st == NAM_OK && zero < n, desc, why);
    }
}

static void test_subnormals(void) {
    nam_error e;
    float s = subnormal();
    env_set(ENV_DEFAULT);
    {   /* conv1d: x subnormal, weight 1, 24 channels over 2 threads */
        nam_conv1d_desc d;
        memset(&d, 0, sizeof d);
        d.x = test_tensor(ffill(CL * CC, s), NAM_F32, 3, 1, CL, CC, 0);
        d.weight = test_tensor(ffill(CC * CW, 1.0f), NAM_F32, 2, CC, CW, 0, 0);
        d.out = test_tensor(ffill(CL * CC, 1.0f), NAM_F32, 3, 1, CL, CC, 0);
        d.threads = 2;
        expect_flushed("nam_conv1d (x subnormal, weight 1, 2 threads)", nam_conv1d(&d, &e), (float *)d.out.data, CL * CC);
        free(d.x.data); free(d.weight.data); free(d.out.data);
    }
    {   /* GEMM: A subnormal, B = 1 */
        float *A = ffill(GM * GK, s), *B = ffill(GK * GN, 1.0f), *C = ffill(GM * GN, 1.0f);
        nam__sgemm(GM, GN, GK, A, GK, B, GN, 0, 0.0f, C, GN, g_gpack);
        expect_flushed("nam__sgemm (A subnormal, B = 1)", NAM_OK, C, GM * GN);
        free(A); free(B); free(C);
    }
    {   /* SSD, both backends: x subnormal, B = C = 1, dt 0.5, A -1 */
        int be;
        for (be = 0; be < 2; be++) {
            nam_ssd_desc d;
            size_t need;
            void *ws;
            nam_status st;
            char what[120];
            memset(&d, 0, sizeof d);
            d.x = test_tensor(ffill(SL * SH * SP, s), NAM_F32, 4, 1, SL, SH, SP);
            d.dt = test_tensor(ffill(SL * SH, 0.5f), NAM_F32, 3, 1, SL, SH, 0);
            d.A = test_tensor(ffill(SH, -1.0f), NAM_F32, 1, SH, 0, 0, 0);
            d.B = test_tensor(ffill(SL * SN, 1.0f), NAM_F32, 4, 1, SL, 1, SN);
            d.C = test_tensor(ffill(SL * SN, 1.0f), NAM_F32, 4, 1, SL, 1, SN);
            d.out = test_tensor(ffill(SL * SH * SP, 1.0f), NAM_F32, 4, 1, SL, SH, SP);
            d.backend = be ? NAM_BACKEND_CPU_REF : NAM_BACKEND_CPU;
            d.threads = 2;
            st = nam_ssd_workspace_size(&d, &need, &e);
            ws = test_alloc(need);
            if (st == NAM_OK) st = nam_ssd(&d, ws, need, &e);
            snprintf(what, sizeof what, "nam_ssd %s (x subnormal)", be ? "cpu-ref" : "cpu, 2 threads");
            expect_flushed(what, st, (float *)d.out.data, SL * SH * SP);
            free(ws); free(d.x.data); free(d.dt.data); free(d.A.data); free(d.B.data); free(d.C.data); free(d.out.data);
        }
    }
    {   /* SSD with normal inputs whose outputs are about 1e-40: x 1e-19, B = C = 1e-11 */
        nam_ssd_desc d;
        size_t need;
        void *ws;
        nam_status st;
        int64_t zero, sub, n = SL * SH * SP;
        char why[200];
        memset(&d, 0, sizeof d);
        d.x = test_tensor(frand(n, 0.5e-19f, 1e-19f), NAM_F32, 4, 1, SL, SH, SP);
        d.dt = test_tensor(ffill(SL * SH, 0.5f), NAM_F32, 3, 1, SL, SH, 0);
        d.A = test_tensor(ffill(SH, -1.0f), NAM_F32, 1, SH, 0, 0, 0);
        d.B = test_tensor(ffill(SL * SN, 1e-11f), NAM_F32, 4, 1, SL, 1, SN);
        d.C = test_tensor(ffill(SL * SN, 1e-11f), NAM_F32, 4, 1, SL, 1, SN);
        d.out = test_tensor(ffill(n, 1.0f), NAM_F32, 4, 1, SL, SH, SP);
        d.threads = 2;
        st = nam_ssd_workspace_size(&d, &need, &e);
        ws = test_alloc(need);
        if (st == NAM_OK) st = nam_ssd(&d, ws, need, &e);
        census((float *)d.out.data, n, &zero, &sub);
        snprintf(why, sizeof why, "status %s; %lld zero, %lld subnormal of %lld", nam_status_str(st), (long long)zero, (long long)sub, (long long)n);
        if (EXPECT_FLUSH) test_check(st == NAM_OK && sub == 0 && zero == n, "results below FLT_MIN are 0: nam_ssd with outputs of about 1e-40 (normal inputs)", why);
        else test_check(st == NAM_OK && sub > 0, "NAM_KEEP_SUBNORMALS or no flush on this platform: nam_ssd outputs of about 1e-40 stay subnormal", why);
        free(ws); free(d.x.data); free(d.dt.data); free(d.A.data); free(d.B.data); free(d.C.data); free(d.out.data);
    }
    {   /* attention: v subnormal */
        nam_attention_desc d = g_att;
        nam_status st;
        d.v = test_tensor(ffill(AS * AHK * AD, s), NAM_F32, 4, 1, AS, AHK, AD);
        st = nam_attention(&d, g_att_ws, g_att_need, &e);
        expect_flushed("nam_attention (v subnormal, 2 threads)", st, (float *)d.out.data, AS * AHQ * AD);
        free(d.v.data);
    }
    {   /* MoE: combine of subnormal expert outputs; permute moves bits unchanged */
        nam_tensor eo = test_tensor(ffill(MT * MK * MH, s), NAM_F32, 2, MT * MK, MH, 0, 0), tok = test_tensor(ffill(MT * MH, s), NAM_F32, 2, MT, MH, 0, 0);
        nam_status st = nam_moe_combine(&eo, &g_plan, &g_w, &g_comb, &e);
        int64_t i, bad = 0, nrows = g_plan.num_rows;
        expect_flushed("nam_moe_combine (expert outputs subnormal)", st, (float *)g_comb.data, MT * MH);
        st = nam_moe_permute(&tok, &g_plan, &g_perm, &e);
        for (i = 0; i < nrows * MH; i++) if (memcmp((float *)g_perm.data + i, &s, 4) != 0) bad++;
        test_check(st == NAM_OK && bad == 0, "nam_moe_permute moves subnormal values with their bits (no arithmetic)", "some permuted values changed");
        free(eo.data); free(tok.data);
    }
}

int main(void) {
    printf("# caller environment: %s; subnormal flush expected: %s\n", ENV_KIND, EXPECT_FLUSH ? "yes" : "no");
    setup();
    test_caller_env();
    test_subnormals();
    return test_done("test_fpenv");
}
