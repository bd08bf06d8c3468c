/* bench/bench_plan.c - planner throughput (nam-bench).

   What it measures, each on one core, median over REPS repetitions of a timed batch:
     plan        nam_plan_make + nam_plan_free on the built-in NAM56R recipe: parse the
                 authored pattern, translate fail-closed, validate the native pattern and
                 stage layout, check the launch policy, build the args bundle.
                 Target: more than 100,000 plans per second.
     plan_bound  the same with pattern.map = R=G and Mamba-2 (a fully native pattern).
     megatron    nam_megatron_parse + nam_megatron_layout of the 52-layer Nemotron-H string.
     rankmap     nam_rankmap_build for world 1024, tp 4, pp 8, ep 8 (all 15 group kinds).
   Each result is checked before timing (a plan that fails is a bench failure, exit 1).

   usage: nam-bench [--quick] [--json] [--reps N] */
#define _POSIX_C_SOURCE 200809L
#define NAM_IMPLEMENTATION
#include "../nam.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef int (*bench_fn)(void *ctx);

typedef struct row {
    const char *name, *shape;
    double median_ops, min_ops, max_ops, us_per_op;
    long iters;
} row;

/* Run fn in batches sized to ~batch_s seconds; return ops/s per repetition (median etc.). */
static int run_bench(const char *name, const char *shape, bench_fn fn, void *ctx, int reps, double batch_s, row *out) {
    long n = 1, i;
    double t, *rates = (double *)calloc((size_t)reps, sizeof(double));
    int r;
    if (!rates) return 1;
    /* calibrate */
    for (;;) {
        t = now_s();
        for (i = 0; i < n; i++) if (fn(ctx)) { free(rates); return 1; }
        t = now_s() - t;
        if (t >= batch_s / 4 || n > (1L << 30)) break;
        n *= 2;
    }
    n = (long)((double)n * batch_s / (t > 1e-9 ? t : 1e-9));
    if (n < 1) n = 1;
    for (r = 0; r < reps; r++) {
        t = now_s();
        for (i = 0; i < n; i++) if (fn(ctx)) { free(rates); return 1; }
        t = now_s() - t;
        rates[r] = (double)n / t;
    }
    qsort(rates, (size_t)reps, sizeof(double), cmp_double);
    out->name = name;
    out->shape = shape;
    out->median_ops = rates[reps / 2];
    out->min_ops = rates[0];
    out->max_ops = rates[reps - 1];
    out->us_per_op = 1e6 / out->median_ops;
    out->iters = n;
    free(rates);
    return 0;
}

static int bench_plan(void *ctx) {
    nam_plan p;
    nam_error e;
    if (nam_plan_make((const nam_recipe *)ctx, &p, &e) != NAM_OK) {
        fprintf(stderr, "nam-bench: plan failed: %s\n", e.message);
        return 1;
    }
    nam_plan_free(&p);
    return 0;
}

static const char *nemotron_h = "M-M-M-M*-M-M-M-M-M*-M-M-M-M-M*-M-M-M-M-M*-M-M-M-M-M-";

static int bench_megatron(void *ctx) {
    nam_mpattern mp;
    nam_layout lay;
    nam_layout_desc ld;
    nam_error e;
    (void)ctx;
    memset(&ld, 0, sizeof ld);
    ld.pp = 2;
    if (nam_megatron_parse(nemotron_h, 0, &mp, &e) != NAM_OK) { fprintf(stderr, "nam-bench: %s\n", e.message); return 1; }
    if (nam_megatron_layout(&mp, &ld, &lay, &e) != NAM_OK) { fprintf(stderr, "nam-bench: %s\n", e.message); nam_megatron_free(&mp); return 1; }
    nam_layout_free(&lay);
    nam_megatron_free(&mp);
    return 0;
}

static int bench_rankmap(void *ctx) {
    nam_rankmap m;
    nam_error e;
    if (nam_rankmap_build((const nam_rankmap_desc *)ctx, &m, &e) != NAM_OK) { fprintf(stderr, "nam-bench: %s\n", e.message); return 1; }
    nam_rankmap_free(&m);
    return 0;
}

int main(int argc, char **argv) {
    int quick = 0, json = 0, reps = 9, i, nrows = 0;
    double batch = 0.25;
    nam_recipe native, deflt;
    nam_rankmap_desc rd;
    nam_error e;
    row rows[4];
    for (i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) quick = 1;
        else if (!strcmp(argv[i], "--json")) json = 1;
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else { fprintf(stderr, "usage: nam-bench [--quick] [--json] [--reps N]\n"); return 2; }
    }
    if (reps < 1 || reps > 1000) { fprintf(stderr, "nam-bench: --reps must be 1..1000\n"); return 2; }
    if (quick) { reps = 3; batch = 0.02; }
    if (nam_recipe_init(&deflt, &e) || nam_recipe_init(&native, &e) ||
        nam_recipe_set(&native, "pattern.map", "R=G", &e) || nam_recipe_set(&native, "pattern.mamba_impl", "mamba2", &e)) {
        fprintf(stderr, "nam-bench: %s\n", e.message);
        return 1;
    }
    memset(&rd, 0, sizeof rd);
    rd.world_size = 1024; rd.tp = 4; rd.pp = 8; rd.ep = 8;
    /* validate before timing */
    {
        nam_plan p;
        if (nam_plan_make(&native, &p, &e) != NAM_OK || !p.native_pattern || p.pattern.depth != 52) { fprintf(stderr, "nam-bench: validation failed: %s\n", e.message); return 1; }
        nam_plan_free(&p);
    }
    if (run_bench("plan", "NAM56R built-in (plan mode, R seam)", bench_plan, &deflt, reps, batch, &rows[nrows++]) ||
        run_bench("plan_bound", "NAM56R, map R=G, mamba2 (fully native)", bench_plan, &native, reps, batch, &rows[nrows++]) ||
        run_bench("megatron", "Nemotron-H 8B pattern, 52 layers, pp 2", bench_megatron, NULL, reps, batch, &rows[nrows++]) ||
        run_bench("rankmap", "world 1024, tp 4, pp 8, ep 8", bench_rankmap, &rd, reps, batch, &rows[nrows++])) {
        return 1;
    }
    if (json) {
        printf("[");
        for (i = 0; i < nrows; i++)
            printf("%s\n {\"bench\": \"%s\", \"shape\": \"%s\", \"threads\": 1, \"reps\": %d, \"median_per_s\": %.0f, \"min_per_s\": %.0f, \"max_per_s\": %.0f, \"median_us\": %.3f}",
                   i ? "," : "", rows[i].name, rows[i].shape, reps, rows[i].median_ops, rows[i].min_ops, rows[i].max_ops, rows[i].us_per_op);
        printf("\n]\n");
    } else {
        printf("nam-bench %s: one core, median of %d batches (min..max in brackets)\n", NAM_VERSION_STRING, reps);
        for (i = 0; i < nrows; i++)
            printf("%-11s %-42s %12.0f /s  [%.0f..%.0f]  %9.3f us each\n", rows[i].name, rows[i].shape, rows[i].median_ops,
                   rows[i].min_ops, rows[i].max_ops, rows[i].us_per_op);
        printf("plan target: > 100000 plans/s -> %s (%.1fx)\n", rows[0].median_ops > 100000 ? "met" : "MISSED", rows[0].median_ops / 100000.0);
    }
    nam_recipe_free(&deflt);
    nam_recipe_free(&native);
    return 0;
}
