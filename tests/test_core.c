/* tests/test_core.c - unit tests of nam.h: the authored pattern, the Megatron model's
   stricter rules, recipes, the fail-closed translator, launch policy and the rank map.
   Protocol: one line per check, "ok <desc>" or "FAIL <desc>: <why>". Expected values
   come from the issue text, megatron.md, or are built here by independent code. */
#define NAM_IMPLEMENTATION
#include "../nam.h"
#include "json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int g_fail, g_pass;

#define CHECK(desc, cond, ...)                                         \
    do {                                                               \
        if (cond) { g_pass++; printf("ok %s\n", desc); }               \
        else { g_fail++; printf("FAIL %s: ", desc); printf(__VA_ARGS__); printf("\n"); } \
    } while (0)

/* ---- helpers --------------------------------------------------------------------- */
static nam_status parse_pat(const char *text, size_t len, int tile, int depth, int stages, const char *fams,
                            nam_pattern *p, nam_error *e) {
    nam_pattern_desc d;
    memset(&d, 0, sizeof d);
    d.text = text;
    d.len = len;
    d.tile = tile;
    d.depth = depth;
    d.stages = stages;
    d.families = fams;
    return nam_pattern_parse(&d, p, e);
}

/* Expect a pattern error with a code and (when col > 0) a column. */
static void expect_pat_err(const char *desc, const char *text, size_t len, int tile, int depth, int stages,
                           nam_status code, int col, const char *needle) {
    nam_pattern p;
    nam_error e;
    nam_status st = parse_pat(text, len, tile, depth, stages, NULL, &p, &e);
    int ok = st == code && e.code == code && (col <= 0 || e.column == col) && (!needle || strstr(e.message, needle));
    CHECK(desc, ok, "status %s (want %s), column %d (want %d), message '%s' (want '%s')",
          nam_status_str(st), nam_status_str(code), e.column, col, e.message, needle ? needle : "");
    nam_pattern_free(&p);
}

static nam_status plan_with(nam_plan *p, nam_error *e, const char *const *sets) {
    nam_recipe r;
    nam_status st;
    int i;
    if (nam_recipe_init(&r, e) != NAM_OK) return e->code;
    for (i = 0; sets && sets[i]; i += 2) {
        st = nam_recipe_set(&r, sets[i], sets[i + 1], e);
        if (st) { nam_recipe_free(&r); memset(p, 0, sizeof *p); return st; }
    }
    st = nam_plan_make(&r, p, e);
    nam_recipe_free(&r);
    return st;
}

static void expect_plan_err(const char *desc, const char *const *sets, nam_status code, const char *needle) {
    nam_plan p;
    nam_error e;
    nam_status st = plan_with(&p, &e, sets);
    CHECK(desc, st == code && (!needle || strstr(e.message, needle)), "status %s (want %s), message '%s' (want '%s')",
          nam_status_str(st), nam_status_str(code), e.message, needle ? needle : "");
    if (st == NAM_OK) nam_plan_free(&p);
}

/* The NAM56R motif lowered by hand: A->*, E->E, M->M, R->bound symbol; '|' every `per`. */
static void build_expected(char *out, const char *motif, int depth, int per, char r_sym) {
    int i, n = (int)strlen(motif), k = 0;
    for (i = 0; i < depth; i++) {
        char c = motif[i % n];
        if (i && per && i % per == 0) out[k++] = '|';
        out[k++] = c == 'A' ? '*' : c == 'R' ? r_sym : c;
    }
    out[k] = 0;
}

