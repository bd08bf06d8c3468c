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
    "  plan [RECIPE]      layer table, counts, stages and seams (default: built-in NAM56R);\n"
    "                     with --svg, the plan as a picture (one cell per layer)\n"
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
    "  --svg              plan only: an SVG picture of the plan instead of the table\n"
    "  --help, --version\n"
    "\n"
    "exit status: 0 ok, 1 refused or invalid, 2 usage or input error\n";

typedef struct cli {
    const char *cmd;
    const char *recipe_file;
    const char *out_file;
    const char *positional;
    int json, strict, svg;
    /* recipe overrides, applied in order */
    const char *sets[256][2];
    int nsets;
    char map[NAM_STR_MAX];
    /* ranks / megatron: the parallel shorthands as integers (0 = not given) */
    int world, tp, pp, cp, ep, etp, rank, first, last, no_overlap;
    const char *order;
    const char *pattern_value;   /* last --pattern (ranks: Megatron pattern whose stages ranks own) */
    const char *compare_file;    /* args --compare FILE ("-" = stdin) */
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

/* Shorthands for recipe keys. The parallel ones are also read here, once, as integers
   (`member`, range lo..NAM_MAX_PARALLEL) for ranks and megatron, which take no recipe. */
#define CLI_INT(m) offsetof(cli, m)
#define CLI_NONE ((size_t)-1)
static const struct { const char *flag, *key; size_t member; int lo; } shorthands[] = {
    { "--tp", "parallel.tp", CLI_INT(tp), 1 }, { "--pp", "parallel.pp", CLI_INT(pp), 1 }, { "--cp", "parallel.cp", CLI_INT(cp), 1 },
    { "--ep", "parallel.ep", CLI_INT(ep), 1 }, { "--etp", "parallel.etp", CLI_INT(etp), 0 },
    { "--world", "parallel.world_size", CLI_INT(world), 1 }, { "--depth", "pattern.depth", CLI_NONE, 0 },
    { "--stages", "pattern.stages", CLI_NONE, 0 }, { "--experts", "moe.num_experts", CLI_NONE, 0 },
    { "--mbs", "batch.micro_batch_size", CLI_NONE, 0 }, { "--gbs", "batch.global_batch_size", CLI_NONE, 0 },
    { "--seq", "model.seq_length", CLI_NONE, 0 }, { "--mode", "recipe.mode", CLI_NONE, 0 },
    { "--dsa-layers", "pattern.dsa_layers", CLI_NONE, 0 },
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
        if (!strcmp(a, "--svg")) { c->svg = 1; continue; }
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
            if (shorthands[k].member != CLI_NONE &&
                (rc = parse_int_arg(a, v, shorthands[k].lo, NAM_MAX_PARALLEL, (int *)(void *)((char *)c + shorthands[k].member))))
                return rc;
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
    for (i = 0; i < pf->num_chunks; i++)
        fprintf(f, "  chunk vp %d / pp %d: %d layers, %.3f B params per GPU, %.2f GiB activations per microbatch (before the TP split)\n",
                pf->chunks[i].vp_stage, pf->chunks[i].pp_rank, pf->chunks[i].num_layers, pf->chunks[i].params / 1e9, pf->chunks[i].activation_bytes / G);
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

/* ---- nam plan --svg ------------------------------------------------------------------
   The plan as one self-contained SVG: no scripts, no external fonts or images. One cell per
   main layer (class "layer", id "layer-I", data-layer / data-family / data-native /
   data-stage / data-pp-rank / data-vp-stage / data-seam / data-seam-kind / data-features),
   grouped by pipeline stage (class "stage", id "stage-S", data-first-layer /
   data-num-layers / data-pp-rank / data-vp-stage), stages of one virtual-pipeline chunk
   framed together (class "vp-chunk"), the MTP block (class "mtp-layer" cells), a legend,
   the stages each pp rank owns and the seams. Every number comes from the nam_plan. */
#define SVG_MARGIN 20
#define SVG_CELL_W 30
#define SVG_CELL_H 34
#define SVG_PITCH 34     /* horizontal distance between cells */
#define SVG_ROW_H 48     /* one row of cells: cell, feature dots, gap */
#define SVG_LABEL_W 176  /* stage label column */
#define SVG_COUNTS_W 150 /* per-stage counts column */
#define SVG_MAX_COLS 32  /* cells per row before a stage wraps */
#define SVG_MIN_W 940
#define SVG_EM 0.56 /* average advance of a character, in em (DejaVu Sans) */
#define SVG_FONT "DejaVu Sans, Verdana, Arial, Helvetica, sans-serif"

typedef struct svg_family { char letter; const char *fill, *ink, *name; } svg_family;
static const svg_family svg_families[] = {
    { 'A', "#4E79A7", "#FFFFFF", "attention" },
    { 'M', "#59A14F", "#FFFFFF", "Mamba" },
    { 'E', "#F28E2B", "#1A1A1A", "MoE experts" },
    { 'R', "#E15759", "#FFFFFF", "recurrent (M2RNN)" },
    { 'F', "#EDC948", "#1A1A1A", "dense MLP" },
};
static const svg_family svg_declared = { 0, "#79706E", "#FFFFFF", "declared family" };
static const struct { int bit; const char *name, *fill, *what; } svg_features[] = {
    { NAM_FEATURE_ENGRAM, "engram", "#17BECF", "Engram n-gram memory" },
    { NAM_FEATURE_MHC, "mhc", "#9467BD", "mHC hyper-connections" },
    { NAM_FEATURE_MOD, "mod", "#8C564B", "MoD token routing" },
};
#define SVG_NFEATURES ((int)(sizeof svg_features / sizeof svg_features[0]))
#define SVG_NTINTS 6   /* stage boxes are tinted by pp rank, cycling */
static const char *svg_rank_tint[SVG_NTINTS] = { "#F1F4F9", "#FBF5E9", "#EEF7F0", "#F8EEF4", "#F0F0F0", "#EEF6F8" };

static const svg_family *svg_family_of(char letter) {
    int i;
    for (i = 0; i < (int)(sizeof svg_families / sizeof svg_families[0]); i++)
        if (svg_families[i].letter == letter) return &svg_families[i];
    return &svg_declared;
}

static const char *svg_seam_kind(nam_seam_kind k) {
    return k == NAM_SEAM_UNMAPPED ? "unmapped" : k == NAM_SEAM_CUSTOM_IMPL ? "custom_impl" : "feature";
}

/* XML text: & < > " escaped; bytes outside printable ASCII become '?', so the output is
   well-formed whatever a recipe name holds. At most n bytes (n < 0: all). */
static void svg_esc(FILE *f, const char *s, int n) {
    int i;
    for (i = 0; s[i] && (n < 0 || i < n); i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '&') fputs("&amp;", f);
        else if (ch == '<') fputs("&lt;", f);
        else if (ch == '>') fputs("&gt;", f);
        else if (ch == '"') fputs("&quot;", f);
        else if (ch < 0x20 || ch >= 0x7f) fputc('?', f);
        else fputc(ch, f);
    }
}

/* <text> at (x, y), cut with "..." to about maxw pixels (SVG_EM per character). */
static void svg_text(FILE *f, double x, double y, double size, const char *attrs, const char *text, double maxw) {
    int n = (int)strlen(text), fit = maxw > 0 ? (int)(maxw / (SVG_EM * size)) : n;
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"%g\"%s%s>", x, y, size, attrs && *attrs ? " " : "", attrs ? attrs : "");
    if (n <= fit) svg_esc(f, text, -1);
    else { svg_esc(f, text, fit > 3 ? fit - 3 : 0); fputs("...", f); }
    fputs("</text>\n", f);
}

