/* nam - command-line front end of nam.h.
   Exit status: 0 ok, 1 refused or invalid (the plan or pattern fails a rule),
   2 usage or input error (bad flags, unreadable or malformed recipe file, bad --set). */
#define _POSIX_C_SOURCE 200809L
#define NAM_IMPLEMENTATION
#include "../nam.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define EXIT_REFUSED 1
#define EXIT_USAGE 2

static const char *usage_text =
    "usage: nam <command> [options]\n"
    "\n"
    "commands:\n"
    "  plan [RECIPE]      layer table, counts, stages and seams (default: built-in NAM56R)\n"
    "  args [RECIPE]      Megatron-LM args, one per line, shell-quoted; custom notes as # lines\n"
    "  launch [RECIPE]    the launch contract (generated_native_args, fixed_policy, profile) as JSON\n"
    "  recipe [RECIPE]    print the resolved recipe (every key) in recipe-file syntax\n"
    "  ranks --world N --tp T --pp P [--cp C] [--ep E] [--etp X] [--order O] [--rank R]\n"
    "        [--pattern MEGATRON_PATTERN]\n"
    "                     Megatron RankGenerator process groups; with --pattern, the pipeline\n"
    "                     stages (layers) each pp rank owns\n"
    "  megatron [--] PATTERN [--pp P] [--first N] [--last N] [--no-overlap-p2p]\n"
    "                     lint a Megatron-native hybrid pattern and show its pipeline stages\n"
    "\n"
    "options for plan/args/launch/recipe:\n"
    "  --set KEY=VALUE    override any recipe field (section.key or a unique key; repeatable)\n"
    "  --tp N --pp N --cp N --ep N --etp N --world N --depth N --stages N --experts N\n"
    "  --mbs N --gbs N --seq N          shorthands for the matching recipe keys\n"
    "  --map F=S          explicit binding of a family without a Megatron symbol (e.g. R=G)\n"
    "  --motif TEXT       tile TEXT to the recipe's depth;  --pattern TEXT  a fully written pattern\n"
    "  --mla              lower A to MLA ('+');  --dsa-layers LIST  A layers lowered to 'D'\n"
    "  --mode plan|strict;  --strict  strict mode, and exit 1 while any seam remains\n"
    "  --compare FILE     (args) compare with an existing Megatron argv, flag by flag: match /\n"
    "                     missing in nam / only in nam / differs; exit 0 when equal, 1 otherwise\n"
    "common options:\n"
    "  --json             JSON output;  -o FILE  write output to FILE atomically\n"
    "  --help, --version\n"
    "\n"
    "exit status: 0 ok, 1 refused or invalid, 2 usage or input error\n";

typedef struct cli {
    const char *cmd;
    const char *recipe_file;
    const char *out_file;
    const char *positional;
    int json, strict;
    /* recipe overrides, applied in order */
    const char *sets[256][2];
    int nsets;
    char map[NAM_STR_MAX];
    /* ranks / megatron */
    int world, tp, pp, cp, ep, etp, rank, first, last, no_overlap;
    const char *order;
    const char *pattern_value;   /* last --pattern (ranks: Megatron pattern whose stages ranks own) */
    const char *compare_file;    /* args --compare FILE ("-" = stdin) */
    int have_world, have_tp, have_pp;
} cli;

static int usage_error(const char *fmt, const char *arg) {
    fprintf(stderr, "nam: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n(run `nam --help` for usage)\n");
    return EXIT_USAGE;
}

/* Strict positive int for CLI flags. */
static int parse_int_arg(const char *flag, const char *v, int lo, int hi, int *out) {
    char *end;
    long x;
    errno = 0;
    if (!v || !*v) return usage_error("%s needs a value", flag);
    x = strtol(v, &end, 10);
    if (*end || errno || x < lo || x > hi) {
        fprintf(stderr, "nam: %s %s: expected an integer in %d..%d\n", flag, v, lo, hi);
        return EXIT_USAGE;
    }
    *out = (int)x;
    return 0;
}

static void json_str(FILE *f, const char *s, size_t n);

/* Print an error, as JSON on stdout with --json, always as text on stderr. */
static void report(const cli *c, const nam_error *e) {
    fprintf(stderr, "nam: error (%s): %s", nam_status_str(e->code), e->message);
    if (e->layer >= 0) fprintf(stderr, " [layer %d, stage %d]", e->layer, e->stage);
    fprintf(stderr, "\n");
    if (c->json) {
        printf("{\"error\":{\"code\":\"%s\",\"message\":", nam_status_str(e->code));
        json_str(stdout, e->message, strlen(e->message));
        printf(",\"offset\":%ld,\"line\":%d,\"column\":%d,\"layer\":%d,\"stage\":%d}}\n", e->offset, e->line, e->column, e->layer, e->stage);
    }
}