/* ---- authored patterns ------------------------------------------------------------ */
static void test_pattern(void) {
    nam_pattern p;
    nam_error e;
    int i, nr = 0, rix[8];
    /* NAM56R: motif tiled to 52 = 13 A, 22 E, 13 M, 4 R at 11, 23, 35, 47 (issue text) */
    nam_status st = parse_pat("AEMEAEMEAEMR", 0, 1, 52, 0, NULL, &p, &e);
    CHECK("NAM56R motif tiles to depth 52", st == NAM_OK && p.depth == 52, "%s %s", nam_status_str(st), e.message);
    if (st == NAM_OK) {
        for (i = 0; i < p.depth; i++) if (p.layers[i].family == 'R' && nr < 8) rix[nr++] = i;
        CHECK("NAM56R counts 13 A, 22 E, 13 M, 4 R", p.counts['A' - 'A'] == 13 && p.counts['E' - 'A'] == 22 && p.counts['M' - 'A'] == 13 && p.counts['R' - 'A'] == 4,
              "A %d E %d M %d R %d", p.counts[0], p.counts['E' - 'A'], p.counts['M' - 'A'], p.counts['R' - 'A']);
        CHECK("NAM56R R layers at 11, 23, 35, 47", nr == 4 && rix[0] == 11 && rix[1] == 23 && rix[2] == 35 && rix[3] == 47, "got %d R layers", nr);
        CHECK("tiled layer 47 points at motif column 12", p.layers[47].column == 12, "column %d", p.layers[47].column);
        CHECK("no stage breaks -> 1 stage", p.num_stages == 1 && p.stage_begin[1] == 52, "%d stages", p.num_stages);
    }
    nam_pattern_free(&p);
    /* truncating the last repeat */
    st = parse_pat("AEM", 0, 1, 5, 0, NULL, &p, &e);
    CHECK("motif AEM to depth 5 truncates the last repeat", st == NAM_OK && p.depth == 5 && p.layers[3].family == 'A' && p.layers[4].family == 'E', "%s", e.message);
    nam_pattern_free(&p);
    /* equal stages */
    st = parse_pat("AEMEAEMEAEMR", 0, 1, 52, 4, NULL, &p, &e);
    CHECK("stages = 4 splits 52 into 13-layer stages", st == NAM_OK && p.num_stages == 4 && p.stage_begin[1] == 13 && p.stage_begin[2] == 26 && p.stage_begin[3] == 39 && p.layers[13].stage == 1,
          "%s", e.message);
    nam_pattern_free(&p);
    expect_pat_err("stages = 5 on depth 52 is an error, not an uneven split", "AEMEAEMEAEMR", 0, 1, 52, 5, NAM_ERR_STAGE, 0, "52");
    /* stage breaks kept exactly */
    st = parse_pat("AE|MEA|EM", 0, 0, 7, 0, NULL, &p, &e);
    CHECK("written stage breaks kept exactly", st == NAM_OK && p.num_stages == 3 && p.stage_begin[1] == 2 && p.stage_begin[2] == 5 && p.layers[4].stage == 1 && p.layers[5].stage == 2,
          "%s", e.message);
    nam_pattern_free(&p);
    expect_pat_err("stages = N must match the written breaks", "AE|ME", 0, 0, 0, 3, NAM_ERR_STAGE, 0, "2 stages");
    expect_pat_err("'|' at the start", "|AEME", 0, 0, 0, 0, NAM_ERR_STAGE, 1, "start");
    expect_pat_err("'|' at the end", "AEME|", 0, 0, 0, 0, NAM_ERR_STAGE, 5, "end");
    expect_pat_err("doubled '|'", "AE||ME", 0, 0, 0, 0, NAM_ERR_STAGE, 4, "doubled");
    expect_pat_err("'|' inside a tiled motif", "AE|ME", 0, 1, 8, 0, NAM_ERR_STAGE, 3, "motif");
    /* symbols */
    expect_pat_err("unknown letter names itself and its column", "AEMXE", 0, 0, 0, 0, NAM_ERR_SYMBOL, 4, "'X'");
    expect_pat_err("lower-case letter", "AEmE", 0, 0, 0, 0, NAM_ERR_SYMBOL, 3, "upper-case");
    expect_pat_err("Megatron symbol '*' is not an authored family", "A*E", 0, 0, 0, 0, NAM_ERR_SYMBOL, 2, "'*'");
    expect_pat_err("whitespace", "AE ME", 0, 0, 0, 0, NAM_ERR_SYMBOL, 3, "space");
    expect_pat_err("non-ASCII byte", "AE\xc3\xa9ME", 0, 0, 0, 0, NAM_ERR_SYMBOL, 3, "\\xC3");
    expect_pat_err("embedded NUL", "AE\0ME", 5, 0, 0, 0, NAM_ERR_SYMBOL, 3, "NUL");
    expect_pat_err("empty pattern", "", 0, 0, 0, 0, NAM_ERR_EMPTY, 0, "empty");
    expect_pat_err("empty main before '/'", "/AE", 0, 0, 0, 0, NAM_ERR_EMPTY, 1, "before '/'");
    /* declared families */
    st = parse_pat("AXEX", 0, 0, 0, 0, "X", &p, &e);
    CHECK("declared family X is accepted", st == NAM_OK && p.counts['X' - 'A'] == 2, "%s", e.message);
    nam_pattern_free(&p);
    /* depth contract */
    expect_pat_err("depth 0 with a motif", "AEME", 0, 1, 0, 0, NAM_ERR_DEPTH, 0, "depth 0");
    expect_pat_err("negative depth", "AEME", 0, 1, -3, 0, NAM_ERR_RANGE, 0, "-3");
    expect_pat_err("absurdly large depth is bounded", "AEME", 0, 1, 1000000000, 0, NAM_ERR_LIMIT, 0, "1000000000");
    expect_pat_err("depth mismatch names both lengths", "AEMEA", 0, 0, 7, 0, NAM_ERR_DEPTH, 0, "5 layers but the declared depth is 7");
    {
        size_t n = (size_t)NAM_MAX_TEXT + 1;
        char *big = (char *)malloc(n + 1);
        memset(big, 'A', n);
        big[n] = 0;
        expect_pat_err("text over NAM_MAX_TEXT", big, n, 0, 0, 0, NAM_ERR_LIMIT, 0, "limit");
        big[NAM_MAX_DEPTH] = 0;
        st = parse_pat(big, 0, 0, 0, 0, NULL, &p, &e);
        CHECK("a fully written pattern of NAM_MAX_DEPTH layers", st == NAM_OK && p.depth == NAM_MAX_DEPTH, "%s", e.message);
        nam_pattern_free(&p);
        big[NAM_MAX_DEPTH] = 'A';
        big[NAM_MAX_DEPTH + 1] = 0;
        expect_pat_err("one layer over NAM_MAX_DEPTH", big, 0, 0, 0, 0, NAM_ERR_LIMIT, 0, "limit");
        free(big);
    }
    /* MTP suffix */
    st = parse_pat("AEMEAEMEAEMR/AE/AE", 0, 1, 52, 0, NULL, &p, &e);
    CHECK("MTP suffix kept separate: 2 copies of AE", st == NAM_OK && p.depth == 52 && p.mtp_depths == 2 && p.mtp && !strcmp(p.mtp, "AE") && p.counts['A' - 'A'] == 13,
          "%s", e.message);
    nam_pattern_free(&p);
    expect_pat_err("MTP copies that differ", "AEME/AE/AM", 0, 0, 0, 0, NAM_ERR_MTP, 9, "differs");
    expect_pat_err("empty MTP copy", "AEME/AE/", 0, 0, 0, 0, NAM_ERR_MTP, 9, "empty MTP");
    expect_pat_err("'|' inside MTP", "AEME/A|E", 0, 0, 0, 0, NAM_ERR_MTP, 7, "MTP");
    expect_pat_err("unknown letter inside MTP", "AEME/AQ", 0, 0, 0, 0, NAM_ERR_SYMBOL, 7, "'Q'");
}