/* Cell outline and seam marks of one layer (x, y = top left). */
static void svg_cell(FILE *f, double x, double y, char family, const nam_seam *seam, const char *index_text) {
    const svg_family *fm = svg_family_of(family);
    char letter[2] = { family, 0 };
    fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%d\" height=\"%d\" rx=\"3\" fill=\"%s\"/>\n", x, y, SVG_CELL_W, SVG_CELL_H, fm->fill);
    if (seam && seam->kind == NAM_SEAM_UNMAPPED) {
        fprintf(f, "<rect class=\"mark-unmapped\" x=\"%.1f\" y=\"%.1f\" width=\"%d\" height=\"%d\" rx=\"3\" fill=\"url(#nam-hatch)\" stroke=\"#5A0000\" stroke-width=\"2.5\"/>\n",
                x, y, SVG_CELL_W, SVG_CELL_H);
    } else if (seam && seam->kind == NAM_SEAM_CUSTOM_IMPL) {
        fprintf(f, "<rect class=\"mark-custom\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" rx=\"3\" fill=\"none\" stroke=\"#111111\" stroke-width=\"1.6\" stroke-dasharray=\"3 2\"/>\n",
                x + 0.8, y + 0.8, SVG_CELL_W - 1.6, SVG_CELL_H - 1.6);
        fprintf(f, "<path d=\"M%.1f %.1fh10v10z\" fill=\"#FFFFFF\" stroke=\"#111111\" stroke-width=\"0.8\"/>\n", x + SVG_CELL_W - 10, y);
    }
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"14\" font-weight=\"bold\" text-anchor=\"middle\" fill=\"%s\">", x + SVG_CELL_W / 2.0, y + 16, fm->ink);
    svg_esc(f, letter, -1);
    fprintf(f, "</text>\n<text x=\"%.1f\" y=\"%.1f\" font-size=\"8.5\"%s text-anchor=\"middle\" fill=\"%s\">%s</text>\n",
            x + SVG_CELL_W / 2.0, y + 29, seam && seam->kind == NAM_SEAM_UNMAPPED ? " font-weight=\"bold\"" : "", fm->ink, index_text);
}

/* A short layer list: "2, 6, 10, ..., 50" beyond 6 entries. */
static void svg_layer_list(char *buf, size_t cap, const int *v, int n) {
    size_t l = 0;
    int k;
    buf[0] = 0;
    for (k = 0; k < n && l < cap; k++) {
        if (n > 6 && k == 3) { l += (size_t)snprintf(buf + l, cap - l, ", ..."); k = n - 2; continue; }
        l += (size_t)snprintf(buf + l, cap - l, "%s%d", k ? ", " : "", v[k]);
    }
}

/* The mixer seam of an MTP position: nam__lower gives MTP letters the seam of their family
   (the plan keeps only a count, mtp_positions, per seam). */
static const nam_seam *svg_mtp_seam(const nam_plan *p, char family) {
    int i;
    for (i = 0; i < p->num_seams; i++)
        if (p->seams[i].family == family && p->seams[i].kind != NAM_SEAM_FEATURE && p->seams[i].mtp_positions > 0) return &p->seams[i];
    return NULL;
}