/* Write `text` to -o FILE atomically (temp file + rename), or to stdout. */
static int emit(const cli *c, const char *text) {
    char tmp[4096];
    int fd;
    FILE *f;
    size_t n = strlen(text);
    if (!c->out_file) {
        fwrite(text, 1, n, stdout);
        return 0;
    }
    if (snprintf(tmp, sizeof tmp, "%s.tmp.XXXXXX", c->out_file) >= (int)sizeof tmp) return usage_error("output path too long: %s", c->out_file);
    fd = mkstemp(tmp);
    if (fd < 0) {
        fprintf(stderr, "nam: cannot create a temporary file next to %s: %s\n", c->out_file, strerror(errno));
        return EXIT_USAGE;
    }
    f = fdopen(fd, "wb");
    if (!f || fwrite(text, 1, n, f) != n || fflush(f) != 0 || fsync(fd) != 0) {
        fprintf(stderr, "nam: cannot write %s: %s\n", tmp, strerror(errno));
        if (f) fclose(f); else close(fd);
        unlink(tmp);
        return EXIT_USAGE;
    }
    if (fclose(f) != 0 || rename(tmp, c->out_file) != 0) {
        fprintf(stderr, "nam: cannot write %s: %s\n", c->out_file, strerror(errno));
        unlink(tmp);
        return EXIT_USAGE;
    }
    return 0;
}

static char *read_file(const char *path, size_t *len, nam_error *err) {
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t cap = 0, n = 0;
    if (!f) {
        snprintf(err->message, sizeof err->message, "cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    while (1) {
        size_t got;
        if (n + 4096 > cap) {
            char *nb;
            cap = cap ? cap * 2 : 65536;
            if (cap > (size_t)NAM_MAX_TEXT + 8192) cap = (size_t)NAM_MAX_TEXT + 8192;
            if (n + 1 >= cap) {
                snprintf(err->message, sizeof err->message, "%s is larger than the limit of %d bytes", path, NAM_MAX_TEXT);
                free(buf);
                fclose(f);
                return NULL;
            }
            nb = (char *)realloc(buf, cap);
            if (!nb) { free(buf); fclose(f); snprintf(err->message, sizeof err->message, "out of memory"); return NULL; }
            buf = nb;
        }
        got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0) break;
    }
    if (ferror(f)) {
        snprintf(err->message, sizeof err->message, "cannot read %s: %s", path, strerror(errno));
        free(buf);
        fclose(f);
        return NULL;
    }
    fclose(f);
    buf[n] = 0;
    *len = n;
    return buf;
}

static int add_set(cli *c, const char *key, const char *value) {
    if (c->nsets >= 256) return usage_error("too many overrides%s", "");
    c->sets[c->nsets][0] = key;
    c->sets[c->nsets][1] = value;
    c->nsets++;
    return 0;
}

static const struct { const char *flag, *key; } shorthands[] = {
    { "--tp", "parallel.tp" }, { "--pp", "parallel.pp" }, { "--cp", "parallel.cp" }, { "--ep", "parallel.ep" },
    { "--etp", "parallel.etp" }, { "--world", "parallel.world_size" }, { "--depth", "pattern.depth" },
    { "--stages", "pattern.stages" }, { "--experts", "moe.num_experts" }, { "--mbs", "batch.micro_batch_size" },
    { "--gbs", "batch.global_batch_size" }, { "--seq", "model.seq_length" }, { "--mode", "recipe.mode" },
    { "--dsa-layers", "pattern.dsa_layers" },
};