/* ---- Megatron model: nam's stricter rules (Megatron's own vectors are in test_vectors) */
static void test_megatron(void) {
    nam_mpattern mp;
    nam_layout lay;
    nam_layout_desc ld;
    nam_error e;
    nam_status st;
    st = nam_megatron_parse("M*M*/M+", 0, &mp, &e);
    CHECK("'*' in main with '+' in MTP is refused (stricter than Megatron)", st == NAM_ERR_CONFLICT && strstr(e.message, "Attention and MLA/DSA"), "%s %s", nam_status_str(st), e.message);
    nam_megatron_free(&mp);
    st = nam_megatron_parse("M+M+/M*", 0, &mp, &e);
    CHECK("'+' in main with '*' in MTP is refused", st == NAM_ERR_CONFLICT, "%s", nam_status_str(st));
    nam_megatron_free(&mp);
    st = nam_megatron_parse("M*X", 0, &mp, &e);
    CHECK("symbol error names the byte and column", st == NAM_ERR_SYMBOL && e.column == 3 && strstr(e.message, "'X'"), "col %d %s", e.column, e.message);
    nam_megatron_free(&mp);
    st = nam_megatron_parse("M*\0M", 4, &mp, &e);
    CHECK("embedded NUL in a Megatron pattern", st == NAM_ERR_SYMBOL && e.column == 3, "%s col %d", nam_status_str(st), e.column);
    nam_megatron_free(&mp);
    /* layout: pipes with PP = 1 are refused (Megatron's validate_args, VPP needs PP > 1) */
    memset(&ld, 0, sizeof ld);
    nam_megatron_parse("M*|M*", 0, &mp, &e);
    ld.pp = 1;
    st = nam_megatron_layout(&mp, &ld, &lay, &e);
    CHECK("piped pattern with PP = 1 is refused", st == NAM_ERR_STAGE && strstr(e.message, "pipeline-model-parallel-size > 1"), "%s %s", nam_status_str(st), e.message);
    nam_layout_free(&lay);
    ld.pp = 2;
    st = nam_megatron_layout(&mp, &ld, &lay, &e);
    CHECK("2 segments on PP 2: no VPP, stages at offsets 0 and 2", st == NAM_OK && lay.vpp == 0 && lay.num_stages == 2 && lay.stages[1].seg.offset == 2, "%s", e.message);
    nam_layout_free(&lay);
    nam_megatron_free(&mp);
    nam_megatron_parse("M-M-M-M*-M-|M-M-M*-M-M-|M-M*-M-M-M-|M*-M-M-M-M-", 0, &mp, &e);
    ld.pp = 2;
    st = nam_megatron_layout(&mp, &ld, &lay, &e);
    CHECK("fVPP test pattern: 4 segments, PP 2 -> VPP 2 (megatron.md section 6)", st == NAM_OK && lay.vpp == 2 && lay.num_stages == 4 && lay.stages[2].vp_stage == 1 && lay.stages[2].pp_rank == 0 && lay.stages[2].seg.offset == 22,
          "%s vpp %d", e.message, lay.vpp);
    nam_layout_free(&lay);
    ld.pp = 4;
    st = nam_megatron_layout(&mp, &ld, &lay, &e);
    CHECK("fVPP test pattern with PP 4 -> VPP None", st == NAM_OK && lay.vpp == 0, "%s", e.message);
    nam_layout_free(&lay);
    ld.pp = 2;
    ld.no_overlap_p2p = 1;
    st = nam_megatron_layout(&mp, &ld, &lay, &e);
    CHECK("VPP without p2p overlap needs PP > 2", st == NAM_ERR_STAGE, "%s", nam_status_str(st));
    nam_layout_free(&lay);
    nam_megatron_free(&mp);
    memset(&ld, 0, sizeof ld);
    nam_megatron_parse("M*M*", 0, &mp, &e);
    ld.pp = 2;
    ld.first_stage_layers = 1;
    ld.last_stage_layers = 3;
    st = nam_megatron_layout(&mp, &ld, &lay, &e);
    CHECK("first/last layers with no middle stage and no middle layers is fine", st == NAM_OK && lay.stages[1].seg.offset == 1 && lay.stages[1].seg.num_layers == 3, "%s", e.message);
    nam_layout_free(&lay);
    ld.first_stage_layers = 1;
    ld.last_stage_layers = 1;
    st = nam_megatron_layout(&mp, &ld, &lay, &e);
    CHECK("first/last with no middle stages but 2 middle layers is refused", st == NAM_ERR_STAGE && strstr(e.message, "no middle pipeline stages"), "%s %s", nam_status_str(st), e.message);
    nam_layout_free(&lay);
    nam_megatron_free(&mp);
    nam_megatron_parse("", 0, &mp, &e);
    memset(&ld, 0, sizeof ld);
    st = nam_megatron_layout(&mp, &ld, &lay, &e);
    CHECK("empty main pattern refused by the layout check", st == NAM_ERR_EMPTY, "%s", nam_status_str(st));
    nam_megatron_free(&mp);
}

static void test_ratios(void) {
    char b[128];
    nam_error e;
    int local[8];
    nam_status st;
    /* verbatim strings from examples/mamba/train.sh (megatron.md section 6) */
    st = nam_megatron_pattern_from_ratios(56, 0.08, 0.5, b, sizeof b, &e);
    CHECK("pattern_from_ratios(56, 0.08, 0.5) is the NVIDIA Mamba-hybrid 8B string", st == NAM_OK && !strcmp(b, "M-M-M--M-M*-M-M-M-M--M*-M-M-M-M-M*--M-M-M-M-M*-M--M-M-M-"), "%s", b);
    st = nam_megatron_pattern_from_ratios(48, 0.08, 0.5, b, sizeof b, &e);
    CHECK("pattern_from_ratios(48, 0.08, 0.5) is the 800M string", st == NAM_OK && !strcmp(b, "M-M-M--M-*M-M-M-M--*M-M-M-M-*M--M-M-M-*M-M--M-M-"), "%s", b);
    st = nam_megatron_pattern_from_ratios(10, 0.7, 0.5, b, sizeof b, &e);
    CHECK("pattern_from_ratios: ratios summing above 1 are refused", st == NAM_ERR_RANGE, "%s", nam_status_str(st));
    st = nam_megatron_pattern_from_ratios(0, 0, 0, b, sizeof b, &e);
    CHECK("pattern_from_ratios: 0 layers refused", st == NAM_ERR_RANGE, "%s", nam_status_str(st));
    st = nam_megatron_pattern_from_ratios(100, 0, 0, b, 50, &e);
    CHECK("pattern_from_ratios: small buffer refused", st == NAM_ERR_INVALID_ARG, "%s", nam_status_str(st));
    st = nam_megatron_layer_maps("D+M-DM", 6, local, &e);
    CHECK("layer maps: index within each layer type", st == NAM_OK && local[0] == 0 && local[4] == 1 && local[5] == 1 && local[3] == 0, "%s", e.message);
    st = nam_megatron_layer_maps("M|M", 3, local, &e);
    CHECK("layer maps: '|' is not a layer", st == NAM_ERR_SYMBOL && e.layer == 1, "%s", e.message);
}