static void print_plan_svg(const nam_plan *p, FILE *out) {
    const nam_recipe *r = &p->recipe;
    const int depth = p->pattern.depth;
    int ns = p->layout.num_stages, use_layout = ns > 0;
    int *sf, *sn, *sr, *sv;
    int s, i, k, maxlen = 1, rows_per, cols, pp = r->pp > 0 ? r->pp : 1, W, grid_w, fam;
    int have_family[27] = {0}, have_unmapped = 0, have_custom = 0, features_seen = 0, mtp_total;
    double y, content_w, counts_x, counts_w;
    char line[1024], list[256];
    char *body = NULL;
    size_t body_n = 0;
    FILE *f;

    if (!use_layout) ns = p->pattern.num_stages;
    sf = (int *)calloc((size_t)ns + 1, sizeof(int));
    sn = (int *)calloc((size_t)ns + 1, sizeof(int));
    sr = (int *)calloc((size_t)ns + 1, sizeof(int));
    sv = (int *)calloc((size_t)ns + 1, sizeof(int));
    f = open_memstream(&body, &body_n);
    if (!sf || !sn || !sr || !sv || !f) {
        fputs("<!-- nam: out of memory -->\n", out);
        free(sf); free(sn); free(sr); free(sv);
        if (f) fclose(f);
        free(body);
        return;
    }
    for (s = 0; s < ns; s++) {
        if (use_layout) {
            sf[s] = p->layout.stages[s].seg.offset;
            sn[s] = p->layout.stages[s].seg.num_layers;
            sr[s] = p->layout.stages[s].pp_rank;
            sv[s] = p->layout.stages[s].vp_stage;
        } else {
            sf[s] = p->pattern.stage_begin[s];
            sn[s] = p->pattern.stage_begin[s + 1] - p->pattern.stage_begin[s];
            sr[s] = s % pp;
            sv[s] = s / pp;
        }
        if (sn[s] > maxlen) maxlen = sn[s];
    }
    rows_per = (maxlen + SVG_MAX_COLS - 1) / SVG_MAX_COLS;
    cols = (maxlen + rows_per - 1) / rows_per;
    grid_w = SVG_LABEL_W + cols * SVG_PITCH + SVG_COUNTS_W;
    W = 2 * SVG_MARGIN + grid_w;
    if (W < SVG_MIN_W) W = SVG_MIN_W;
    content_w = W - 2 * SVG_MARGIN;
    counts_x = SVG_MARGIN + SVG_LABEL_W + cols * SVG_PITCH + 14;
    counts_w = W - SVG_MARGIN - counts_x - 8;
    for (i = 0; i < depth; i++) {
        const nam_plan_layer *L = &p->layers[i];
        if (L->family >= 'A' && L->family <= 'Z') have_family[L->family - 'A'] = 1;
        features_seen |= L->features;
        if (L->seam >= 0) {
            have_unmapped |= p->seams[L->seam].kind == NAM_SEAM_UNMAPPED;
            have_custom |= p->seams[L->seam].kind == NAM_SEAM_CUSTOM_IMPL;
        }
    }
    for (i = 0; p->pattern.mtp && i < p->pattern.mtp_len; i++) {
        const nam_seam *sm = svg_mtp_seam(p, p->pattern.mtp[i]);
        if (p->pattern.mtp[i] >= 'A' && p->pattern.mtp[i] <= 'Z') have_family[p->pattern.mtp[i] - 'A'] = 1;
        if (sm) { have_unmapped |= sm->kind == NAM_SEAM_UNMAPPED; have_custom |= sm->kind == NAM_SEAM_CUSTOM_IMPL; }
    }

    /* ---- header: recipe name, authored pattern, parallel sizes, counts, native pattern */
    y = SVG_MARGIN;
    fprintf(f, "<g id=\"header\">\n");
    snprintf(line, sizeof line, "%s: hybrid layer plan", r->name);
    svg_text(f, SVG_MARGIN, y + 20, 20, "font-weight=\"bold\" fill=\"#1A1A1A\"", line, content_w);
    snprintf(line, sizeof line, "authored %s%s depth %d, mode %s; %d pipeline stage(s) = pp %d x %s%d; tp %d, cp %d, dp %d, ep %d; world %d",
             r->pattern, r->tile ? " tiled to" : ",", depth, p->strict ? "strict" : "plan", ns, pp,
             p->vpp ? "vpp " : "", p->vpp ? p->vpp : 1, r->tp, r->cp, p->dp, r->ep, r->world_size);
    if (!p->vpp) { /* "pp 2 x 1" reads badly: say there is no virtual pipeline */
        snprintf(line, sizeof line, "authored %s%s depth %d, mode %s; %d pipeline stage(s), pp %d, no virtual pipeline; tp %d, cp %d, dp %d, ep %d; world %d",
                 r->pattern, r->tile ? " tiled to" : ",", depth, p->strict ? "strict" : "plan", ns, pp, r->tp, r->cp, p->dp, r->ep, r->world_size);
    }
    svg_text(f, SVG_MARGIN, y + 42, 12.5, "fill=\"#333333\"", line, content_w);
    /* counts with swatches */
    {
        double x = SVG_MARGIN;
        mtp_total = p->pattern.mtp ? p->pattern.mtp_len * p->pattern.mtp_depths : 0;
        snprintf(line, sizeof line, "%d layers", depth);
        svg_text(f, x, y + 64, 12.5, "font-weight=\"bold\" fill=\"#1A1A1A\" id=\"count-layers\"", line, 0);
        x += SVG_EM * 12.5 * (double)strlen(line) + 14;
        for (fam = 0; fam < 26; fam++) {
            if (!p->pattern.counts[fam]) continue;
            fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"12\" height=\"12\" rx=\"2\" fill=\"%s\"/>\n", x, y + 54, svg_family_of((char)('A' + fam))->fill);
            snprintf(line, sizeof line, "%c %d", 'A' + fam, p->pattern.counts[fam]);
            fprintf(f, "<text class=\"count\" data-family=\"%c\" data-count=\"%d\" x=\"%.1f\" y=\"%.1f\" font-size=\"12.5\" fill=\"#1A1A1A\">%s</text>\n",
                    'A' + fam, p->pattern.counts[fam], x + 16, y + 64, line);
            x += 16 + SVG_EM * 12.5 * (double)strlen(line) + 14;
        }
        if (p->pattern.mtp) {
            snprintf(line, sizeof line, "+ MTP %s x %d depth(s) = %d layer(s)", p->pattern.mtp, p->pattern.mtp_depths, mtp_total);
            svg_text(f, x, y + 64, 12.5, "fill=\"#5E35B1\"", line, content_w - (x - SVG_MARGIN));
            x += SVG_EM * 12.5 * (double)strlen(line) + 14;
        }
        snprintf(line, sizeof line, "%d seam(s)", p->num_seams);
        if (x + SVG_EM * 12.5 * (double)strlen(line) < W - SVG_MARGIN) svg_text(f, x, y + 64, 12.5, "fill=\"#1A1A1A\"", line, 0);
    }
    if (p->native_pattern) snprintf(line, sizeof line, "Megatron pattern %.900s", p->native_pattern);
    else snprintf(line, sizeof line, "Megatron pattern withheld: %d layer(s) have no Megatron symbol (hatched cells)", p->unresolved);
    svg_text(f, SVG_MARGIN, y + 86, 12, "font-family=\"DejaVu Sans Mono, Menlo, Consolas, monospace\" fill=\"#333333\"", line, content_w);
    fprintf(f, "</g>\n");
    y += 104;

    /* ---- stages, framed by virtual-pipeline chunk */
    fprintf(f, "<g id=\"stages\" data-num-stages=\"%d\">\n", ns);
    for (s = 0; s < ns; s++) {
        int rows = (sn[s] + cols - 1) / cols, bh;
        double ys;
        if (rows < 1) rows = 1;
        bh = rows * SVG_ROW_H + 8;
        if (bh < 58) bh = 58;
        if (p->vpp && (s == 0 || sv[s] != sv[s - 1])) {
            int e = s, hgt = 0;
            while (e < ns && sv[e] == sv[s]) {
                int rr = (sn[e] + cols - 1) / cols, h;
                if (rr < 1) rr = 1;
                h = rr * SVG_ROW_H + 8;
                hgt += (h < 58 ? 58 : h) + 6;
                e++;
            }
            fprintf(f, "<g class=\"vp-chunk\" id=\"vp-chunk-%d\" data-vp-stage=\"%d\">\n", sv[s], sv[s]);
            fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%d\" rx=\"8\" fill=\"none\" stroke=\"#7F8C9D\" stroke-width=\"1.2\" stroke-dasharray=\"6 4\"/>\n",
                    SVG_MARGIN - 8.0, y, content_w + 16, hgt + 22);
            snprintf(line, sizeof line, "virtual-pipeline chunk %d (vp_stage %d): stages %d..%d, one on each of the %d pp rank(s)", sv[s], sv[s], s, e - 1, pp);
            svg_text(f, SVG_MARGIN, y + 14, 11.5, "font-style=\"italic\" fill=\"#4A5563\"", line, content_w);
            y += 20;
        }
        ys = y;
        fprintf(f, "<g class=\"stage\" id=\"stage-%d\" data-stage=\"%d\" data-pp-rank=\"%d\" data-vp-stage=\"%d\" data-first-layer=\"%d\" data-num-layers=\"%d\">\n",
                s, s, sr[s], sv[s], sf[s], sn[s]);
        fprintf(f, "<rect class=\"stage-box\" x=\"%d\" y=\"%.1f\" width=\"%.1f\" height=\"%d\" rx=\"6\" fill=\"%s\" stroke=\"#B8C0CC\"/>\n",
                SVG_MARGIN, ys, content_w, bh, svg_rank_tint[sr[s] % SVG_NTINTS]);
        snprintf(line, sizeof line, "stage %d", s);
        svg_text(f, SVG_MARGIN + 10, ys + 19, 14, "font-weight=\"bold\" fill=\"#1A1A1A\"", line, SVG_LABEL_W - 14);
        if (p->vpp) snprintf(line, sizeof line, "pp rank %d, vp chunk %d", sr[s], sv[s]);
        else snprintf(line, sizeof line, "pp rank %d", sr[s]);
        svg_text(f, SVG_MARGIN + 10, ys + 35, 11.5, "fill=\"#1A1A1A\"", line, SVG_LABEL_W - 14);
        if (sn[s]) snprintf(line, sizeof line, "layers %d..%d (%d)", sf[s], sf[s] + sn[s] - 1, sn[s]);
        else snprintf(line, sizeof line, "no layers");
        svg_text(f, SVG_MARGIN + 10, ys + 50, 11, "fill=\"#4A5563\"", line, SVG_LABEL_W - 14);
        for (k = 0; k < sn[s]; k++) {
            int li = sf[s] + k, j, nf = 0, fl = 0;
            const nam_plan_layer *L;
            const nam_seam *sm;
            double x = SVG_MARGIN + SVG_LABEL_W + (k % cols) * SVG_PITCH, yc = ys + 6 + (k / cols) * SVG_ROW_H;
            char idx[16], nat[2] = { 0, 0 };
            if (li < 0 || li >= depth) continue;
            L = &p->layers[li];
            sm = L->seam >= 0 ? &p->seams[L->seam] : NULL;
            nat[0] = L->native;
            fprintf(f, "<g class=\"layer\" id=\"layer-%d\" data-layer=\"%d\" data-family=\"%c\" data-native=\"", li, li, L->family);
            svg_esc(f, nat, -1);
            fprintf(f, "\" data-stage=\"%d\" data-authored-stage=\"%d\" data-pp-rank=\"%d\" data-vp-stage=\"%d\" data-seam=\"", s, L->stage, sr[s], sv[s]);
            if (sm) svg_esc(f, sm->name, -1);
            fprintf(f, "\" data-seam-kind=\"%s\" data-features=\"", sm ? svg_seam_kind(sm->kind) : "");
            for (j = 0; j < SVG_NFEATURES; j++) if (L->features & svg_features[j].bit) { fprintf(f, "%s%s", fl ? " " : "", svg_features[j].name); fl = 1; }
            fprintf(f, "\">\n<title>layer %d (layer_number %d): %c %s, Megatron '%s'; stage %d, pp rank %d", li, li + 1, L->family,
                    svg_family_of(L->family)->name, L->native ? nat : "none", s, sr[s]);
            if (p->vpp) fprintf(f, ", vp chunk %d", sv[s]);
            if (sm) { fputs("; seam ", f); svg_esc(f, sm->name, -1); fprintf(f, " (%s)", svg_seam_kind(sm->kind)); }
            for (j = 0; j < SVG_NFEATURES; j++) if (L->features & svg_features[j].bit) fprintf(f, "; +%s", svg_features[j].name);
            fputs("</title>\n", f);
            snprintf(idx, sizeof idx, "%d", li);
            svg_cell(f, x, yc, L->family, sm, idx);
            for (j = 0; j < SVG_NFEATURES; j++) if (L->features & svg_features[j].bit) nf++;
            for (j = 0, fl = 0; j < SVG_NFEATURES; j++) {
                if (!(L->features & svg_features[j].bit)) continue;
                fprintf(f, "<circle class=\"feature\" data-feature=\"%s\" cx=\"%.1f\" cy=\"%.1f\" r=\"3.2\" fill=\"%s\"/>\n", svg_features[j].name,
                        x + SVG_CELL_W / 2.0 - (nf - 1) * 4.0 + fl * 8.0, yc + SVG_CELL_H + 5.5, svg_features[j].fill);
                fl++;
            }
            fputs("</g>\n", f);
        }
        {   /* per-stage counts beside the cells, wrapped to the column */
            int c[26] = {0}, nl = 0;
            size_t l = 0;
            char item[24];
            line[0] = 0;
            for (k = 0; k < sn[s]; k++)
                if (sf[s] + k < depth && p->layers[sf[s] + k].family >= 'A' && p->layers[sf[s] + k].family <= 'Z') c[p->layers[sf[s] + k].family - 'A']++;
            for (fam = 0; fam <= 26; fam++) {
                if (fam < 26 && !c[fam]) continue;
                if (fam < 26) snprintf(item, sizeof item, "%c %d", 'A' + fam, c[fam]);
                if (l && (fam == 26 || SVG_EM * 11.5 * (double)(l + 2 + strlen(item)) > counts_w)) {
                    svg_text(f, counts_x, ys + 19 + 14 * nl++, 11.5, "fill=\"#1A1A1A\"", line, counts_w);
                    l = 0;
                    line[0] = 0;
                }
                if (fam < 26) l += (size_t)snprintf(line + l, sizeof line - l, "%s%s", l ? "  " : "", item);
            }
        }
        fputs("</g>\n", f);
        y += bh + 6;
        if (p->vpp && (s == ns - 1 || sv[s + 1] != sv[s])) { fputs("</g>\n", f); y += 10; }
    }
    fputs("</g>\n", f);

    /* ---- MTP block: one row per depth copy */
    if (p->pattern.mtp && p->pattern.mtp_len > 0) {
        int d, rows = 0, bh;
        for (d = 0; d < p->pattern.mtp_depths; d++) rows += (p->pattern.mtp_len + cols - 1) / cols;
        bh = rows * SVG_ROW_H + 8;
        if (bh < 58) bh = 58;
        y += 4;
        fprintf(f, "<g id=\"mtp\" class=\"mtp\" data-block=\"");
        svg_esc(f, p->pattern.mtp, -1);
        fprintf(f, "\" data-depths=\"%d\" data-native=\"", p->pattern.mtp_depths);
        if (p->mtp_native) svg_esc(f, p->mtp_native, -1);
        fprintf(f, "\">\n<rect x=\"%d\" y=\"%.1f\" width=\"%.1f\" height=\"%d\" rx=\"6\" fill=\"#EFEAF8\" stroke=\"#7E57C2\" stroke-width=\"1.4\" stroke-dasharray=\"5 3\"/>\n",
                SVG_MARGIN, y, content_w, bh);
        svg_text(f, SVG_MARGIN + 10, y + 19, 14, "font-weight=\"bold\" fill=\"#4527A0\"", "MTP block", SVG_LABEL_W - 14);
        snprintf(line, sizeof line, "after '/': %s x %d", p->pattern.mtp, p->pattern.mtp_depths);
        svg_text(f, SVG_MARGIN + 10, y + 35, 11.5, "fill=\"#1A1A1A\"", line, SVG_LABEL_W - 14);
        snprintf(line, sizeof line, "last stage, pp rank %d", ns > 0 ? sr[ns - 1] : 0);
        svg_text(f, SVG_MARGIN + 10, y + 50, 11, "fill=\"#4A5563\"", line, SVG_LABEL_W - 14);
        snprintf(line, sizeof line, "Megatron %s", p->mtp_native ? p->mtp_native : "(unmapped)");
        svg_text(f, counts_x, y + 19, 11.5, "fill=\"#1A1A1A\"", line, counts_w);
        rows = 0;
        for (d = 0; d < p->pattern.mtp_depths; d++) {
            for (k = 0; k < p->pattern.mtp_len; k++) {
                char fl = p->pattern.mtp[k], nat[2] = { p->mtp_native ? p->mtp_native[k] : 0, 0 }, idx[24];
                const nam_seam *sm = svg_mtp_seam(p, fl);
                double x = SVG_MARGIN + SVG_LABEL_W + (k % cols) * SVG_PITCH, yc = y + 6 + (rows + k / cols) * SVG_ROW_H;
                fprintf(f, "<g class=\"mtp-layer\" id=\"mtp-%d-%d\" data-mtp-depth=\"%d\" data-position=\"%d\" data-family=\"%c\" data-native=\"", d, k, d, k, fl);
                svg_esc(f, nat, -1);
                fprintf(f, "\" data-seam=\"");
                if (sm) svg_esc(f, sm->name, -1);
                fprintf(f, "\" data-seam-kind=\"%s\">\n<title>MTP depth %d, position %d: %c %s, Megatron '%s'", sm ? svg_seam_kind(sm->kind) : "", d, k, fl,
                        svg_family_of(fl)->name, nat[0] ? nat : "none");
                if (sm) { fputs("; seam ", f); svg_esc(f, sm->name, -1); }
                fputs("</title>\n", f);
                snprintf(idx, sizeof idx, "d%d.%d", d, k);
                svg_cell(f, x, yc, fl, sm, idx);
                fputs("</g>\n", f);
            }
            rows += (p->pattern.mtp_len + cols - 1) / cols;
        }
        fputs("</g>\n", f);
        y += bh + 6;
    }

    /* ---- legend: what each colour and mark means (present ones only) */
    {
        double x = SVG_MARGIN, iw;
        y += 8;
        fprintf(f, "<g id=\"legend\">\n");
        svg_text(f, SVG_MARGIN, y + 14, 13, "font-weight=\"bold\" fill=\"#1A1A1A\"", "Legend", 0);
        y += 24;
#define SVG_LEGEND_ITEM(text_)                                                       \
        do {                                                                         \
            iw = 26 + SVG_EM * 11.5 * (double)strlen(text_) + 18;                      \
            if (x + iw > W - SVG_MARGIN && x > SVG_MARGIN) { x = SVG_MARGIN; y += 24; } \
        } while (0)
        for (fam = 0; fam < 26; fam++) {
            const svg_family *fm;
            if (!have_family[fam]) continue;
            fm = svg_family_of((char)('A' + fam));
            snprintf(line, sizeof line, "%c  %s", 'A' + fam, fm->name);
            SVG_LEGEND_ITEM(line);
            fprintf(f, "<g class=\"legend-item\" data-family=\"%c\"><rect x=\"%.1f\" y=\"%.1f\" width=\"18\" height=\"18\" rx=\"3\" fill=\"%s\"/>", 'A' + fam, x, y, fm->fill);
            svg_text(f, x + 24, y + 13.5, 11.5, "fill=\"#1A1A1A\"", line, 0);
            fputs("</g>\n", f);
            x += iw;
        }
        if (p->pattern.mtp) {
            snprintf(line, sizeof line, "MTP block (after '/', colour by family)");
            SVG_LEGEND_ITEM(line);
            fprintf(f, "<g class=\"legend-item\" data-mark=\"mtp\"><rect x=\"%.1f\" y=\"%.1f\" width=\"18\" height=\"18\" rx=\"3\" fill=\"#EFEAF8\" stroke=\"#7E57C2\" stroke-dasharray=\"5 3\"/>", x, y);
            svg_text(f, x + 24, y + 13.5, 11.5, "fill=\"#1A1A1A\"", line, 0);
            fputs("</g>\n", f);
            x += iw;
        }
        if (have_custom) {
            snprintf(line, sizeof line, "custom implementation: Megatron symbol, the layer spec supplies the mixer");
            SVG_LEGEND_ITEM(line);
            fprintf(f, "<g class=\"legend-item\" data-mark=\"custom_impl\"><rect x=\"%.1f\" y=\"%.1f\" width=\"18\" height=\"18\" rx=\"3\" fill=\"#BFC5CE\" stroke=\"#111111\" stroke-width=\"1.6\" stroke-dasharray=\"3 2\"/>"
                       "<path d=\"M%.1f %.1fh7v7z\" fill=\"#FFFFFF\" stroke=\"#111111\" stroke-width=\"0.8\"/>", x, y, x + 11, y);
            svg_text(f, x + 24, y + 13.5, 11.5, "fill=\"#1A1A1A\"", line, 0);
            fputs("</g>\n", f);
            x += iw;
        }
        if (have_unmapped) {
            snprintf(line, sizeof line, "no Megatron symbol: a seam that withholds the native pattern");
            SVG_LEGEND_ITEM(line);
            fprintf(f, "<g class=\"legend-item\" data-mark=\"unmapped\"><rect x=\"%.1f\" y=\"%.1f\" width=\"18\" height=\"18\" rx=\"3\" fill=\"#BFC5CE\"/>"
                       "<rect x=\"%.1f\" y=\"%.1f\" width=\"18\" height=\"18\" rx=\"3\" fill=\"url(#nam-hatch)\" stroke=\"#5A0000\" stroke-width=\"2.5\"/>", x, y, x, y);
            svg_text(f, x + 24, y + 13.5, 11.5, "fill=\"#1A1A1A\"", line, 0);
            fputs("</g>\n", f);
            x += iw;
        }
        for (k = 0; k < SVG_NFEATURES; k++) {
            if (!(features_seen & svg_features[k].bit)) continue;
            snprintf(line, sizeof line, "%s (feature seam)", svg_features[k].what);
            SVG_LEGEND_ITEM(line);
            fprintf(f, "<g class=\"legend-item\" data-feature=\"%s\"><circle cx=\"%.1f\" cy=\"%.1f\" r=\"5\" fill=\"%s\"/>", svg_features[k].name, x + 9, y + 9, svg_features[k].fill);
            svg_text(f, x + 24, y + 13.5, 11.5, "fill=\"#1A1A1A\"", line, 0);
            fputs("</g>\n", f);
            x += iw;
        }
        if (p->vpp) {
            snprintf(line, sizeof line, "virtual-pipeline chunk");
            SVG_LEGEND_ITEM(line);
            fprintf(f, "<g class=\"legend-item\" data-mark=\"vp-chunk\"><rect x=\"%.1f\" y=\"%.1f\" width=\"18\" height=\"18\" rx=\"3\" fill=\"none\" stroke=\"#7F8C9D\" stroke-width=\"1.2\" stroke-dasharray=\"4 3\"/>", x, y);
            svg_text(f, x + 24, y + 13.5, 11.5, "fill=\"#1A1A1A\"", line, 0);
            fputs("</g>\n", f);
            x += iw;
        }
#undef SVG_LEGEND_ITEM
        fputs("</g>\n", f);
        y += 30;
    }

    /* ---- which stages each pp rank owns */
    fprintf(f, "<g id=\"ranks\">\n");
    svg_text(f, SVG_MARGIN, y + 14, 13, "font-weight=\"bold\" fill=\"#1A1A1A\"", "Pipeline ranks", 0);
    y += 22;
    for (i = 0; i < pp; i++) {
        size_t l = 0;
        int total = 0, first = 1;
        l += (size_t)snprintf(line + l, sizeof line - l, "pp rank %d:", i);
        for (s = 0; s < ns && l < sizeof line; s++) {
            if (sr[s] != i) continue;
            total += sn[s];
            if (sn[s]) l += (size_t)snprintf(line + l, sizeof line - l, "%s stage %d (layers %d..%d)", first ? "" : ",", s, sf[s], sf[s] + sn[s] - 1);
            else l += (size_t)snprintf(line + l, sizeof line - l, "%s stage %d (no layers)", first ? "" : ",", s);
            first = 0;
        }
        if (l < sizeof line) snprintf(line + l, sizeof line - l, "; %d layer(s)%s", total, p->pattern.mtp && ns > 0 && sr[ns - 1] == i ? " + the MTP block" : "");
        fprintf(f, "<rect x=\"%d\" y=\"%.1f\" width=\"12\" height=\"12\" rx=\"2\" fill=\"%s\" stroke=\"#B8C0CC\"/>\n", SVG_MARGIN, y + 3, svg_rank_tint[i % SVG_NTINTS]);
        fprintf(f, "<g class=\"rank\" data-pp-rank=\"%d\">", i);
        svg_text(f, SVG_MARGIN + 18, y + 13, 11.5, "fill=\"#1A1A1A\"", line, content_w - 18);
        fputs("</g>\n", f);
        y += 18;
    }
    fputs("</g>\n", f);
    y += 10;

    /* ---- seams */
    fprintf(f, "<g id=\"seams\" data-num-seams=\"%d\">\n", p->num_seams);
    snprintf(line, sizeof line, "Seams (%d): what the runtime must supply", p->num_seams);
    svg_text(f, SVG_MARGIN, y + 14, 13, "font-weight=\"bold\" fill=\"#1A1A1A\"", line, 0);
    y += 22;
    if (!p->num_seams) { svg_text(f, SVG_MARGIN, y + 13, 11.5, "fill=\"#1A1A1A\"", "none: every layer is a stock Megatron-LM layer", 0); y += 18; }
    for (i = 0; i < p->num_seams; i++) {
        const nam_seam *sm = &p->seams[i];
        const char *kind = sm->kind == NAM_SEAM_UNMAPPED ? "no Megatron symbol" : sm->kind == NAM_SEAM_CUSTOM_IMPL ? "Megatron symbol + custom implementation" : "feature";
        size_t l = 0;
        fprintf(f, "<g class=\"seam\" data-seam=\"");
        svg_esc(f, sm->name, -1);
        fprintf(f, "\" data-seam-kind=\"%s\" data-num-layers=\"%d\">", svg_seam_kind(sm->kind), sm->num_layers);
        if (sm->kind == NAM_SEAM_FEATURE) {
            const char *fill = "#BFC5CE";
            for (k = 0; k < SVG_NFEATURES; k++) if (!strcmp(sm->mixer, svg_features[k].name)) fill = svg_features[k].fill;
            fprintf(f, "<circle cx=\"%d\" cy=\"%.1f\" r=\"5\" fill=\"%s\"/>", SVG_MARGIN + 6, y + 9, fill);
        } else {
            fprintf(f, "<rect x=\"%d\" y=\"%.1f\" width=\"12\" height=\"12\" rx=\"2\" fill=\"%s\"%s/>", SVG_MARGIN, y + 3, svg_family_of(sm->family)->fill,
                    sm->kind == NAM_SEAM_UNMAPPED ? " stroke=\"#5A0000\" stroke-width=\"2\"" : " stroke=\"#111111\" stroke-dasharray=\"3 2\"");
        }
        if (sm->family) l += (size_t)snprintf(line + l, sizeof line - l, "%s: family %c, %s", sm->name, sm->family, kind);
        else l += (size_t)snprintf(line + l, sizeof line - l, "%s: %s, %s", sm->name, sm->placement, kind);
        if (sm->num_layers && l < sizeof line) {
            svg_layer_list(list, sizeof list, sm->layers, sm->num_layers);
            l += (size_t)snprintf(line + l, sizeof line - l, "; %d layer(s): %s", sm->num_layers, list);
        }
        if (sm->mtp_positions && l < sizeof line) l += (size_t)snprintf(line + l, sizeof line - l, "; + %d MTP position(s)", sm->mtp_positions);
        if (sm->detail[0] && l < sizeof line) snprintf(line + l, sizeof line - l, "; %s", sm->detail);
        svg_text(f, SVG_MARGIN + 18, y + 13, 11.5, "fill=\"#1A1A1A\"", line, content_w - 18);
        fputs("</g>\n", f);
        y += 18;
    }
    fputs("</g>\n", f);
    y += 8;
    snprintf(line, sizeof line, "drawn by nam %s (nam plan --svg) from recipe %s; hover a cell for its layer, Megatron symbol, stage and seam", NAM_VERSION_STRING, r->name);
    svg_text(f, SVG_MARGIN, y + 12, 10, "fill=\"#6B7280\"", line, content_w);
    y += 20 + SVG_MARGIN;
    fclose(f);

    /* ---- the document: size known now */
    fprintf(out, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    fprintf(out, "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" font-family=\"%s\""
                 " data-generator=\"nam %s\" data-recipe=\"", W, (int)y, W, (int)y, SVG_FONT, NAM_VERSION_STRING);
    svg_esc(out, r->name, -1);
    fprintf(out, "\" data-depth=\"%d\" data-num-stages=\"%d\" data-pp=\"%d\" data-vpp=\"%d\" data-tp=\"%d\" data-mtp-depths=\"%d\" data-num-seams=\"%d\">\n",
            depth, ns, pp, p->vpp, r->tp, p->pattern.mtp ? p->pattern.mtp_depths : 0, p->num_seams);
    fputs("<title>", out);
    svg_esc(out, r->name, -1);
    fprintf(out, ": %d layers in %d pipeline stage(s)</title>\n<desc>nam plan of ", depth, ns);
    svg_esc(out, r->name, -1);
    fputs(", authored ", out);
    svg_esc(out, r->pattern, -1);
    fprintf(out, ". One cell per layer, coloured by family, grouped by pipeline stage.</desc>\n");
    fputs("<defs><pattern id=\"nam-hatch\" width=\"6\" height=\"6\" patternUnits=\"userSpaceOnUse\" patternTransform=\"rotate(45)\">"
          "<rect width=\"3\" height=\"6\" fill=\"#FFFFFF\" fill-opacity=\"0.3\"/></pattern></defs>\n", out);
    fprintf(out, "<rect id=\"background\" width=\"%d\" height=\"%d\" fill=\"#FFFFFF\"/>\n", W, (int)y);
    fwrite(body, 1, body_n, out);
    fputs("</svg>\n", out);
    free(body);
    free(sf); free(sn); free(sr); free(sv);
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
    if (!strcmp(c->cmd, "plan") && (c->svg || !c->json)) {
        /* the picture or the table goes through a memory stream so -o stays atomic */
        char *buf = NULL;
        size_t n = 0;
        FILE *mf = open_memstream(&buf, &n);
        if (!mf) { perror("nam"); nam_plan_free(&p); return EXIT_USAGE; }
        if (c->svg) print_plan_svg(&p, mf);
        else print_plan_text(&p, mf);
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
    if (!c->world || !c->tp || !c->pp) return usage_error("ranks needs --world N --tp T --pp P%s", "");
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
    ld.pp = c->pp ? c->pp : 1;
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
    if (c.svg && strcmp(c.cmd, "plan")) return usage_error("--svg applies to `nam plan` only, not '%s'", c.cmd);
    if (c.svg && c.json) return usage_error("--svg and --json exclude each other%s", "");
    if (!strcmp(c.cmd, "plan") || !strcmp(c.cmd, "args") || !strcmp(c.cmd, "launch") || !strcmp(c.cmd, "recipe")) return cmd_plan(&c);
    if (!strcmp(c.cmd, "ranks")) return cmd_ranks(&c);
    if (!strcmp(c.cmd, "megatron")) return cmd_megatron(&c);
    return usage_error("unknown command '%s'", c.cmd);
}
