/* Compile test: the kernel half alone (NAM_NO_PLANNER). build.sh compiles it WITHOUT the
   stb include path and links it without -lstb, as C99 -pedantic with -Wall -Wextra
   -Werror: the kernels need no stb_ds. The file defines its own nam_recipe and
   nam_plan_make with other types: that compiles only if nam.h declared none of the planner
   API. It then runs one small SSD on the CPU and checks it against the recurrence. */
#define NAM_NO_PLANNER
#define NAM_IMPLEMENTATION
#include "../../nam.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct nam_recipe { int not_the_planner_recipe; } nam_recipe;   /* clashes if nam.h declared it */
static int nam_plan_make(int x) { return 2 * x; }

int main(void) {
    /* b = 1, l = 3, h = 1, p = 1, g = 1, n = 1: h_t = exp(dt A) h_{t-1} + dt B x, y = C h */
    float x[3] = {1.0f, 2.0f, -1.0f}, dt[3] = {0.5f, 0.25f, 1.0f}, A[1] = {-1.0f};
    float B[3] = {1.0f, 0.5f, 2.0f}, C[3] = {1.0f, 2.0f, 0.5f}, y[3];
    int64_t sx[4] = {1, 3, 1, 1}, sdt[3] = {1, 3, 1}, sa[1] = {1}, sb[4] = {1, 3, 1, 1};
    nam_ssd_desc d = {0};
    nam_recipe r;
    nam_error err;
    size_t need;
    char *raw = NULL;
    void *ws = NULL;
    double h = 0.0, want;
    int t, bad = 0;
    r.not_the_planner_recipe = nam_plan_make(2);
    d.x = nam_tensor_make(x, NAM_F32, 4, sx);
    d.dt = nam_tensor_make(dt, NAM_F32, 3, sdt);
    d.A = nam_tensor_make(A, NAM_F32, 1, sa);
    d.B = nam_tensor_make(B, NAM_F32, 4, sb);
    d.C = nam_tensor_make(C, NAM_F32, 4, sb);
    d.out = nam_tensor_make(y, NAM_F32, 4, sx);
    if (nam_ssd_workspace_size(&d, &need, &err) != NAM_OK) { fprintf(stderr, "workspace: %s\n", err.message); return 1; }
    if (need) {   /* C99 has no aligned_alloc: align by hand */
        if (!(raw = (char *)malloc(need + 64))) return 1;
        ws = raw + (64 - (uintptr_t)raw % 64) % 64;
    }
    if (nam_ssd(&d, ws, need, &err) != NAM_OK) { fprintf(stderr, "nam_ssd: %s\n", err.message); free(raw); return 1; }
    for (t = 0; t < 3; t++) {
        h = exp((double)dt[t] * A[0]) * h + (double)dt[t] * B[t] * x[t];
        want = (double)C[t] * h;
        if (fabs(y[t] - want) > 1e-5 * (1.0 + fabs(want))) { fprintf(stderr, "y[%d] = %g, want %g\n", t, y[t], want); bad = 1; }
    }
    free(raw);
    return bad || r.not_the_planner_recipe != 4;
}