/* ---- recipes --------------------------------------------------------------------- */
static void expect_recipe_err(const char *desc, const char *text, size_t len, nam_status code, int line, int col, const char *needle) {
    nam_recipe r;
    nam_error e;
    nam_status st;
    nam_recipe_init(&r, &e);
    st = nam_recipe_parse(&r, text, len ? len : strlen(text), "t.recipe", &e);
    CHECK(desc, st == code && e.line == line && e.column == col && strstr(e.message, "t.recipe:") && (!needle || strstr(e.message, needle)) && r.tp == 2,
          "status %s (want %s) at %d:%d (want %d:%d): %s", nam_status_str(st), nam_status_str(code), e.line, e.column, line, col, e.message);
    nam_recipe_free(&r);
}

static void test_recipe(void) {
    nam_recipe r, r2;
    nam_error e;
    nam_status st;
    char *text = NULL;
    int i, n;
    nam_recipe_init(&r, &e);
    CHECK("built-in recipe is NAM56R: motif AEMEAEMEAEMR, depth 52, MTP block AF", !strcmp(r.name, "NAM56R") && !strcmp(r.pattern, "AEMEAEMEAEMR/AF") && r.tile && r.depth == 52, "%s %s", r.name, r.pattern);
    st = nam_recipe_parse(&r, "# c\n[parallel]\ntp = 4   # four\n; other comment\n[pattern]\nmap = \"R=G\"\nmodel.hidden_size=2048\n", 0, "x", &e);
    CHECK("recipe: sections, comments, quotes, section.key", st == NAM_OK && r.tp == 4 && !strcmp(r.map, "R=G") && r.hidden_size == 2048, "%s", e.message);
    st = nam_recipe_parse(&r, "[pattern]\n\n text = AEME/AE\n", 0, "p.recipe", &e);
    CHECK("recipe records where the pattern was written", st == NAM_OK && r.pattern_line == 3 && r.pattern_column == 9 && !strcmp(r.pattern_source, "p.recipe"), "%d:%d", r.pattern_line, r.pattern_column);
    nam_recipe_free(&r);
    expect_recipe_err("recipe: unknown key", "[model]\nhiden_size = 3\n", 0, NAM_ERR_UNKNOWN_KEY, 2, 1, "hiden_size");
    expect_recipe_err("recipe: unknown section", "[modle]\n", 0, NAM_ERR_UNKNOWN_KEY, 1, 2, "modle");
    expect_recipe_err("recipe: missing '='", "[parallel]\n  tp 4\n", 0, NAM_ERR_SYNTAX, 2, 6, "key = value");
    expect_recipe_err("recipe: not an integer", "[parallel]\ntp = 4x\n", 0, NAM_ERR_SYNTAX, 2, 6, "4x");
    expect_recipe_err("recipe: integer overflow", "[parallel]\nworld_size = 99999999999999999999999\n", 0, NAM_ERR_SYNTAX, 2, 14, "integer");
    expect_recipe_err("recipe: world size over the bound", "[parallel]\nworld_size = 2147483648\n", 0, NAM_ERR_RANGE, 2, 14, "out of range");
    expect_recipe_err("recipe: negative size", "[parallel]\ntp = -2\n", 0, NAM_ERR_RANGE, 2, 6, "-2");
    expect_recipe_err("recipe: bad enum", "[recipe]\nmode = lenient\n", 0, NAM_ERR_RANGE, 2, 8, "lenient");
    expect_recipe_err("recipe: duplicate key", "[parallel]\ntp = 4\ntp = 8\n", 0, NAM_ERR_CONFLICT, 3, 1, "line 2");
    expect_recipe_err("recipe: unterminated quote", "[recipe]\nname = \"abc\n", 0, NAM_ERR_SYNTAX, 2, 8, "unterminated");
    expect_recipe_err("recipe: NUL byte", "[recipe]\nname = a\0b\n", 18, NAM_ERR_SYNTAX, 2, 9, "NUL");
    expect_recipe_err("recipe: non-ASCII byte", "[recipe]\nname = caf\xc3\xa9\n", 0, NAM_ERR_SYNTAX, 2, 11, "non-ASCII");
    expect_recipe_err("recipe: bad binding", "[pattern]\nmap = R->G\n", 0, NAM_ERR_SYNTAX, 2, 7, "FAMILY=SYMBOL");
    expect_recipe_err("recipe: binding to a non-Megatron symbol", "[pattern]\nmap = R=Q\n", 0, NAM_ERR_SYMBOL, 2, 7, "'Q'");
    expect_recipe_err("recipe: binding a family that has a native mapping", "[pattern]\nmap = E=-\n", 0, NAM_ERR_CONFLICT, 2, 7, "native mapping");
    expect_recipe_err("recipe: bad CUDA-graph module", "[cuda_graph]\nmodules = attn,full\n", 0, NAM_ERR_RANGE, 2, 11, "full");
    expect_recipe_err("recipe: key outside its section", "[model]\ntp = 2\n", 0, NAM_ERR_UNKNOWN_KEY, 2, 1, "tp");
    /* --set style */
    nam_recipe_init(&r, &e);
    st = nam_recipe_set(&r, "pattern.dsa_layers", " 0, 4 ,12", &e);
    CHECK("list entries may have blanks around the commas", st == NAM_OK && r.num_dsa_layers == 3 && r.dsa_layers[1] == 4 && r.dsa_layers[2] == 12, "%s", e.message);
    st = nam_recipe_set(&r, "pattern.dsa_layers", "0,,4", &e);
    CHECK("empty list entry is an error", st == NAM_ERR_SYNTAX && strstr(e.message, "entry 2"), "%s", e.message);
    nam_recipe_set(&r, "pattern.dsa_layers", "", &e);
    st = nam_recipe_set(&r, "tp", "8", &e);
    CHECK("set by bare unique key", st == NAM_OK && r.tp == 8, "%s", e.message);
    st = nam_recipe_set(&r, "ffn_hidden_size", "8", &e);
    CHECK("ambiguous bare key is an error", st == NAM_ERR_UNKNOWN_KEY && strstr(e.message, "ambiguous"), "%s", e.message);
    st = nam_recipe_set(&r, "parallel.bogus", "1", &e);
    CHECK("unknown key via set", st == NAM_ERR_UNKNOWN_KEY && strstr(e.message, "parallel.bogus"), "%s", e.message);
    /* write then parse gives the same recipe */
    nam_recipe_set(&r, "pattern.dsa_layers", "0,4", &e);
    nam_recipe_set(&r, "model.mla", "true", &e);
    nam_recipe_set(&r, "name", "with \"quotes\" # and hash", &e);
    st = nam_recipe_write(&r, &text, &e);
    nam_recipe_init(&r2, &e);
    if (st == NAM_OK) st = nam_recipe_parse(&r2, text, strlen(text), "written", &e);
    CHECK("recipe write -> parse round trip", st == NAM_OK && r2.tp == 8 && r2.mla == 1 && r2.num_dsa_layers == 2 && r2.dsa_layers[1] == 4 && !strcmp(r2.name, r.name),
          "%s", e.message);
    nam_free(text);
    nam_recipe_free(&r2);
    nam_recipe_free(&r);
    for (n = 0; nam_recipe_key(n); n++) {}
    for (i = 0; i < n; i++) {
        int amb;
        if (nam__field_find(nam_recipe_key(i), &amb) != i) break;
    }
    CHECK("every recipe key resolves to itself", n > 50 && i == n, "%d of %d", i, n);
}