static int parse_args(cli *c, int argc, char **argv) {
    int i, k, rc, dashdash = 0;
    memset(c, 0, sizeof *c);
    c->rank = -1;
    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (dashdash || a[0] != '-' || !a[1]) {
            if (!c->cmd) c->cmd = a;
            else if (!c->positional) c->positional = a;
            else return usage_error("unexpected argument '%s'", a);
            continue;
        }
        if (!strcmp(a, "--")) { dashdash = 1; continue; }
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { fputs(usage_text, stdout); exit(0); }
        if (!strcmp(a, "--version")) { printf("nam %s\n", NAM_VERSION_STRING); exit(0); }
        if (!strcmp(a, "--json")) { c->json = 1; continue; }
        if (!strcmp(a, "--strict")) { c->strict = 1; if ((rc = add_set(c, "recipe.mode", "strict"))) return rc; continue; }
        if (!strcmp(a, "--mla")) { if ((rc = add_set(c, "model.mla", "true"))) return rc; continue; }
        if (!strcmp(a, "--no-overlap-p2p")) { c->no_overlap = 1; if ((rc = add_set(c, "parallel.overlap_p2p", "false"))) return rc; continue; }
        if (!v) return usage_error("%s needs a value", a);
        if (!strcmp(a, "-o")) { c->out_file = v; i++; continue; }
        if (!strcmp(a, "--compare")) { c->compare_file = v; i++; continue; }
        if (!strcmp(a, "--set")) {
            char *eq = strchr(argv[i + 1], '=');
            if (!eq) return usage_error("--set %s: expected KEY=VALUE", v);
            *eq = 0;
            if ((rc = add_set(c, argv[i + 1], eq + 1))) return rc;
            i++;
            continue;
        }
        if (!strcmp(a, "--map")) {
            size_t l = strlen(c->map);
            if (l + strlen(v) + 2 >= sizeof c->map) return usage_error("--map %s: too many bindings", v);
            snprintf(c->map + l, sizeof c->map - l, "%s%s", l ? "," : "", v);
            i++;
            continue;
        }
        if (!strcmp(a, "--motif") || !strcmp(a, "--pattern")) {
            int motif = !strcmp(a, "--motif");
            if (!motif) c->pattern_value = v;
            if ((rc = add_set(c, "pattern.text", v)) || (rc = add_set(c, "pattern.tile", motif ? "true" : "false"))) return rc;
            if (!motif && ((rc = add_set(c, "pattern.depth", "0")) || (rc = add_set(c, "pattern.stages", "0")))) return rc;
            i++;
            continue;
        }
        if (!strcmp(a, "--order")) { c->order = v; i++; if ((rc = add_set(c, "parallel.order", v))) return rc; continue; }
        if (!strcmp(a, "--rank")) { if ((rc = parse_int_arg(a, v, 0, NAM_MAX_PARALLEL, &c->rank))) return rc; i++; continue; }
        if (!strcmp(a, "--first")) { if ((rc = parse_int_arg(a, v, 1, NAM_MAX_DEPTH, &c->first))) return rc; i++; continue; }
        if (!strcmp(a, "--last")) { if ((rc = parse_int_arg(a, v, 1, NAM_MAX_DEPTH, &c->last))) return rc; i++; continue; }
        for (k = 0; k < (int)(sizeof shorthands / sizeof shorthands[0]); k++) {
            if (strcmp(a, shorthands[k].flag)) continue;
            if ((rc = add_set(c, shorthands[k].key, v))) return rc;
            if (!strcmp(a, "--world")) { c->have_world = 1; if ((rc = parse_int_arg(a, v, 1, NAM_MAX_PARALLEL, &c->world))) return rc; }
            if (!strcmp(a, "--tp")) { c->have_tp = 1; if ((rc = parse_int_arg(a, v, 1, NAM_MAX_PARALLEL, &c->tp))) return rc; }
            if (!strcmp(a, "--pp")) { c->have_pp = 1; if ((rc = parse_int_arg(a, v, 1, NAM_MAX_PARALLEL, &c->pp))) return rc; }
            if (!strcmp(a, "--cp") && (rc = parse_int_arg(a, v, 1, NAM_MAX_PARALLEL, &c->cp))) return rc;
            if (!strcmp(a, "--ep") && (rc = parse_int_arg(a, v, 1, NAM_MAX_PARALLEL, &c->ep))) return rc;
            if (!strcmp(a, "--etp") && (rc = parse_int_arg(a, v, 0, NAM_MAX_PARALLEL, &c->etp))) return rc;
            break;
        }
        if (k == (int)(sizeof shorthands / sizeof shorthands[0])) return usage_error("unknown option '%s'", a);
        i++;
    }
    if (c->map[0] && add_set(c, "pattern.map", c->map)) return EXIT_USAGE;
    return 0;
}

/* Built-in recipe, then the recipe file, then the overrides. */
static int load_recipe(cli *c, nam_recipe *r) {
    nam_error err;
    int i;
    if (nam_recipe_init(r, &err) != NAM_OK) { report(c, &err); return EXIT_USAGE; }
    if (c->positional) {
        size_t len = 0;
        char *text;
        err.message[0] = 0;
        text = read_file(c->positional, &len, &err);
        if (!text) { fprintf(stderr, "nam: %s\n", err.message); nam_recipe_free(r); return EXIT_USAGE; }
        if (nam_recipe_parse(r, text, len, c->positional, &err) != NAM_OK) {
            free(text);
            report(c, &err);
            nam_recipe_free(r);
            return EXIT_USAGE;
        }
        free(text);
    }
    for (i = 0; i < c->nsets; i++) {
        if (nam_recipe_set(r, c->sets[i][0], c->sets[i][1], &err) != NAM_OK) {
            fprintf(stderr, "nam: in override %s=%s\n", c->sets[i][0], c->sets[i][1]);
            report(c, &err);
            nam_recipe_free(r);
            return EXIT_USAGE;
        }
    }
    return 0;
}

