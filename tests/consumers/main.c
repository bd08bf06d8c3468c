/* tests/consumers/main.c - a program outside nam's tree. tests/consumers/run.sh copies it
   into each consumer project (pkgconfig/, cmake/, vendored/), which takes nam in its own
   way. It plans the built-in NAM56R recipe and runs one kernel, nam_conv1d, checking the
   result by hand. Output follows the test protocol; exit status 1 on any failure. */
#define NAM_IMPLEMENTATION
#include "nam.h"

#include <math.h>
#include <stdio.h>

int main(void) {
    nam_recipe r;
    nam_plan p;
    nam_error err;
    int failures = 0, t, c;
    /* the plan: NAM56R's 52 layers in 4 stages, its seams */
    if (nam_recipe_init(&r, &err) != NAM_OK || nam_plan_make(&r, &p, &err) != NAM_OK) {
        printf("FAIL plan NAM56R: %s\n", err.message);
        return 1;
    }
    nam_recipe_free(&r);
    if (p.pattern.depth == 52 && p.layout.num_stages == 4 && p.num_seams > 0)
        printf("ok   plan %s: %d layers, %d pipeline stages, %d seam(s), nam %s\n", p.recipe.name, p.pattern.depth,
               p.layout.num_stages, p.num_seams, NAM_VERSION_STRING);
    else {
        printf("FAIL plan %s: depth %d, %d stages, %d seams\n", p.recipe.name, p.pattern.depth, p.layout.num_stages, p.num_seams);
        failures++;
    }
    nam_plan_free(&p);

    /* one kernel: causal depthwise conv1d with all-ones weights of width 2, so
       out[t][c] = x[t][c] + x[t-1][c] whatever the tap order */
    {
        float x[4 * 3], w[3 * 2], out[4 * 3];
        int64_t xs[3] = { 1, 4, 3 }, ws[2] = { 3, 2 };
        nam_conv1d_desc d = { 0 };
        double maxerr = 0;
        for (t = 0; t < 12; t++) x[t] = (float)(t * t % 7) - 2.5f;
        for (t = 0; t < 6; t++) w[t] = 1.0f;
        d.x = nam_tensor_make(x, NAM_F32, 3, xs);
        d.weight = nam_tensor_make(w, NAM_F32, 2, ws);
        d.out = nam_tensor_make(out, NAM_F32, 3, xs);
        if (nam_conv1d(&d, &err) != NAM_OK) {
            printf("FAIL kernel nam_conv1d: %s\n", err.message);
            return 1;
        }
        for (t = 0; t < 4; t++)
            for (c = 0; c < 3; c++) {
                double want = x[t * 3 + c] + (t ? x[(t - 1) * 3 + c] : 0.0f);
                if (fabs(out[t * 3 + c] - want) > maxerr) maxerr = fabs(out[t * 3 + c] - want);
            }
        if (maxerr <= 1e-6) printf("ok   kernel nam_conv1d (backend %s): out = x[t] + x[t-1]\n", nam_backend_name(d.ran));
        else { printf("FAIL kernel nam_conv1d: max error %g\n", maxerr); failures++; }
    }
    return failures ? 1 : 0;
}