/* ---- translator and policy ----------------------------------------------------------- */
static void test_translate(void) {
    nam_plan p;
    nam_error e;
    nam_status st;
    char expect[256];
    int i, ok;
    /* plan mode: R is a seam, no native pattern */
    st = plan_with(&p, &e, NULL);
    CHECK("default plan succeeds in plan mode", st == NAM_OK, "%s", e.message);
    if (st == NAM_OK) {
        int r_seams = 0;
        CHECK("R seam withholds the native pattern", p.native_pattern == NULL && p.unresolved == 4, "unresolved %d", p.unresolved);
        for (i = 0; i < p.num_seams; i++)
            if (p.seams[i].family == 'R' && p.seams[i].kind == NAM_SEAM_UNMAPPED && p.seams[i].num_layers == 4 && p.seams[i].layers[0] == 11) r_seams++;
        CHECK("recurrent-tail seam names layers 11..47", r_seams == 1, "%d", r_seams);
        ok = 1;
        for (i = 0; i < 52; i++) {
            char fam = p.layers[i].family, nat = p.layers[i].native;
            if (fam == 'R' && (nat != 0 || p.layers[i].seam < 0)) ok = 0;
            if (fam == 'A' && nat != '*') ok = 0;
            if (fam == 'E' && nat != 'E') ok = 0;
            if (fam == 'M' && nat != 'M') ok = 0;
        }
        CHECK("A->*, E->E, M->M, R->none", ok, "mismatch");
        for (i = 0; i < p.num_args; i++) if (!strcmp(p.args[i].flag, "--hybrid-layer-pattern")) break;
        CHECK("no --hybrid-layer-pattern while seams remain", i == p.num_args, "found one");
        CHECK("dp 2, expert dp 1, vpp 2, 32 microbatches for the defaults", p.dp == 2 && p.edp == 1 && p.vpp == 2 && p.num_microbatches == 32,
              "dp %d edp %d vpp %d nmb %d", p.dp, p.edp, p.vpp, p.num_microbatches);
        {
            char *js = NULL;
            char eb[128];
            int kinds[3] = { NAM_JSON_PLAN, NAM_JSON_ARGS, NAM_JSON_LAUNCH }, k;
            for (k = 0; k < 3; k++) {
                json_doc *doc;
                const json_value *v;
                st = nam_plan_json(&p, kinds[k], &js, &e);
                doc = st == NAM_OK ? json_parse(js, strlen(js), eb, sizeof eb) : NULL;
                if (k == 0) {
                    v = doc ? json_get(doc->root, "counts") : NULL;
                    CHECK("plan JSON parses and counts A13 E22 M13 R4",
                          v && json_get(v, "A")->number == 13 && json_get(v, "E")->number == 22 && json_get(v, "M")->number == 13 && json_get(v, "R")->number == 4 &&
                          json_get(doc->root, "native_pattern")->type == JSON_NULL && json_len(json_get(doc->root, "layers")) == 52,
                          "%s", doc ? "bad values" : eb);
                } else if (k == 2) {
                    CHECK("launch JSON keeps generated_native_args and fixed_policy apart",
                          doc && json_get(doc->root, "generated_native_args") && json_get(doc->root, "fixed_policy") && json_get(doc->root, "launcher_profile") &&
                          json_get(json_get(doc->root, "fixed_policy"), "mtp_depths") && !json_get(json_get(doc->root, "fixed_policy"), "args"),
                          "%s", doc ? "missing fields" : eb);
                } else {
                    CHECK("args JSON parses with custom_notes", doc && json_len(json_get(doc->root, "custom_notes")) == 2, "%s", doc ? "bad notes" : eb);
                }
                if (doc) json_free(doc);
                nam_free(js);
                js = NULL;
            }
        }
        nam_plan_free(&p);
    }
    /* strict mode: error names token, layer, stage, column */
    {
        const char *s[] = { "recipe.mode", "strict", NULL };
        st = plan_with(&p, &e, s);
        CHECK("strict mode stops at the first R with its position", st == NAM_ERR_UNSUPPORTED && e.layer == 11 && e.stage == 0 && e.column == 12 && strstr(e.message, "R at layer 11"),
              "%s layer %d stage %d col %d: %s", nam_status_str(st), e.layer, e.stage, e.column, e.message);
    }
    {
        const char *s[] = { "recipe.mode", "strict", "pattern.stages", "0", "pattern.tile", "false", "pattern.depth", "0", "pattern.text", "AEME|AEMR", "parallel.pp", "2", NULL };
        st = plan_with(&p, &e, s);
        CHECK("strict error in stage 1 of a written pattern", st == NAM_ERR_UNSUPPORTED && e.layer == 7 && e.stage == 1 && e.column == 9, "layer %d stage %d col %d", e.layer, e.stage, e.column);
    }
    {   /* a pattern from a recipe file reports file:line:column of the letter */
        nam_recipe r;
        nam_recipe_init(&r, &e);
        nam_recipe_parse(&r, "[recipe]\nmode = strict\n[pattern]\ntext = AEMEAEMEAEMR\n", 0, "f.recipe", &e);
        st = nam_plan_make(&r, &p, &e);
        CHECK("strict error carries the recipe file position", st == NAM_ERR_UNSUPPORTED && e.line == 4 && e.column == 19 && !strcmp(e.source, "f.recipe"),
              "%s:%d:%d", e.source, e.line, e.column);
        nam_recipe_free(&r);
    }
    /* explicit binding R=G: native pattern with stage breaks kept, decision recorded */
    {
        const char *s[] = { "pattern.map", "R=G", "pattern.mamba_impl", "mamba2", NULL };
        st = plan_with(&p, &e, s);
        build_expected(expect, "AEMEAEMEAEMR", 52, 13, 'G');
        strcat(expect, "/*-");   /* the built-in MTP block AF */
        CHECK("R=G binding lowers to G with the 4 stage breaks kept", st == NAM_OK && p.native_pattern && !strcmp(p.native_pattern, expect), "%s / %s", p.native_pattern ? p.native_pattern : e.message, expect);
        if (st == NAM_OK) {
            CHECK("binding recorded as a decision; no seams", p.num_decisions == 1 && p.decisions[0].family == 'R' && p.decisions[0].symbol == 'G' && p.num_seams == 0,
                  "%d decisions %d seams", p.num_decisions, p.num_seams);
            for (i = 0; i < p.num_args; i++) if (!strcmp(p.args[i].flag, "--linear-num-key-heads")) break;
            CHECK("G layers bring the GDN args", i < p.num_args, "missing");
            nam_plan_free(&p);
        }
    }
    {
        const char *s[] = { "pattern.map", "R=G", "pattern.mamba_impl", "mamba2", "pattern.text", "AEMEAEMEAEMR/AE/AE", NULL };
        st = plan_with(&p, &e, s);
        CHECK("MTP suffix stays separate in the native pattern", st == NAM_OK && p.native_pattern && strstr(p.native_pattern, "EME/*E/*E") && p.mpattern.mtp_depths == 2,
              "%s", p.native_pattern ? p.native_pattern : e.message);
        if (st == NAM_OK) {
            for (i = 0; i < p.num_args; i++) if (!strcmp(p.args[i].flag, "--mtp-num-layers")) break;
            CHECK("--mtp-num-layers 2 emitted", i < p.num_args && !strcmp(p.args[i].value, "2"), "missing");
            nam_plan_free(&p);
        }
    }
    /* MLA / DSA */
    {
        const char *s[] = { "pattern.map", "R=G", "model.mla", "true", "model.num_query_groups", "0", "pattern.dsa_layers", "0,12", NULL };
        st = plan_with(&p, &e, s);
        CHECK("MLA lowers A to '+', DSA layers to 'D'", st == NAM_OK && p.layers[0].native == 'D' && p.layers[4].native == '+' && p.layers[12].native == 'D', "%s", e.message);
        if (st == NAM_OK) nam_plan_free(&p);
    }
    {
        const char *s[] = { "pattern.dsa_layers", "0", NULL };
        expect_plan_err("DSA without MLA is refused with the reason", s, NAM_ERR_CONFLICT, "needs model.mla");
    }
    {
        const char *s[] = { "model.mla", "true", "model.num_query_groups", "0", "pattern.dsa_layers", "1", NULL };
        expect_plan_err("DSA on a non-A layer is refused", s, NAM_ERR_CONFLICT, "only A layers");
    }
    {
        const char *s[] = { "model.mla", "true", "model.num_query_groups", "0", "pattern.families", "X", "pattern.text", "AEMX", "pattern.map", "X=*", "pattern.stages", "1", "parallel.pp", "1", NULL };
        expect_plan_err("binding to '*' while MLA is on is refused (no mixing)", s, NAM_ERR_CONFLICT, "mixes plain attention");
    }
    {
        const char *s[] = { "model.mla", "true", NULL };
        expect_plan_err("MLA excludes GQA", s, NAM_ERR_CONFLICT, "grouped-query attention");
    }
    {
        const char *s[] = { "moe.num_experts", "0", "parallel.ep", "1", NULL };
        expect_plan_err("E without MoE is refused, never lowered to '-'", s, NAM_ERR_UNSUPPORTED, "refuses to lower an expert layer");
    }
    {
        const char *s[] = { "pattern.families", "X", "pattern.text", "AEMX", "pattern.stages", "1", "parallel.pp", "1", NULL };
        st = plan_with(&p, &e, s);
        CHECK("declared family without binding is a named seam", st == NAM_OK && p.num_seams == 2 && !strcmp(p.seams[1].name, "custom-family-X") && !p.native_pattern,
              "%s", e.message);
        if (st == NAM_OK) nam_plan_free(&p);
    }
    {
        const char *s[] = { "pattern.map", "X=G", NULL };
        expect_plan_err("binding a family the pattern cannot hold", s, NAM_ERR_SYMBOL, "neither R nor declared");
    }
    {
        const char *s[] = { "pattern.mamba_impl", "mamba2", "pattern.map", "R=G", NULL };
        st = plan_with(&p, &e, s);
        CHECK("mamba2 is native: no seams at all", st == NAM_OK && p.num_seams == 0, "%s", e.message);
        if (st == NAM_OK) nam_plan_free(&p);
    }
    /* launch policy (megatron.md section 4) */
    { const char *s[] = { "parallel.tp", "3", NULL }; expect_plan_err("world not divisible by tp*pp*cp", s, NAM_ERR_PARALLEL, "tp*pp*cp = 3*2*1"); }
    { const char *s[] = { "parallel.ep", "3", NULL }; expect_plan_err("expert grid does not divide the world", s, NAM_ERR_PARALLEL, "etp*ep*pp"); }
    { const char *s[] = { "moe.num_experts", "66", NULL }; expect_plan_err("experts % ep", s, NAM_ERR_PARALLEL, "66"); }
    { const char *s[] = { "batch.global_batch_size", "63", NULL }; expect_plan_err("GBS % (MBS*DP)", s, NAM_ERR_PARALLEL, "63"); }
    { const char *s[] = { "batch.global_batch_size", "2", NULL }; expect_plan_err("VPP needs microbatches >= PP", s, NAM_ERR_PARALLEL, "at least pp"); }
    { const char *s[] = { "batch.global_batch_size", "6", NULL }; expect_plan_err("VPP needs microbatches % PP == 0", s, NAM_ERR_PARALLEL, "divisible by pp"); }
    { const char *s[] = { "parallel.cp", "2", "parallel.world_size", "16", "model.seq_length", "4098", NULL }; expect_plan_err("seq % 2*cp", s, NAM_ERR_PARALLEL, "2*cp"); }
    { const char *s[] = { "model.num_attention_heads", "33", "model.num_query_groups", "0", NULL }; expect_plan_err("heads % tp", s, NAM_ERR_PARALLEL, "not divisible by tp"); }
    { const char *s[] = { "model.num_query_groups", "3", "model.num_attention_heads", "30", "parallel.tp", "1", "parallel.sequence_parallel", "false", "parallel.world_size", "4", NULL }; expect_plan_err("query groups neither multiple nor divisor of tp", s, NAM_ERR_PARALLEL, NULL); }
    { const char *s[] = { "mamba.num_groups", "3", NULL }; expect_plan_err("mamba groups % tp", s, NAM_ERR_PARALLEL, "mamba.num_groups 3"); }
    { const char *s[] = { "pattern.mamba_impl", "mamba2", "parallel.cp", "4", "parallel.world_size", "32", "mamba.num_heads", "6", "mamba.num_groups", "2", NULL }; expect_plan_err("mamba heads per TP rank % cp", s, NAM_ERR_PARALLEL, "cp 4"); }
    { const char *s[] = { "parallel.sequence_parallel", "true", "parallel.tp", "1", "parallel.world_size", "4", "parallel.ep", "1", NULL }; expect_plan_err("SP with tp 1 is refused, not silently dropped", s, NAM_ERR_CONFLICT, "silent"); }
    { const char *s[] = { "pattern.text", "AEMEAEMEAEMR/AE", "model.position_embedding_type", "learned_absolute", NULL }; expect_plan_err("MTP needs rope or none", s, NAM_ERR_CONFLICT, "rope or none"); }
    { const char *s[] = { "moe.router_topk", "65", NULL }; expect_plan_err("top-k > experts", s, NAM_ERR_RANGE, "65"); }
    { const char *s[] = { "pattern.stages", "3", NULL }; expect_plan_err("52 layers into 3 stages", s, NAM_ERR_STAGE, "3 equal stages"); }
    { const char *s[] = { "pattern.stages", "2", "parallel.pp", "4", "batch.global_batch_size", "0", NULL }; expect_plan_err("2 stages on PP 4", s, NAM_ERR_STAGE, "divisible by --pipeline-model-parallel-size"); }
    { const char *s[] = { "pattern.stages", "4", "parallel.pp", "1", "parallel.world_size", "4", "parallel.ep", "2", NULL }; expect_plan_err("4 stages with PP 1 is refused (VPP needs PP > 1)", s, NAM_ERR_STAGE, "> 1"); }
    { const char *s[] = { "cuda_graph.modules", "moe,moe_router", NULL }; expect_plan_err("CUDA graph moe with moe_router", s, NAM_ERR_CONFLICT, "mutually exclusive"); }
    { const char *s[] = { "cuda_graph.impl", "full_iteration", NULL }; expect_plan_err("full_iteration needs empty modules", s, NAM_ERR_CONFLICT, "full_iteration"); }
    { const char *s[] = { "parallel.world_size", "262144", "parallel.tp", "262144", NULL }; expect_plan_err("huge sizes do not overflow (tp*pp*cp)", s, NAM_ERR_PARALLEL, "262144"); }
    { const char *s[] = { "parallel.world_size", "262145", NULL }; expect_plan_err("world size above the bound", s, NAM_ERR_RANGE, "262145"); }
    { const char *s[] = { "pattern.depth", "-1", NULL }; expect_plan_err("negative depth via set", s, NAM_ERR_RANGE, "-1"); }
    { const char *s[] = { "pattern.stages", "0", "parallel.first_stage_layers", "26", "parallel.last_stage_layers", "26", NULL };
      st = plan_with(&p, &e, s);
      CHECK("uneven PP via first/last layers without pipes", st == NAM_OK && p.layout.stages[1].seg.offset == 26, "%s", e.message);
      if (st == NAM_OK) nam_plan_free(&p); }
}