/* The pre-flight table: parameters by family, static memory per pp rank, FLOPs. */
static void print_preflight(const nam_plan *p, FILE *f) {
    const nam_preflight *pf = &p->preflight;
    const nam_recipe *r = &p->recipe;
    const double G = 1073741824.0;
    int i, k;
    fprintf(f, "\npre-flight (%s weights, fp32 grads, Adam%s; activations with recompute %s)\n",
            strcmp(r->dtype, "fp32") ? "16-bit" : "fp32", r->distributed_optimizer ? " sharded over dp" : "", r->recompute_granularity);
    fprintf(f, "params    %.3f B total, %.3f B active;", pf->params_total / 1e9, pf->params_active / 1e9);
    for (k = 0; k < NAM_FAM_COUNT; k++) if (pf->params[k] != 0) fprintf(f, " %s %.3f B", nam_family_name(k), pf->params[k] / 1e9);
    fprintf(f, "\n%7s  %6s  %12s  %10s  %10s  %10s  %14s  %10s\n", "pp_rank", "layers", "params/GPU", "weights", "grads", "optimizer", "activations", "total");
    for (i = 0; i < pf->num_ranks; i++) {
        const nam_rank_memory *M = &pf->ranks[i];
        fprintf(f, "%7d  %6d  %10.3f B  %6.2f GiB  %6.2f GiB  %6.2f GiB  %6.2f GiB x%-4g  %6.2f GiB%s\n", M->pp_rank, M->num_layers, M->params_total / 1e9,
                M->weight_bytes / G, M->grad_bytes / G, M->optimizer_bytes / G, M->activation_bytes / G, M->in_flight, M->total_bytes / G, i == pf->peak_rank ? "  <- peak" : "");
    }
    if (pf->fits >= 0)
        fprintf(f, "fits      %s: peak pp rank %d needs %.2f GiB of %g GiB\n", pf->fits ? "yes" : "NO (warning; strict mode refuses)",
                pf->peak_rank, pf->ranks[pf->peak_rank].total_bytes / G, r->device_memory_gib);
    fprintf(f, "flops     %.4g PFLOP per step (nam, by family);", pf->flops_total / 1e15);
    for (k = 0; k < NAM_FAM_COUNT; k++) if (pf->flops[k] != 0) fprintf(f, " %s %.3g", nam_family_name(k), pf->flops[k] / 1e15);
    if (pf->flops_megatron > 0) fprintf(f, "\n          %.4g PFLOP per step as Megatron's hybrid formula counts it", pf->flops_megatron / 1e15);
    fprintf(f, "\n");
    if (r->step_time_s > 0)
        fprintf(f, "mfu       %.1f TFLOP/s per GPU at %g s per step: MFU %.1f%% of %g TFLOP/s (Megatron's count: %.1f%%)\n",
                pf->tflops_per_gpu, r->step_time_s, 100 * pf->mfu, r->peak_tflops, 100 * pf->mfu_megatron);
}