/* ---- rank map ------------------------------------------------------------------------ */
static void test_ranks(void) {
    nam_rankmap m;
    nam_rankmap_desc d;
    nam_error e;
    nam_status st;
    const nam_rank_groups *g;
    nam_rank_coords c;
    memset(&d, 0, sizeof d);
    d.world_size = 8; d.tp = 2; d.cp = 2; d.ep = 4; d.etp = 1;
    st = nam_rankmap_build(&d, &m, &e);
    CHECK("world 8, TP2 CP2 EP4 ETP1 -> DP2, EDP2 (megatron.md section 5)", st == NAM_OK && m.dp == 2 && m.edp == 2, "%s", e.message);
    if (st == NAM_OK) {
        g = nam_rankmap_find(&m, 0, "tp");
        CHECK("decoder tp groups [[0,1],...]", g && g->num_groups == 4 && g->ranks[0] == 0 && g->ranks[1] == 1 && g->ranks[2] == 2, "bad");
        g = nam_rankmap_find(&m, 1, "ep");
        CHECK("expert ep groups [[0,1,2,3],[4,5,6,7]]", g && g->num_groups == 2 && g->group_size == 4 && g->ranks[3] == 3 && g->ranks[4] == 4, "bad");
        st = nam_rankmap_query_rank(&m, 5, &c, &e);
        CHECK("rank 5 coordinates: tp 1, cp 0, dp 1, ep 1", st == NAM_OK && c.tp == 1 && c.cp == 0 && c.dp == 1 && c.pp == 0 && c.ep == 1 && c.etp == 0 && c.edp == 1,
              "tp %d cp %d dp %d ep %d edp %d", c.tp, c.cp, c.dp, c.ep, c.edp);
        st = nam_rankmap_query_rank(&m, 8, &c, &e);
        CHECK("rank out of range", st == NAM_ERR_RANGE, "%s", nam_status_str(st));
        nam_rankmap_free(&m);
    }
    d.world_size = 12; d.tp = 8; d.cp = 1; d.ep = 1; d.etp = 0;
    st = nam_rankmap_build(&d, &m, &e);
    CHECK("world not divisible by tp", st == NAM_ERR_PARALLEL && strstr(e.message, "12"), "%s", e.message);
    d.world_size = 8; d.tp = 2; d.order = "tp-cp-ep-pp-dp";
    st = nam_rankmap_build(&d, &m, &e);
    CHECK("alternative order tp-cp-ep-pp-dp", st == NAM_OK && m.dp == 4, "%s", e.message);
    if (st == NAM_OK) {
        g = nam_rankmap_find(&m, 0, "dp");
        CHECK("tp-cp-ep-pp-dp: dp groups stride tp*pp", g && g->ranks[0] == 0 && g->ranks[1] == 2, "bad");
        nam_rankmap_free(&m);
    }
    d.order = "tp-xx-dp";
    st = nam_rankmap_build(&d, &m, &e);
    CHECK("unknown axis in the order", st == NAM_ERR_INVALID_ARG && strstr(e.message, "xx"), "%s", e.message);
    d.order = NULL;
    d.world_size = 1 << 30;
    st = nam_rankmap_build(&d, &m, &e);
    CHECK("world size bound", st == NAM_ERR_RANGE, "%s", nam_status_str(st));
    {
        nam_rankgen_desc gd;
        nam_rank_groups gr;
        memset(&gd, 0, sizeof gd);
        gd.tp = 2; gd.dp = 2; gd.ep = 2; gd.cp = 2;
        st = nam_rankgen_ranks(&gd, "tp", &gr, &e);
        CHECK("RankGenerator refuses ep > 1 with cp > 1", st == NAM_ERR_PARALLEL, "%s", nam_status_str(st));
        gd.ep = 1; gd.order = "tp-dp";
        st = nam_rankgen_ranks(&gd, "tp", &gr, &e);
        CHECK("RankGenerator refuses an order that omits an axis of size > 1", st == NAM_ERR_PARALLEL && strstr(e.message, "cp"), "%s", e.message);
    }
}

static void test_misc(void) {
    int i, distinct = 1;
    char *q;
    for (i = 0; i < NAM_STATUS_COUNT; i++) {
        int k;
        for (k = 0; k < i; k++) if (!strcmp(nam_status_str((nam_status)i), nam_status_str((nam_status)k))) distinct = 0;
    }
    CHECK("status texts are distinct", distinct, "duplicate text");
    CHECK("out-of-range status", !strcmp(nam_status_str((nam_status)999), "unknown status"), "%s", nam_status_str((nam_status)999));
    q = nam_shell_quote("M*|M'E");
    CHECK("shell quoting of * | and '", q && !strcmp(q, "'M*|M'\\''E'"), "%s", q ? q : "NULL");
    nam_free(q);
    q = nam_shell_quote("hybrid_stack_spec");
    CHECK("plain words stay unquoted", q && !strcmp(q, "hybrid_stack_spec"), "%s", q ? q : "NULL");
    nam_free(q);
    {
        nam_pattern p;
        nam_error e;
        CHECK("NULL desc is an error, not a crash", nam_pattern_parse(NULL, &p, &e) == NAM_ERR_INVALID_ARG, "bad");
        CHECK("NULL error record is allowed", parse_pat("Q", 0, 0, 0, 0, NULL, &p, NULL) == NAM_ERR_SYMBOL, "bad");
    }
}

int main(void) {
    test_pattern();
    test_megatron();
    test_ratios();
    test_recipe();
    test_translate();
    test_ranks();
    test_misc();
    printf("test_core: %d passed, %d failed\n", g_pass, g_fail);
    return g_fail ? 1 : 0;
}