static void print_plan_text(const nam_plan *p, FILE *f) {
    int i, s, fam;
    const nam_recipe *r = &p->recipe;
    fprintf(f, "recipe %s  (mode %s)\n", r->name, p->strict ? "strict" : "plan");
    fprintf(f, "authored  %s%s depth %d, %d stage(s)\n", r->pattern, r->tile ? " tiled to" : ",", p->pattern.depth, p->pattern.num_stages);
    fprintf(f, "counts   ");
    for (fam = 0; fam < 26; fam++) if (p->pattern.counts[fam]) fprintf(f, " %c=%d", 'A' + fam, p->pattern.counts[fam]);
    fprintf(f, "\n");
    for (s = 0; s < p->pattern.num_stages; s++) {
        int c[26] = {0};
        fprintf(f, "stage %d  layers %d..%d ", s, p->pattern.stage_begin[s], p->pattern.stage_begin[s + 1] - 1);
        for (i = p->pattern.stage_begin[s]; i < p->pattern.stage_begin[s + 1]; i++) c[p->layers[i].family - 'A']++;
        for (fam = 0; fam < 26; fam++) if (c[fam]) fprintf(f, " %c=%d", 'A' + fam, c[fam]);
        fprintf(f, "\n");
    }
    fprintf(f, "\n%5s  %-6s  %-6s  %-5s  %s\n", "layer", "family", "native", "stage", "seam");
    for (i = 0; i < p->pattern.depth; i++) {
        const nam_plan_layer *L = &p->layers[i];
        char nat[8];
        if (L->native) snprintf(nat, sizeof nat, "%c", L->native); else snprintf(nat, sizeof nat, "-none-");
        fprintf(f, "%5d  %-6c  %-6s  %-5d  %s%s%s%s", L->index, L->family, nat, L->stage, L->seam >= 0 ? p->seams[L->seam].name : "",
                (L->features & NAM_FEATURE_ENGRAM) ? " +engram" : "", (L->features & NAM_FEATURE_MHC) ? " +mhc" : "", (L->features & NAM_FEATURE_MOD) ? " +mod" : "");
        fprintf(f, "\n");
    }
    if (p->pattern.mtp)
        fprintf(f, "\nMTP       %s x %d depth(s) -> %s\n", p->pattern.mtp, p->pattern.mtp_depths, p->mtp_native ? p->mtp_native : "(unmapped)");
    fprintf(f, "\nseams     %d\n", p->num_seams);
    for (i = 0; i < p->num_seams; i++) {
        const nam_seam *sm = &p->seams[i];
        const char *kind = sm->kind == NAM_SEAM_UNMAPPED ? "no Megatron symbol" : sm->kind == NAM_SEAM_CUSTOM_IMPL ? "native symbol + custom implementation" : "feature, no Megatron flag";
        int k;
        if (sm->family) fprintf(f, "  %-20s family %c, %s, layers", sm->name, sm->family, kind);
        else fprintf(f, "  %-20s %s, %s", sm->name, sm->placement, kind);
        for (k = 0; k < sm->num_layers; k++) fprintf(f, "%s%d", k ? "," : " ", sm->layers[k]);
        if (sm->num_layers) {
            fprintf(f, " (layer_number");
            for (k = 0; k < sm->num_layers; k++) fprintf(f, "%s%d", k ? "," : " ", sm->layers[k] + 1);
            fprintf(f, ")");
        }
        if (sm->mtp_positions) fprintf(f, " (+%d MTP position(s))", sm->mtp_positions);
        if (sm->detail[0]) fprintf(f, "\n    detail: %s", sm->detail);
        fprintf(f, "\n    reason: %s\n    runtime must supply: %s\n", sm->reason, sm->runtime_supplies);
    }
    for (i = 0; i < p->num_decisions; i++) fprintf(f, "decision  %s\n", p->decisions[i].what);
    fprintf(f, "spec      %s%s\n", r->spec, p->stock_spec && p->num_seams ? "  (stock: cannot build the seams above)" : "");
    fprintf(f, "native    %s\n", p->native_pattern ? p->native_pattern : "(withheld: unmapped seams remain)");
    fprintf(f, "parallel  world %d = tp %d x pp %d x cp %d x dp %d; vpp %d; ep %d etp %d expert-dp %d; %d microbatch(es)\n",
            r->world_size, r->tp, r->pp, r->cp, p->dp, p->vpp, r->ep, p->etp, p->edp, p->num_microbatches);
    print_preflight(p, f);
}

/* args --compare FILE: nam's args against an existing Megatron argv; exit 0 when equal. */
static int compare_args(cli *c, const nam_plan *p) {
    nam_args_cmp cmp;
    nam_error err;
    size_t len = 0;
    char *text, *buf = NULL;
    size_t n = 0;
    FILE *mf;
    int i, rc;
    static const char *const tags[4] = { "match", "missing", "only-nam", "differs" };
    memset(&err, 0, sizeof err);
    if (!strcmp(c->compare_file, "-")) text = read_file("/dev/stdin", &len, &err);
    else text = read_file(c->compare_file, &len, &err);
    if (!text) { err.code = NAM_ERR_IO; report(c, &err); return EXIT_USAGE; }
    if (nam_args_compare(p, text, len, c->compare_file, &cmp, &err) != NAM_OK) { free(text); report(c, &err); return EXIT_USAGE; }
    free(text);
    mf = open_memstream(&buf, &n);
    if (!mf) { perror("nam"); nam_args_cmp_free(&cmp); return EXIT_USAGE; }
    if (c->json) {
        fprintf(mf, "{\"equal\": %s, \"counts\": {\"match\": %d, \"missing_in_nam\": %d, \"only_in_nam\": %d, \"differs\": %d}, \"ignored_words\": %d, \"flags\": [",
                cmp.num_rows == cmp.count[NAM_CMP_MATCH] ? "true" : "false", cmp.count[0], cmp.count[1], cmp.count[2], cmp.count[3], cmp.ignored_words);
        for (i = 0; i < cmp.num_rows; i++) {
            const nam_cmp_row *R = &cmp.rows[i];
            fprintf(mf, "%s\n  {\"flag\": ", i ? "," : "");
            json_str(mf, R->flag, strlen(R->flag));
            fprintf(mf, ", \"verdict\": \"%s\", \"nam\": ", nam_cmp_verdict_str(R->verdict));
            if (R->nam_value) json_str(mf, R->nam_value, strlen(R->nam_value)); else fputs("null", mf);
            fputs(", \"other\": ", mf);
            if (R->other_value) json_str(mf, R->other_value, strlen(R->other_value)); else fputs("null", mf);
            fputs(", \"note\": ", mf);
            if (R->note) json_str(mf, R->note, strlen(R->note)); else fputs("null", mf);
            fputc('}', mf);
        }
        fprintf(mf, "\n]}\n");
    } else {
        fprintf(mf, "# nam args vs %s: %d match, %d missing in nam, %d only in nam, %d differ%s\n", c->compare_file,
                cmp.count[0], cmp.count[1], cmp.count[2], cmp.count[3], cmp.ignored_words ? " (words before the first flag ignored)" : "");
        for (i = 0; i < cmp.num_rows; i++) {
            const nam_cmp_row *R = &cmp.rows[i];
            fprintf(mf, "%-9s %-44s", tags[R->verdict], R->flag);
            if (R->verdict == NAM_CMP_DIFFERS) fprintf(mf, " nam %s | other %s", R->nam_value, R->other_value);
            else if (R->nam_value && R->nam_value[0]) fprintf(mf, " %s", R->nam_value);
            else if (R->other_value && R->other_value[0]) fprintf(mf, " %s", R->other_value);
            if (R->note) fprintf(mf, "  (%s)", R->note);
            fputc('\n', mf);
        }
    }
    fclose(mf);
    rc = emit(c, buf);
    free(buf);
    if (!rc && cmp.num_rows != cmp.count[NAM_CMP_MATCH]) rc = EXIT_REFUSED;
    nam_args_cmp_free(&cmp);
    return rc;
}

static int cmd_plan(cli *c) {
    nam_recipe r;
    nam_plan p;
    nam_error err;
    char *out = NULL;
    int rc = 0;
    if ((rc = load_recipe(c, &r))) return rc;
    if (!strcmp(c->cmd, "recipe")) {
        if (nam_recipe_write(&r, &out, &err) != NAM_OK) { report(c, &err); nam_recipe_free(&r); return EXIT_REFUSED; }
        rc = emit(c, out);
        nam_free(out);
        nam_recipe_free(&r);
        return rc;
    }
    if (nam_plan_make(&r, &p, &err) != NAM_OK) {
        report(c, &err);
        nam_recipe_free(&r);
        return EXIT_REFUSED;
    }
    nam_recipe_free(&r);
    if (c->strict && p.num_seams > 0) {
        int i;
        fprintf(stderr, "nam: --strict: %d seam(s) remain:", p.num_seams);
        for (i = 0; i < p.num_seams; i++) {
            if (p.seams[i].family) fprintf(stderr, " %s (family %c)", p.seams[i].name, p.seams[i].family);
            else fprintf(stderr, " %s (%s)", p.seams[i].name, p.seams[i].placement);
        }
        fprintf(stderr, "\n");
        if (c->json) printf("{\"error\":{\"code\":\"%s\",\"message\":\"--strict: %d seam(s) remain\"}}\n", nam_status_str(NAM_ERR_UNSUPPORTED), p.num_seams);
        nam_plan_free(&p);
        return EXIT_REFUSED;
    }
    if (!strcmp(c->cmd, "plan") && !c->json) {
        /* the table goes through a memory stream so -o stays atomic */
        char *buf = NULL;
        size_t n = 0;
        FILE *mf = open_memstream(&buf, &n);
        if (!mf) { perror("nam"); nam_plan_free(&p); return EXIT_USAGE; }
        print_plan_text(&p, mf);
        fclose(mf);
        rc = emit(c, buf);
        free(buf);
        nam_plan_free(&p);
        return rc;
    }
    if (c->compare_file) {
        rc = compare_args(c, &p);
        nam_plan_free(&p);
        return rc;
    }
    if (!strcmp(c->cmd, "args") && !c->json) {
        if (nam_plan_args_text(&p, &out, &err) != NAM_OK) { report(c, &err); nam_plan_free(&p); return EXIT_REFUSED; }
    } else {
        int what = !strcmp(c->cmd, "plan") ? NAM_JSON_PLAN : !strcmp(c->cmd, "args") ? NAM_JSON_ARGS : NAM_JSON_LAUNCH;
        if (nam_plan_json(&p, what, &out, &err) != NAM_OK) { report(c, &err); nam_plan_free(&p); return EXIT_REFUSED; }
    }
    rc = emit(c, out);
    nam_free(out);
    nam_plan_free(&p);
    return rc;
}

/* The stages (vp_stage, layers, offset) owned by pipeline rank `pp_rank`, as JSON. */
static void json_rank_stages(FILE *f, const nam_layout *lay, int pp_rank) {
    int i, first = 1;
    fputc('[', f);
    for (i = 0; i < lay->num_stages; i++) {
        const nam_stage *S = &lay->stages[i];
        if (S->pp_rank != pp_rank) continue;
        fprintf(f, "%s{\"vp_stage\":%d,\"layers\":", first ? "" : ",", S->vp_stage);
        json_str(f, S->seg.layers, (size_t)S->seg.num_layers);
        fprintf(f, ",\"offset\":%d}", S->seg.offset);
        first = 0;
    }
    fputc(']', f);
}

static int cmd_ranks(cli *c) {
    nam_rankmap_desc d;
    nam_rankmap m;
    nam_error err;
    nam_mpattern mp;
    nam_layout lay;
    char *out = NULL, *buf = NULL;
    size_t n = 0;
    FILE *mf;
    int rc, i;
    if (!c->have_world || !c->have_tp || !c->have_pp) return usage_error("ranks needs --world N --tp T --pp P%s", "");
    if (c->positional) return usage_error("ranks takes no positional argument ('%s')", c->positional);
    memset(&d, 0, sizeof d);
    memset(&lay, 0, sizeof lay);
    memset(&mp, 0, sizeof mp);
    d.world_size = c->world;
    d.tp = c->tp;
    d.pp = c->pp;
    d.cp = c->cp;
    d.ep = c->ep;
    d.etp = c->etp;
    d.order = c->order;
    if (nam_rankmap_build(&d, &m, &err) != NAM_OK) { report(c, &err); return EXIT_REFUSED; }
    if (c->pattern_value) {
        nam_layout_desc ld;
        memset(&ld, 0, sizeof ld);
        ld.pp = c->pp;
        if (nam_megatron_parse(c->pattern_value, strlen(c->pattern_value), &mp, &err) != NAM_OK ||
            nam_megatron_layout(&mp, &ld, &lay, &err) != NAM_OK) {
            report(c, &err);
            nam_megatron_free(&mp);
            nam_rankmap_free(&m);
            return EXIT_REFUSED;
        }
    }
    mf = open_memstream(&buf, &n);
    if (!mf) { perror("nam"); nam_rankmap_free(&m); nam_megatron_free(&mp); nam_layout_free(&lay); return EXIT_USAGE; }
    if (c->rank >= 0) {
        nam_rank_coords rc2;
        if (nam_rankmap_query_rank(&m, c->rank, &rc2, &err) != NAM_OK) {
            fclose(mf); free(buf);
            report(c, &err); nam_rankmap_free(&m); nam_megatron_free(&mp); nam_layout_free(&lay);
            return EXIT_REFUSED;
        }
        if (c->json) {
            fprintf(mf, "{\"rank\":%d,\"tp\":%d,\"cp\":%d,\"dp\":%d,\"pp\":%d,\"expert_tp\":%d,\"ep\":%d,\"expert_dp\":%d",
                    c->rank, rc2.tp, rc2.cp, rc2.dp, rc2.pp, rc2.etp, rc2.ep, rc2.edp);
            if (c->pattern_value) { fprintf(mf, ",\"stages\":"); json_rank_stages(mf, &lay, rc2.pp); }
            fprintf(mf, "}\n");
        } else {
            fprintf(mf, "rank %d: tp %d, cp %d, dp %d, pp %d; expert tp %d, ep %d, expert dp %d\n",
                    c->rank, rc2.tp, rc2.cp, rc2.dp, rc2.pp, rc2.etp, rc2.ep, rc2.edp);
            for (i = 0; c->pattern_value && i < lay.num_stages; i++)
                if (lay.stages[i].pp_rank == rc2.pp)
                    fprintf(mf, "  vp_stage %d: layers %d..%d  %.*s\n", lay.stages[i].vp_stage, lay.stages[i].seg.offset,
                            lay.stages[i].seg.offset + lay.stages[i].seg.num_layers - 1, lay.stages[i].seg.num_layers, lay.stages[i].seg.layers);
        }
    } else {
        size_t l;
        if (nam_rankmap_json(&m, &out, &err) != NAM_OK) {
            fclose(mf); free(buf);
            report(c, &err); nam_rankmap_free(&m); nam_megatron_free(&mp); nam_layout_free(&lay);
            return EXIT_REFUSED;
        }
        l = strlen(out);
        if (c->pattern_value && l >= 3) {
            /* the same object with one more field: the stages each pp rank owns */
            fwrite(out, 1, l - 3, mf);
            fprintf(mf, ",\n  \"stages_by_pp_rank\": [");
            for (i = 0; i < c->pp; i++) { fprintf(mf, i ? "," : ""); json_rank_stages(mf, &lay, i); }
            fprintf(mf, "]\n}\n");
        } else {
            fwrite(out, 1, l, mf);   /* the JSON is also the readable form */
        }
        nam_free(out);
    }
    fclose(mf);
    rc = emit(c, buf);
    free(buf);
    nam_rankmap_free(&m);
    nam_megatron_free(&mp);
    nam_layout_free(&lay);
    return rc;
}

static void json_str(FILE *f, const char *s, size_t n) {
    size_t i;
    fputc('"', f);
    for (i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\') fprintf(f, "\\%c", ch);
        else if (ch < 0x20 || ch >= 0x7f) fprintf(f, "\\u%04x", ch);
        else fputc(ch, f);
    }
    fputc('"', f);
}

static int cmd_megatron(cli *c) {
    nam_mpattern mp;
    nam_layout lay;
    nam_layout_desc ld;
    nam_error err;
    char *buf = NULL;
    size_t n = 0;
    FILE *mf;
    int i, rc;
    if (!c->positional) return usage_error("megatron needs a PATTERN (use `nam megatron -- PATTERN` when it starts with '-')%s", "");
    if (nam_megatron_parse(c->positional, strlen(c->positional), &mp, &err) != NAM_OK) { report(c, &err); return EXIT_REFUSED; }
    memset(&ld, 0, sizeof ld);
    ld.pp = c->have_pp ? c->pp : 1;
    ld.first_stage_layers = c->first;
    ld.last_stage_layers = c->last;
    ld.no_overlap_p2p = c->no_overlap;
    if (nam_megatron_layout(&mp, &ld, &lay, &err) != NAM_OK) { report(c, &err); nam_megatron_free(&mp); return EXIT_REFUSED; }
    mf = open_memstream(&buf, &n);
    if (!mf) { perror("nam"); nam_megatron_free(&mp); nam_layout_free(&lay); return EXIT_USAGE; }
    if (c->json) {
        fprintf(mf, "{\"main\":");
        if (mp.main) json_str(mf, mp.main, strlen(mp.main)); else fprintf(mf, "null");
        fprintf(mf, ",\"mtp\":");
        if (mp.mtp) json_str(mf, mp.mtp, strlen(mp.mtp)); else fprintf(mf, "null");
        fprintf(mf, ",\"mtp_depths\":%d,\"num_layers\":%d,\"segments\":%d,\"pp\":%d,\"vpp\":%d,\"counts\":{", mp.mtp_depths, mp.num_layers, mp.num_segments, lay.pp, lay.vpp);
        for (i = 0; i < NAM_MSYM_COUNT; i++) fprintf(mf, "%s\"%c\":%d", i ? "," : "", NAM_MEGATRON_SYMBOLS[i], mp.counts[i]);
        fprintf(mf, "},\"stages\":[");
        for (i = 0; i < lay.num_stages; i++) {
            fprintf(mf, "%s{\"vp_stage\":%d,\"pp_rank\":%d,\"layers\":", i ? "," : "", lay.stages[i].vp_stage, lay.stages[i].pp_rank);
            json_str(mf, lay.stages[i].seg.layers, (size_t)lay.stages[i].seg.num_layers);
            fprintf(mf, ",\"offset\":%d}", lay.stages[i].seg.offset);
        }
        fprintf(mf, "]}\n");
    } else {
        fprintf(mf, "main       %s\n", mp.main ? mp.main : "(none)");
        fprintf(mf, "mtp        %s x %d\n", mp.mtp ? mp.mtp : "(none)", mp.mtp_depths);
        if (lay.vpp) fprintf(mf, "layers     %d in %d segment(s); pp %d, vpp %d\n", mp.num_layers, mp.num_segments, lay.pp, lay.vpp);
        else fprintf(mf, "layers     %d in %d segment(s); pp %d, vpp none\n", mp.num_layers, mp.num_segments, lay.pp);
        fprintf(mf, "counts    ");
        for (i = 0; i < NAM_MSYM_COUNT; i++) fprintf(mf, " %c=%d", NAM_MEGATRON_SYMBOLS[i], mp.counts[i]);
        fprintf(mf, "\n");
        for (i = 0; i < lay.num_stages; i++)
            fprintf(mf, "vp_stage %d pp_rank %d  offset %3d  %.*s\n", lay.stages[i].vp_stage, lay.stages[i].pp_rank,
                    lay.stages[i].seg.offset, lay.stages[i].seg.num_layers, lay.stages[i].seg.layers);
    }
    fclose(mf);
    rc = emit(c, buf);
    free(buf);
    nam_megatron_free(&mp);
    nam_layout_free(&lay);
    return rc;
}

int main(int argc, char **argv) {
    cli c;
    int rc = parse_args(&c, argc, argv);
    if (rc) return rc;
    if (!c.cmd) { fputs(usage_text, stderr); return EXIT_USAGE; }
    if (!strcmp(c.cmd, "plan") || !strcmp(c.cmd, "args") || !strcmp(c.cmd, "launch") || !strcmp(c.cmd, "recipe")) return cmd_plan(&c);
    if (!strcmp(c.cmd, "ranks")) return cmd_ranks(&c);
    if (!strcmp(c.cmd, "megatron")) return cmd_megatron(&c);
    return usage_error("unknown command '%s'", c.cmd);
}
