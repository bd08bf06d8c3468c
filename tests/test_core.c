/* tests/test_core.c - unit tests of nam.h: the authored pattern, the Megatron model's
   stricter rules, recipes, the fail-closed translator, launch policy and the rank map.
   Protocol: one line per check, "ok <desc>" or "FAIL <desc>: <why>". Expected values
   come from the issue text, megatron.md, or are built here by independent code. */
#define NAM_IMPLEMENTATION
#include "test.h"
#include "json.h"

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
    CHECK(ok, desc, "status %s (want %s), column %d (want %d), message '%s' (want '%s')",
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
    CHECK(st == code && (!needle || strstr(e.message, needle)), desc, "status %s (want %s), message '%s' (want '%s')",
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
    CHECK(st == NAM_OK && p.depth == 52, "NAM56R motif tiles to depth 52", "%s %s", nam_status_str(st), e.message);
    if (st == NAM_OK) {
        for (i = 0; i < p.depth; i++) if (p.layers[i].family == 'R' && nr < 8) rix[nr++] = i;
        CHECK(p.counts['A' - 'A'] == 13 && p.counts['E' - 'A'] == 22 && p.counts['M' - 'A'] == 13 && p.counts['R' - 'A'] == 4, "NAM56R counts 13 A, 22 E, 13 M, 4 R",
              "A %d E %d M %d R %d", p.counts[0], p.counts['E' - 'A'], p.counts['M' - 'A'], p.counts['R' - 'A']);
        CHECK(nr == 4 && rix[0] == 11 && rix[1] == 23 && rix[2] == 35 && rix[3] == 47, "NAM56R R layers at 11, 23, 35, 47", "got %d R layers", nr);
        CHECK(p.layers[47].column == 12, "tiled layer 47 points at motif column 12", "column %d", p.layers[47].column);
        CHECK(p.num_stages == 1 && p.stage_begin[1] == 52, "no stage breaks -> 1 stage", "%d stages", p.num_stages);
    }
    nam_pattern_free(&p);
    /* truncating the last repeat */
    st = parse_pat("AEM", 0, 1, 5, 0, NULL, &p, &e);
    CHECK(st == NAM_OK && p.depth == 5 && p.layers[3].family == 'A' && p.layers[4].family == 'E', "motif AEM to depth 5 truncates the last repeat", "%s", e.message);
    nam_pattern_free(&p);
    /* equal stages */
    st = parse_pat("AEMEAEMEAEMR", 0, 1, 52, 4, NULL, &p, &e);
    CHECK(st == NAM_OK && p.num_stages == 4 && p.stage_begin[1] == 13 && p.stage_begin[2] == 26 && p.stage_begin[3] == 39 && p.layers[13].stage == 1, "stages = 4 splits 52 into 13-layer stages",
          "%s", e.message);
    nam_pattern_free(&p);
    expect_pat_err("stages = 5 on depth 52 is an error, not an uneven split", "AEMEAEMEAEMR", 0, 1, 52, 5, NAM_ERR_STAGE, 0, "52");
    /* stage breaks kept exactly */
    st = parse_pat("AE|MEA|EM", 0, 0, 7, 0, NULL, &p, &e);
    CHECK(st == NAM_OK && p.num_stages == 3 && p.stage_begin[1] == 2 && p.stage_begin[2] == 5 && p.layers[4].stage == 1 && p.layers[5].stage == 2, "written stage breaks kept exactly",
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
    CHECK(st == NAM_OK && p.counts['X' - 'A'] == 2, "declared family X is accepted", "%s", e.message);
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
        CHECK(st == NAM_OK && p.depth == NAM_MAX_DEPTH, "a fully written pattern of NAM_MAX_DEPTH layers", "%s", e.message);
        nam_pattern_free(&p);
        big[NAM_MAX_DEPTH] = 'A';
        big[NAM_MAX_DEPTH + 1] = 0;
        expect_pat_err("one layer over NAM_MAX_DEPTH", big, 0, 0, 0, 0, NAM_ERR_LIMIT, 0, "limit");
        free(big);
    }
    /* MTP suffix */
    st = parse_pat("AEMEAEMEAEMR/AE/AE", 0, 1, 52, 0, NULL, &p, &e);
    CHECK(st == NAM_OK && p.depth == 52 && p.mtp_depths == 2 && p.mtp && !strcmp(p.mtp, "AE") && p.counts['A' - 'A'] == 13, "MTP suffix kept separate: 2 copies of AE",
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
    CHECK(st == NAM_ERR_CONFLICT && strstr(e.message, "Attention and MLA/DSA"), "'*' in main with '+' in MTP is refused (stricter than Megatron)", "%s %s", nam_status_str(st), e.message);
    nam_megatron_free(&mp);
    st = nam_megatron_parse("M+M+/M*", 0, &mp, &e);
    CHECK(st == NAM_ERR_CONFLICT, "'+' in main with '*' in MTP is refused", "%s", nam_status_str(st));
    nam_megatron_free(&mp);
    st = nam_megatron_parse("M*X", 0, &mp, &e);
    CHECK(st == NAM_ERR_SYMBOL && e.column == 3 && strstr(e.message, "'X'"), "symbol error names the byte and column", "col %d %s", e.column, e.message);
    nam_megatron_free(&mp);
    st = nam_megatron_parse("M*\0M", 4, &mp, &e);
    CHECK(st == NAM_ERR_SYMBOL && e.column == 3, "embedded NUL in a Megatron pattern", "%s col %d", nam_status_str(st), e.column);
    nam_megatron_free(&mp);
    /* layout: pipes with PP = 1 are refused (Megatron's validate_args, VPP needs PP > 1) */
    memset(&ld, 0, sizeof ld);
    nam_megatron_parse("M*|M*", 0, &mp, &e);
    ld.pp = 1;
    st = nam_megatron_layout(&mp, &ld, &lay, &e);
    CHECK(st == NAM_ERR_STAGE && strstr(e.message, "pipeline-model-parallel-size > 1"), "piped pattern with PP = 1 is refused", "%s %s", nam_status_str(st), e.message);
    nam_layout_free(&lay);
    ld.pp = 2;
    st = nam_megatron_layout(&mp, &ld, &lay, &e);
    CHECK(st == NAM_OK && lay.vpp == 0 && lay.num_stages == 2 && lay.stages[1].seg.offset == 2, "2 segments on PP 2: no VPP, stages at offsets 0 and 2", "%s", e.message);
    nam_layout_free(&lay);
    nam_megatron_free(&mp);
    nam_megatron_parse("M-M-M-M*-M-|M-M-M*-M-M-|M-M*-M-M-M-|M*-M-M-M-M-", 0, &mp, &e);
    ld.pp = 2;
    st = nam_megatron_layout(&mp, &ld, &lay, &e);
    CHECK(st == NAM_OK && lay.vpp == 2 && lay.num_stages == 4 && lay.stages[2].vp_stage == 1 && lay.stages[2].pp_rank == 0 && lay.stages[2].seg.offset == 22, "fVPP test pattern: 4 segments, PP 2 -> VPP 2 (megatron.md section 6)",
          "%s vpp %d", e.message, lay.vpp);
    nam_layout_free(&lay);
    ld.pp = 4;
    st = nam_megatron_layout(&mp, &ld, &lay, &e);
    CHECK(st == NAM_OK && lay.vpp == 0, "fVPP test pattern with PP 4 -> VPP None", "%s", e.message);
    nam_layout_free(&lay);
    ld.pp = 2;
    ld.no_overlap_p2p = 1;
    st = nam_megatron_layout(&mp, &ld, &lay, &e);
    CHECK(st == NAM_ERR_STAGE, "VPP without p2p overlap needs PP > 2", "%s", nam_status_str(st));
    nam_layout_free(&lay);
    nam_megatron_free(&mp);
    memset(&ld, 0, sizeof ld);
    nam_megatron_parse("M*M*", 0, &mp, &e);
    ld.pp = 2;
    ld.first_stage_layers = 1;
    ld.last_stage_layers = 3;
    st = nam_megatron_layout(&mp, &ld, &lay, &e);
    CHECK(st == NAM_OK && lay.stages[1].seg.offset == 1 && lay.stages[1].seg.num_layers == 3, "first/last layers with no middle stage and no middle layers is fine", "%s", e.message);
    nam_layout_free(&lay);
    ld.first_stage_layers = 1;
    ld.last_stage_layers = 1;
    st = nam_megatron_layout(&mp, &ld, &lay, &e);
    CHECK(st == NAM_ERR_STAGE && strstr(e.message, "no middle pipeline stages"), "first/last with no middle stages but 2 middle layers is refused", "%s %s", nam_status_str(st), e.message);
    nam_layout_free(&lay);
    nam_megatron_free(&mp);
    nam_megatron_parse("", 0, &mp, &e);
    memset(&ld, 0, sizeof ld);
    st = nam_megatron_layout(&mp, &ld, &lay, &e);
    CHECK(st == NAM_ERR_EMPTY, "empty main pattern refused by the layout check", "%s", nam_status_str(st));
    nam_megatron_free(&mp);
}

static void test_ratios(void) {
    char b[128];
    nam_error e;
    int local[8];
    nam_status st;
    /* verbatim strings from examples/mamba/train.sh (megatron.md section 6) */
    st = nam_megatron_pattern_from_ratios(56, 0.08, 0.5, b, sizeof b, &e);
    CHECK(st == NAM_OK && !strcmp(b, "M-M-M--M-M*-M-M-M-M--M*-M-M-M-M-M*--M-M-M-M-M*-M--M-M-M-"), "pattern_from_ratios(56, 0.08, 0.5) is the NVIDIA Mamba-hybrid 8B string", "%s", b);
    st = nam_megatron_pattern_from_ratios(48, 0.08, 0.5, b, sizeof b, &e);
    CHECK(st == NAM_OK && !strcmp(b, "M-M-M--M-*M-M-M-M--*M-M-M-M-*M--M-M-M-*M-M--M-M-"), "pattern_from_ratios(48, 0.08, 0.5) is the 800M string", "%s", b);
    st = nam_megatron_pattern_from_ratios(10, 0.7, 0.5, b, sizeof b, &e);
    CHECK(st == NAM_ERR_RANGE, "pattern_from_ratios: ratios summing above 1 are refused", "%s", nam_status_str(st));
    st = nam_megatron_pattern_from_ratios(0, 0, 0, b, sizeof b, &e);
    CHECK(st == NAM_ERR_RANGE, "pattern_from_ratios: 0 layers refused", "%s", nam_status_str(st));
    st = nam_megatron_pattern_from_ratios(100, 0, 0, b, 50, &e);
    CHECK(st == NAM_ERR_INVALID_ARG, "pattern_from_ratios: small buffer refused", "%s", nam_status_str(st));
    st = nam_megatron_layer_maps("D+M-DM", 6, local, &e);
    CHECK(st == NAM_OK && local[0] == 0 && local[4] == 1 && local[5] == 1 && local[3] == 0, "layer maps: index within each layer type", "%s", e.message);
    st = nam_megatron_layer_maps("M|M", 3, local, &e);
    CHECK(st == NAM_ERR_SYMBOL && e.layer == 1, "layer maps: '|' is not a layer", "%s", e.message);
}

/* ---- recipes --------------------------------------------------------------------- */
static void expect_recipe_err(const char *desc, const char *text, size_t len, nam_status code, int line, int col, const char *needle) {
    nam_recipe r;
    nam_error e;
    nam_status st;
    nam_recipe_init(&r, &e);
    st = nam_recipe_parse(&r, text, len ? len : strlen(text), "t.recipe", &e);
    CHECK(st == code && e.line == line && e.column == col && strstr(e.message, "t.recipe:") && (!needle || strstr(e.message, needle)) && r.tp == 2, desc,
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
    CHECK(!strcmp(r.name, "NAM56R") && !strcmp(r.pattern, "AEMEAEMEAEMR/AF") && r.tile && r.depth == 52, "built-in recipe is NAM56R: motif AEMEAEMEAEMR, depth 52, MTP block AF", "%s %s", r.name, r.pattern);
    st = nam_recipe_parse(&r, "# c\n[parallel]\ntp = 4   # four\n; other comment\n[pattern]\nmap = \"R=G\"\nmodel.hidden_size=2048\n", 0, "x", &e);
    CHECK(st == NAM_OK && r.tp == 4 && !strcmp(r.map, "R=G") && r.hidden_size == 2048, "recipe: sections, comments, quotes, section.key", "%s", e.message);
    st = nam_recipe_parse(&r, "[pattern]\n\n text = AEME/AE\n", 0, "p.recipe", &e);
    CHECK(st == NAM_OK && r.pattern_line == 3 && r.pattern_column == 9 && !strcmp(r.pattern_source, "p.recipe"), "recipe records where the pattern was written", "%d:%d", r.pattern_line, r.pattern_column);
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
    CHECK(st == NAM_OK && r.num_dsa_layers == 3 && r.dsa_layers[1] == 4 && r.dsa_layers[2] == 12, "list entries may have blanks around the commas", "%s", e.message);
    st = nam_recipe_set(&r, "pattern.dsa_layers", "0,,4", &e);
    CHECK(st == NAM_ERR_SYNTAX && strstr(e.message, "entry 2"), "empty list entry is an error", "%s", e.message);
    nam_recipe_set(&r, "pattern.dsa_layers", "", &e);
    st = nam_recipe_set(&r, "tp", "8", &e);
    CHECK(st == NAM_OK && r.tp == 8, "set by bare unique key", "%s", e.message);
    st = nam_recipe_set(&r, "ffn_hidden_size", "8", &e);
    CHECK(st == NAM_ERR_UNKNOWN_KEY && strstr(e.message, "ambiguous"), "ambiguous bare key is an error", "%s", e.message);
    st = nam_recipe_set(&r, "parallel.bogus", "1", &e);
    CHECK(st == NAM_ERR_UNKNOWN_KEY && strstr(e.message, "parallel.bogus"), "unknown key via set", "%s", e.message);
    /* write then parse gives the same recipe */
    nam_recipe_set(&r, "pattern.dsa_layers", "0,4", &e);
    nam_recipe_set(&r, "model.mla", "true", &e);
    nam_recipe_set(&r, "name", "with \"quotes\" # and hash", &e);
    st = nam_recipe_write(&r, &text, &e);
    nam_recipe_init(&r2, &e);
    if (st == NAM_OK) st = nam_recipe_parse(&r2, text, strlen(text), "written", &e);
    CHECK(st == NAM_OK && r2.tp == 8 && r2.mla == 1 && r2.num_dsa_layers == 2 && r2.dsa_layers[1] == 4 && !strcmp(r2.name, r.name), "recipe write -> parse round trip",
          "%s", e.message);
    nam_free(text);
    nam_recipe_free(&r2);
    nam_recipe_free(&r);
    for (n = 0; nam_recipe_key(n); n++) {}
    for (i = 0; i < n; i++) {
        int amb;
        if (nam__field_find(nam_recipe_key(i), &amb) != i) break;
    }
    CHECK(n > 50 && i == n, "every recipe key resolves to itself", "%d of %d", i, n);
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
    CHECK(st == NAM_OK, "default plan succeeds in plan mode", "%s", e.message);
    if (st == NAM_OK) {
        int r_seams = 0;
        CHECK(p.native_pattern == NULL && p.unresolved == 4, "R seam withholds the native pattern", "unresolved %d", p.unresolved);
        for (i = 0; i < p.num_seams; i++)
            if (p.seams[i].family == 'R' && p.seams[i].kind == NAM_SEAM_UNMAPPED && p.seams[i].num_layers == 4 && p.seams[i].layers[0] == 11) r_seams++;
        CHECK(r_seams == 1, "recurrent-tail seam names layers 11..47", "%d", r_seams);
        ok = 1;
        for (i = 0; i < 52; i++) {
            char fam = p.layers[i].family, nat = p.layers[i].native;
            if (fam == 'R' && (nat != 0 || p.layers[i].seam < 0)) ok = 0;
            if (fam == 'A' && nat != '*') ok = 0;
            if (fam == 'E' && nat != 'E') ok = 0;
            if (fam == 'M' && nat != 'M') ok = 0;
        }
        CHECK(ok, "A->*, E->E, M->M, R->none", "mismatch");
        for (i = 0; i < p.num_args; i++) if (!strcmp(p.args[i].flag, "--hybrid-layer-pattern")) break;
        CHECK(i == p.num_args, "no --hybrid-layer-pattern while seams remain", "found one");
        CHECK(p.dp == 2 && p.edp == 1 && p.vpp == 2 && p.num_microbatches == 32, "dp 2, expert dp 1, vpp 2, 32 microbatches for the defaults",
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
                    CHECK(v && json_get(v, "A")->number == 13 && json_get(v, "E")->number == 22 && json_get(v, "M")->number == 13 && json_get(v, "R")->number == 4 &&
                          json_get(doc->root, "native_pattern")->type == JSON_NULL && json_len(json_get(doc->root, "layers")) == 52,
                          "plan JSON parses and counts A13 E22 M13 R4",
                          "%s", doc ? "bad values" : eb);
                } else if (k == 2) {
                    CHECK(doc && json_get(doc->root, "generated_native_args") && json_get(doc->root, "fixed_policy") && json_get(doc->root, "launcher_profile") &&
                          json_get(json_get(doc->root, "fixed_policy"), "mtp_depths") && !json_get(json_get(doc->root, "fixed_policy"), "args"),
                          "launch JSON keeps generated_native_args and fixed_policy apart",
                          "%s", doc ? "missing fields" : eb);
                } else {
                    CHECK(doc && json_len(json_get(doc->root, "custom_notes")) == 2, "args JSON parses with custom_notes", "%s", doc ? "bad notes" : eb);
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
        CHECK(st == NAM_ERR_UNSUPPORTED && e.layer == 11 && e.stage == 0 && e.column == 12 && strstr(e.message, "R at layer 11"), "strict mode stops at the first R with its position",
              "%s layer %d stage %d col %d: %s", nam_status_str(st), e.layer, e.stage, e.column, e.message);
    }
    {
        const char *s[] = { "recipe.mode", "strict", "pattern.stages", "0", "pattern.tile", "false", "pattern.depth", "0", "pattern.text", "AEME|AEMR", "parallel.pp", "2", NULL };
        st = plan_with(&p, &e, s);
        CHECK(st == NAM_ERR_UNSUPPORTED && e.layer == 7 && e.stage == 1 && e.column == 9, "strict error in stage 1 of a written pattern", "layer %d stage %d col %d", e.layer, e.stage, e.column);
    }
    {   /* a pattern from a recipe file reports file:line:column of the letter */
        nam_recipe r;
        nam_recipe_init(&r, &e);
        nam_recipe_parse(&r, "[recipe]\nmode = strict\n[pattern]\ntext = AEMEAEMEAEMR\n", 0, "f.recipe", &e);
        st = nam_plan_make(&r, &p, &e);
        CHECK(st == NAM_ERR_UNSUPPORTED && e.line == 4 && e.column == 19 && !strcmp(e.source, "f.recipe"), "strict error carries the recipe file position",
              "%s:%d:%d", e.source, e.line, e.column);
        nam_recipe_free(&r);
    }
    /* explicit binding R=G: native pattern with stage breaks kept, decision recorded */
    {
        const char *s[] = { "pattern.map", "R=G", "pattern.mamba_impl", "mamba2", NULL };
        st = plan_with(&p, &e, s);
        build_expected(expect, "AEMEAEMEAEMR", 52, 13, 'G');
        strcat(expect, "/*-");   /* the built-in MTP block AF */
        CHECK(st == NAM_OK && p.native_pattern && !strcmp(p.native_pattern, expect), "R=G binding lowers to G with the 4 stage breaks kept", "%s / %s", p.native_pattern ? p.native_pattern : e.message, expect);
        if (st == NAM_OK) {
            CHECK(p.num_decisions == 1 && p.decisions[0].family == 'R' && p.decisions[0].symbol == 'G' && p.num_seams == 0, "binding recorded as a decision; no seams",
                  "%d decisions %d seams", p.num_decisions, p.num_seams);
            for (i = 0; i < p.num_args; i++) if (!strcmp(p.args[i].flag, "--linear-num-key-heads")) break;
            CHECK(i < p.num_args, "G layers bring the GDN args", "missing");
            nam_plan_free(&p);
        }
    }
    {
        const char *s[] = { "pattern.map", "R=G", "pattern.mamba_impl", "mamba2", "pattern.text", "AEMEAEMEAEMR/AE/AE", NULL };
        st = plan_with(&p, &e, s);
        CHECK(st == NAM_OK && p.native_pattern && strstr(p.native_pattern, "EME/*E/*E") && p.mpattern.mtp_depths == 2, "MTP suffix stays separate in the native pattern",
              "%s", p.native_pattern ? p.native_pattern : e.message);
        if (st == NAM_OK) {
            for (i = 0; i < p.num_args; i++) if (!strcmp(p.args[i].flag, "--mtp-num-layers")) break;
            CHECK(i < p.num_args && !strcmp(p.args[i].value, "2"), "--mtp-num-layers 2 emitted", "missing");
            nam_plan_free(&p);
        }
    }
    /* MLA / DSA */
    {
        const char *s[] = { "pattern.map", "R=G", "model.mla", "true", "model.num_query_groups", "0", "pattern.dsa_layers", "0,12", NULL };
        st = plan_with(&p, &e, s);
        CHECK(st == NAM_OK && p.layers[0].native == 'D' && p.layers[4].native == '+' && p.layers[12].native == 'D', "MLA lowers A to '+', DSA layers to 'D'", "%s", e.message);
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
        CHECK(st == NAM_OK && p.num_seams == 2 && !strcmp(p.seams[1].name, "custom-family-X") && !p.native_pattern, "declared family without binding is a named seam",
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
        CHECK(st == NAM_OK && p.num_seams == 0, "mamba2 is native: no seams at all", "%s", e.message);
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
      CHECK(st == NAM_OK && p.layout.stages[1].seg.offset == 26, "uneven PP via first/last layers without pipes", "%s", e.message);
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
    CHECK(st == NAM_OK && m.dp == 2 && m.edp == 2, "world 8, TP2 CP2 EP4 ETP1 -> DP2, EDP2 (megatron.md section 5)", "%s", e.message);
    if (st == NAM_OK) {
        g = nam_rankmap_find(&m, 0, "tp");
        CHECK(g && g->num_groups == 4 && g->ranks[0] == 0 && g->ranks[1] == 1 && g->ranks[2] == 2, "decoder tp groups [[0,1],...]", "bad");
        g = nam_rankmap_find(&m, 1, "ep");
        CHECK(g && g->num_groups == 2 && g->group_size == 4 && g->ranks[3] == 3 && g->ranks[4] == 4, "expert ep groups [[0,1,2,3],[4,5,6,7]]", "bad");
        st = nam_rankmap_query_rank(&m, 5, &c, &e);
        CHECK(st == NAM_OK && c.tp == 1 && c.cp == 0 && c.dp == 1 && c.pp == 0 && c.ep == 1 && c.etp == 0 && c.edp == 1, "rank 5 coordinates: tp 1, cp 0, dp 1, ep 1",
              "tp %d cp %d dp %d ep %d edp %d", c.tp, c.cp, c.dp, c.ep, c.edp);
        st = nam_rankmap_query_rank(&m, 8, &c, &e);
        CHECK(st == NAM_ERR_RANGE, "rank out of range", "%s", nam_status_str(st));
        nam_rankmap_free(&m);
    }
    d.world_size = 12; d.tp = 8; d.cp = 1; d.ep = 1; d.etp = 0;
    st = nam_rankmap_build(&d, &m, &e);
    CHECK(st == NAM_ERR_PARALLEL && strstr(e.message, "12"), "world not divisible by tp", "%s", e.message);
    d.world_size = 8; d.tp = 2; d.order = "tp-cp-ep-pp-dp";
    st = nam_rankmap_build(&d, &m, &e);
    CHECK(st == NAM_OK && m.dp == 4, "alternative order tp-cp-ep-pp-dp", "%s", e.message);
    if (st == NAM_OK) {
        g = nam_rankmap_find(&m, 0, "dp");
        CHECK(g && g->ranks[0] == 0 && g->ranks[1] == 2, "tp-cp-ep-pp-dp: dp groups stride tp*pp", "bad");
        nam_rankmap_free(&m);
    }
    d.order = "tp-xx-dp";
    st = nam_rankmap_build(&d, &m, &e);
    CHECK(st == NAM_ERR_INVALID_ARG && strstr(e.message, "xx"), "unknown axis in the order", "%s", e.message);
    d.order = NULL;
    d.world_size = 1 << 30;
    st = nam_rankmap_build(&d, &m, &e);
    CHECK(st == NAM_ERR_RANGE, "world size bound", "%s", nam_status_str(st));
    {
        nam_rankgen_desc gd;
        nam_rank_groups gr;
        memset(&gd, 0, sizeof gd);
        gd.tp = 2; gd.dp = 2; gd.ep = 2; gd.cp = 2;
        st = nam_rankgen_ranks(&gd, "tp", &gr, &e);
        CHECK(st == NAM_ERR_PARALLEL, "RankGenerator refuses ep > 1 with cp > 1", "%s", nam_status_str(st));
        gd.ep = 1; gd.order = "tp-dp";
        st = nam_rankgen_ranks(&gd, "tp", &gr, &e);
        CHECK(st == NAM_ERR_PARALLEL && strstr(e.message, "cp"), "RankGenerator refuses an order that omits an axis of size > 1", "%s", e.message);
    }
}

static void test_misc(void) {
    int i, distinct = 1;
    char *q;
    for (i = 0; i < NAM_STATUS_COUNT; i++) {
        int k;
        for (k = 0; k < i; k++) if (!strcmp(nam_status_str((nam_status)i), nam_status_str((nam_status)k))) distinct = 0;
    }
    CHECK(distinct, "status texts are distinct", "duplicate text");
    CHECK(!strcmp(nam_status_str((nam_status)999), "unknown status"), "out-of-range status", "%s", nam_status_str((nam_status)999));
    q = nam_shell_quote("M*|M'E");
    CHECK(q && !strcmp(q, "'M*|M'\\''E'"), "shell quoting of * | and '", "%s", q ? q : "NULL");
    nam_free(q);
    q = nam_shell_quote("hybrid_stack_spec");
    CHECK(q && !strcmp(q, "hybrid_stack_spec"), "plain words stay unquoted", "%s", q ? q : "NULL");
    nam_free(q);
    {
        nam_pattern p;
        nam_error e;
        CHECK(nam_pattern_parse(NULL, &p, &e) == NAM_ERR_INVALID_ARG, "NULL desc is an error, not a crash", "bad");
        CHECK(parse_pat("Q", 0, 0, 0, 0, NULL, &p, NULL) == NAM_ERR_SYMBOL, "NULL error record is allowed", "bad");
    }
}

/* ---- Megatron rules nam used to break, seams, features (issue 8) ------------------- */
/* The value of `flag` in the plan's args ("" for a bare switch), NULL when absent. */
static const char *arg_of(const nam_plan *p, const char *flag) {
    int i;
    for (i = 0; i < p->num_args; i++)
        if (!strcmp(p->args[i].flag, flag)) return p->args[i].value ? p->args[i].value : "";
    return NULL;
}

static int decision_has(const nam_plan *p, const char *needle) {
    int i;
    for (i = 0; i < p->num_decisions; i++) if (strstr(p->decisions[i].what, needle)) return 1;
    return 0;
}

static const nam_seam *seam_of(const nam_plan *p, const char *name) {
    int i;
    for (i = 0; i < p->num_seams; i++) if (!strcmp(p->seams[i].name, name)) return &p->seams[i];
    return NULL;
}

/* expect_plan_ok: the plan is accepted and `flag` has `value` (NULL value: flag absent,
   "" : bare switch present). */
static void expect_plan_arg(const char *desc, const char *const *sets, const char *flag, const char *value) {
    nam_plan p;
    nam_error e;
    nam_status st = plan_with(&p, &e, sets);
    const char *v = st == NAM_OK ? arg_of(&p, flag) : NULL;
    int ok = st == NAM_OK && (value ? v && !strcmp(v, value) : !v);
    CHECK(ok, desc, "status %s %s; %s = %s (want %s)", nam_status_str(st), st ? e.message : "", flag, v ? v : "(absent)", value ? value : "(absent)");
    if (st == NAM_OK) nam_plan_free(&p);
}

static void test_megatron_rules(void) {
    nam_plan p;
    nam_error e;
    nam_status st;
    /* DSA: rope fusion off (transformer_config.py:3163), the variant, the indexer dims */
    {
        const char *s[] = { "pattern.map", "R=G", "model.mla", "true", "model.num_query_groups", "0", "pattern.dsa_layers", "0,12,24", NULL };
        st = plan_with(&p, &e, s);
        CHECK(st == NAM_OK && arg_of(&p, "--no-rope-fusion") && decision_has(&p, "transformer_config.py:3163"),
              "DSA plan gets --no-rope-fusion and a decision naming Megatron's rule", "%s", e.message);
        CHECK(st == NAM_OK && arg_of(&p, "--experimental-attention-variant") && !strcmp(arg_of(&p, "--experimental-attention-variant"), "dsa") &&
              arg_of(&p, "--dsa-indexer-n-heads") && !strcmp(arg_of(&p, "--dsa-indexer-n-heads"), "32") &&
              arg_of(&p, "--dsa-indexer-head-dim") && !strcmp(arg_of(&p, "--dsa-indexer-head-dim"), "64") &&
              arg_of(&p, "--dsa-indexer-topk") && !strcmp(arg_of(&p, "--dsa-indexer-topk"), "256") &&
              arg_of(&p, "--dsa-indexer-loss-coeff") && !strcmp(arg_of(&p, "--dsa-indexer-loss-coeff"), "0.001"),
              "DSA plan gets --experimental-attention-variant dsa and the indexer dims of [dsa]", "%s", e.message);
        if (st == NAM_OK) nam_plan_free(&p);
    }
    { const char *s[] = { "pattern.map", "R=G", "model.mla", "true", "model.num_query_groups", "0", NULL };
      expect_plan_arg("MLA without DSA layers gets no DSA flags", s, "--experimental-attention-variant", NULL); }
    { const char *s[] = { "pattern.map", "R=G", "model.mla", "true", "model.num_query_groups", "0", "dsa.indexer_topk", "2048", "pattern.dsa_layers", "4", NULL };
      expect_plan_arg("[dsa] indexer_topk reaches --dsa-indexer-topk", s, "--dsa-indexer-topk", "2048"); }
    /* MoE configured, no E layer: no --num-experts, so no EP and no MoE graphs */
    { const char *s[] = { "pattern.text", "AFMF", NULL };
      expect_plan_err("experts but no E layer, ep 4: refused with Megatron's rule", s, NAM_ERR_PARALLEL, "arguments.py:1656"); }
    { const char *s[] = { "pattern.text", "AFMF", "parallel.ep", "1", NULL };
      expect_plan_err("experts but no E layer, moe_router graph: refused with Megatron's rule", s, NAM_ERR_CONFLICT, "transformer_config.py:2829"); }
    { const char *s[] = { "pattern.text", "AFMF", "parallel.ep", "1", "cuda_graph.modules", "attn,mamba", NULL };
      expect_plan_arg("experts but no E layer, ep 1, no MoE graphs: accepted without --num-experts", s, "--num-experts", NULL); }
    /* 'mlp' graphs in an MoE model */
    { const char *s[] = { "pattern.map", "R=G", "cuda_graph.modules", "attn,mlp", NULL };
      expect_plan_err("mlp CUDA graphs in a MoE model with dense F layers: refused", s, NAM_ERR_CONFLICT, "transformer_config.py:2835"); }
    { const char *s[] = { "pattern.map", "R=G", "pattern.text", "AFMFAFMFAFMR/AF", "moe.num_experts", "0", "parallel.ep", "1", "cuda_graph.modules", "attn,mlp,mamba", NULL };
      expect_plan_arg("mlp CUDA graphs in a dense model: accepted", s, "--cuda-graph-modules", "attn mlp mamba"); }
    /* full-iteration graphs */
    { const char *s[] = { "cuda_graph.impl", "full_iteration", "cuda_graph.modules", "", NULL };
      expect_plan_arg("full_iteration graphs get --no-check-for-nan-in-loss-and-grad", s, "--no-check-for-nan-in-loss-and-grad", ""); }
    { const char *s[] = { NULL };
      expect_plan_arg("other graph impls keep Megatron's NaN check", s, "--no-check-for-nan-in-loss-and-grad", NULL); }
    /* a2a+p2p context parallelism */
    { const char *s[] = { "parallel.cp", "2", "parallel.world_size", "16", "parallel.cp_comm_type", "a2a+p2p", NULL };
      expect_plan_err("a2a+p2p without hierarchical sizes: refused", s, NAM_ERR_CONFLICT, "hierarchical_cp_sizes"); }
    { const char *s[] = { "parallel.cp", "2", "parallel.world_size", "16", "parallel.cp_comm_type", "a2a+p2p", "parallel.hierarchical_cp_sizes", "2,1", NULL };
      expect_plan_arg("a2a+p2p with hierarchical sizes: emitted as argv words", s, "--hierarchical-context-parallel-sizes", "2 1"); }
    { const char *s[] = { "parallel.cp", "2", "parallel.world_size", "16", "parallel.cp_comm_type", "a2a+p2p", "parallel.hierarchical_cp_sizes", "4", NULL };
      expect_plan_err("hierarchical sizes whose product is not cp: refused", s, NAM_ERR_PARALLEL, "arguments.py:581"); }
    /* sinkhorn */
    { const char *s[] = { "moe.load_balancing", "sinkhorn", NULL };
      expect_plan_err("sinkhorn with an aux-loss coefficient: refused", s, NAM_ERR_CONFLICT, "router.py:298"); }
    { const char *s[] = { "moe.load_balancing", "sinkhorn", "moe.aux_loss_coeff", "0", NULL };
      expect_plan_arg("sinkhorn with aux loss 0: accepted", s, "--moe-router-load-balancing-type", "sinkhorn"); }
    /* fp8 and the Mamba in_proj width: 2*120*64 + 2*8*128 + 120 = 17528, 17528 % 16 = 8 */
    { const char *s[] = { "pattern.map", "R=G", "pattern.mamba_impl", "mamba2", "mamba.num_heads", "120", "precision.fp8", "e4m3", NULL };
      expect_plan_err("fp8 with a Mamba in_proj width of 17528: refused", s, NAM_ERR_CONFLICT, "17528"); }
    { const char *s[] = { "pattern.map", "R=G", "pattern.mamba_impl", "mamba2", "mamba.num_heads", "128", "precision.fp8", "e4m3", NULL };
      expect_plan_arg("fp8 with a Mamba in_proj width of 18560 (16 * 1160): accepted", s, "--fp8-format", "e4m3"); }
    { const char *s[] = { "pattern.map", "R=G", "precision.fp8", "hybrid", "precision.dtype", "fp32", NULL };
      expect_plan_arg("fp8 with fp32 params: accepted (Megatron accepts it; decided in README)", s, "--fp8-format", "hybrid"); }
    /* the fixed policy's environment */
    { const char *s[] = { "runtime.env", "NCCL_P2P_LEVEL=NVL", NULL };
      expect_plan_err("tp 2 without CUDA_DEVICE_MAX_CONNECTIONS=1: refused", s, NAM_ERR_CONFLICT, "arguments.py:1479"); }
    { const char *s[] = { "runtime.env", "CUDA_DEVICE_MAX_CONNECTIONS=8", NULL };
      expect_plan_err("tp 2 with CUDA_DEVICE_MAX_CONNECTIONS=8: refused", s, NAM_ERR_CONFLICT, "CUDA_DEVICE_MAX_CONNECTIONS=8"); }
    { const char *s[] = { "runtime.env", "NCCL_P2P_LEVEL=NVL", "parallel.tp", "1", "parallel.sequence_parallel", "false", NULL };
      expect_plan_arg("tp 1 cp 1 without CUDA_DEVICE_MAX_CONNECTIONS: accepted", s, "--tensor-model-parallel-size", "1"); }
    { const char *s[] = { "runtime.env", "CUDA_DEVICE_MAX_CONNECTIONS=1,PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True", NULL };
      expect_plan_err("expandable segments with TE graphs and no NCCL_GRAPH_REGISTER=0: refused", s, NAM_ERR_CONFLICT, "arguments.py:1966"); }
    { const char *s[] = { "runtime.env", "CUDA_DEVICE_MAX_CONNECTIONS=1,PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True,NCCL_GRAPH_REGISTER=0", NULL };
      expect_plan_arg("expandable segments with NCCL_GRAPH_REGISTER=0: accepted", s, "--cuda-graph-impl", "transformer_engine"); }
    { const char *s[] = { "runtime.env", "CUDA_DEVICE_MAX_CONNECTIONS=1,PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True", "cuda_graph.impl", "local", NULL };
      expect_plan_arg("expandable segments with local graphs: accepted (the rule reads TE graphs only)", s, "--cuda-graph-impl", "local"); }
}

static void test_seams(void) {
    nam_plan p, q;
    nam_error e;
    nam_status st;
    int i;
    /* R bound to M: native pattern emitted, the M2RNN mixer kept as a custom seam */
    {
        const char *s[] = { "pattern.map", "R=M", NULL };
        const nam_seam *m;
        st = plan_with(&p, &e, s);
        m = st == NAM_OK ? seam_of(&p, "m2rnn-mixer") : NULL;
        CHECK(st == NAM_OK && p.native_pattern && p.layers[11].native == 'M' && p.layers[47].native == 'M' && p.layers[11].seam >= 0,
              "R=M: native pattern emitted with M at the R layers", "%s", e.message);
        CHECK(m && m->kind == NAM_SEAM_CUSTOM_IMPL && m->num_layers == 4 && m->layers[0] == 11 && m->layers[3] == 47 &&
              !strcmp(m->mixer, "m2rnn") && strstr(m->detail, "k_head_dim=64") && strstr(m->detail, "v_head_dim=16") &&
              strstr(m->detail, "value_heads=51") && strstr(m->detail, "conv_kernel=4") && strstr(m->detail, "residual_D=on"),
              "R=M: seam m2rnn-mixer is a custom implementation at 11,23,35,47 naming M2RNN and its dims",
              "%s", m ? m->detail : e.message);
        CHECK(st == NAM_OK && decision_has(&p, "R=M") && decision_has(&p, "M2RNN"), "R=M: the binding is a decision that keeps M2RNN", "decisions %d", p.num_decisions);
        if (st == NAM_OK) nam_plan_free(&p);
    }
    {   /* heads = floor(3584 / 80) = 44 (nam56r-blocks.md) */
        const char *s[] = { "pattern.map", "R=M", "model.hidden_size", "3584", "model.num_attention_heads", "28", "model.num_query_groups", "4", "mamba.num_groups", "8", NULL };
        st = plan_with(&p, &e, s);
        CHECK(st == NAM_OK && seam_of(&p, "m2rnn-mixer") && strstr(seam_of(&p, "m2rnn-mixer")->detail, "value_heads=44"), "M2RNN heads at hidden 3584 are 44", "%s", st ? e.message : seam_of(&p, "m2rnn-mixer")->detail);
        if (st == NAM_OK) nam_plan_free(&p);
    }
    { const char *s[] = { "pattern.map", "R=M", "m2rnn.num_heads", "8", "m2rnn.residual", "false", NULL };
      st = plan_with(&p, &e, s);
      CHECK(st == NAM_OK && strstr(seam_of(&p, "m2rnn-mixer")->detail, "value_heads=8 ") && strstr(seam_of(&p, "m2rnn-mixer")->detail, "residual_D=off"), "m2rnn.num_heads and residual reach the seam", "%s", e.message);
      if (st == NAM_OK) nam_plan_free(&p); }
    { const char *s[] = { "pattern.map", "R=G", NULL };
      st = plan_with(&p, &e, s);
      CHECK(st == NAM_OK && decision_has(&p, "REPLACED") && decision_has(&p, "Gated DeltaNet") && !seam_of(&p, "m2rnn-mixer"), "R=G: recorded as Gated DeltaNet replacing M2RNN, no m2rnn seam", "%s", e.message);
      if (st == NAM_OK) nam_plan_free(&p); }
    { const char *s[] = { NULL };
      st = plan_with(&p, &e, s);
      CHECK(st == NAM_OK && seam_of(&p, "recurrent-tail") && !strcmp(seam_of(&p, "recurrent-tail")->mixer, "m2rnn") && strstr(seam_of(&p, "recurrent-tail")->detail, "M2RNN"), "unbound R: the recurrent-tail seam names the M2RNN mixer", "%s", e.message);
      if (st == NAM_OK) nam_plan_free(&p); }
    /* model.spec */
    { const char *s[] = { "recipe.mode", "strict", "pattern.map", "R=M", NULL };
      expect_plan_err("strict with the stock spec and custom seams: refused naming them", s, NAM_ERR_UNSUPPORTED, "mamba3-mixer, m2rnn-mixer"); }
    { const char *s[] = { "recipe.mode", "strict", "pattern.map", "R=M", "model.spec", "cppmega.megatron.nam56r_full_spec build_nam56r_spec", NULL };
      expect_plan_arg("strict with a custom spec: accepted, --spec carries it", s, "--spec", "cppmega.megatron.nam56r_full_spec build_nam56r_spec"); }
    { const char *s[] = { "recipe.mode", "strict", "pattern.map", "R=G", "pattern.mamba_impl", "mamba2", NULL };
      expect_plan_arg("strict, stock spec, no seams: accepted", s, "--spec", "megatron.core.models.hybrid.hybrid_layer_specs hybrid_stack_spec"); }
    {
        nam_recipe r;
        const char *bad[] = { "hybrid_stack_spec", "a..b c", "a.b c d", "1a.b c", "a.b 2c", "a.b ", " a.b c", "a.b. c", NULL };
        nam_recipe_init(&r, &e);
        for (i = 0; bad[i]; i++) {
            char d[96];
            st = nam_recipe_set(&r, "model.spec", bad[i], &e);
            snprintf(d, sizeof d, "model.spec '%s' is refused as not 'module.path builder_name'", bad[i]);
            CHECK(st == NAM_ERR_SYNTAX && strstr(e.message, "model.spec"), d, "status %s: %s", nam_status_str(st), e.message);
        }
        st = nam_recipe_parse(&r, "[model]\nspec = a.b c d\n", 0, "s.recipe", &e);
        CHECK(st == NAM_ERR_SYNTAX && e.line == 2 && e.column == 8 && strstr(e.message, "s.recipe:2:8"), "a bad spec in a file names file:line:column", "%s", e.message);
        nam_recipe_free(&r);
    }
    /* Mamba-3 keys */
    { const char *s[] = { "mamba3.expand", "3", NULL };
      expect_plan_arg("mamba3.expand 3: heads = 3 * 4096 / 64 = 192", s, "--mamba-num-heads", "192"); }
    { const char *s[] = { "mamba.num_heads", "64", NULL };
      expect_plan_err("Mamba-3 heads overridden against expand * hidden / head_dim: refused", s, NAM_ERR_CONFLICT, "128"); }
    { const char *s[] = { "mamba3.expand", "3", "mamba.head_dim", "80", "mamba.num_groups", "2", NULL };  /* 12288 % 80 = 48 */
      expect_plan_err("Mamba-3 inner width not divisible by head_dim: refused", s, NAM_ERR_RANGE, "head_dim 80"); }
    { const char *s[] = { "mamba3.dt_min", "0.5", "mamba3.dt_max", "0.1", NULL };
      expect_plan_err("Mamba-3 dt_min above dt_max: refused", s, NAM_ERR_RANGE, "dt_min"); }
    { const char *s[] = { "pattern.mamba_impl", "mamba2", "mamba3.mimo", "true", NULL };
      expect_plan_err("a Mamba-3 setting with mamba_impl mamba2 (--set): refused naming the key", s, NAM_ERR_CONFLICT, "mamba3.mimo"); }
    {
        nam_recipe r;
        nam_recipe_init(&r, &e);
        st = nam_recipe_parse(&r, "[pattern]\nmamba_impl = mamba2\n[mamba3]\n  mimo_rank = 2\n", 0, "m.recipe", &e);
        CHECK(st == NAM_ERR_CONFLICT && e.line == 4 && e.column == 3 && strstr(e.message, "m.recipe:4:3") && strstr(e.message, "mimo_rank"), "a Mamba-3 setting with mamba_impl mamba2 in a file: file:line:column of the key", "%s", e.message);
        nam_recipe_free(&r);
    }
    { const char *s[] = { "mamba3.mimo", "true", "mamba3.mimo_rank", "4", "mamba3.chunk_size", "16", NULL };
      st = plan_with(&p, &e, s);
      CHECK(st == NAM_OK && strstr(seam_of(&p, "mamba3-mixer")->detail, "MIMO") && strstr(seam_of(&p, "mamba3-mixer")->detail, "rank=4") && strstr(seam_of(&p, "mamba3-mixer")->detail, "chunk_size=16"), "Mamba-3 MIMO settings reach the mamba3-mixer seam", "%s", e.message);
      /* in_proj = 2*8192 + 2*128*8*4 + 3*128 + floor(128*0.5)/2 = 16384 + 8192 + 384 + 32 = 24992 */
      CHECK(st == NAM_OK && strstr(seam_of(&p, "mamba3-mixer")->detail, "in_proj=24992 "), "Mamba-3 in_proj width in the seam follows the reference formula", "%s", st ? e.message : seam_of(&p, "mamba3-mixer")->detail);
      if (st == NAM_OK) nam_plan_free(&p); }
    /* features: named seams on the right families, never a flag */
    {
        const char *base[] = { "pattern.map", "R=M", NULL };
        const char *all[] = { "pattern.map", "R=M", "engram.enabled", "true", "engram.layers", "0,4,8", "mhc.enabled", "true", "mhc.layers", "0,12",
                              "mod.enabled", "true", "mod.layers", "1,3,5", "moda.enabled", "true", "ngram_hash.enabled", "true",
                              "structure.enabled", "true", NULL };
        int same;
        st = plan_with(&q, &e, base);
        st = st ? st : plan_with(&p, &e, all);
        CHECK(st == NAM_OK && seam_of(&p, "engram") && seam_of(&p, "mhc") && seam_of(&p, "mod") && seam_of(&p, "moda") &&
              seam_of(&p, "ngram-hash-embedding") && seam_of(&p, "structure-embedding") && seam_of(&p, "engram")->kind == NAM_SEAM_FEATURE, "every feature enabled: six feature seams", "%s", e.message);
        CHECK(st == NAM_OK && (p.layers[0].features & NAM_FEATURE_ENGRAM) && (p.layers[0].features & NAM_FEATURE_MHC) &&
              (p.layers[3].features & NAM_FEATURE_MOD) && !p.layers[2].features && seam_of(&p, "mod")->num_layers == 3, "feature layers are marked", "%s", e.message);
        CHECK(st == NAM_OK && !strcmp(seam_of(&p, "ngram-hash-embedding")->placement, "input embedding") && !strcmp(seam_of(&p, "structure-embedding")->placement, "input embedding") &&
              !strcmp(seam_of(&p, "moda")->placement, "model") && seam_of(&p, "moda")->family == 0,
              "embedding features sit on the input embedding, MoDA on the model", "%s", e.message);
        same = st == NAM_OK && p.num_args == q.num_args;
        for (i = 0; same && i < p.num_args; i++)
            same = !strcmp(p.args[i].flag, q.args[i].flag) && (p.args[i].value ? q.args[i].value && !strcmp(p.args[i].value, q.args[i].value) : !q.args[i].value);
        CHECK(same, "features never turn into native flags (args identical with and without them)", "%d vs %d args", p.num_args, q.num_args);
        if (st == NAM_OK) {
            char *j = NULL;
            CHECK(nam_plan_args_text(&p, &j, &e) == NAM_OK && strstr(j, "# custom seam engram (family A, feature, no Megatron flag): layers 0,4,8 (layer_number 1,5,9)") &&
                  strstr(j, "# custom seam ngram-hash-embedding (input embedding"), "args text names each feature seam with its layers", "%s", j ? j : e.message);
            nam_free(j);
            nam_plan_free(&p);
            nam_plan_free(&q);
        }
    }
    {
        nam_recipe r;
        nam_recipe_init(&r, &e);
        nam_recipe_set(&r, "pattern.map", "R=M", &e);
        st = nam_recipe_parse(&r, "[engram]\nenabled = true\n\nlayers = 0, 1\n", 0, "f.recipe", &e);
        st = st ? st : nam_plan_make(&r, &p, &e);
        CHECK(st == NAM_ERR_CONFLICT && strstr(e.message, "f.recipe:4:1") && strstr(e.message, "layer 1 is family E") && e.line == 4,
              "Engram on an E layer: refused naming the layer, its family and file:line:column", "%s", e.message);
        if (st == NAM_OK) nam_plan_free(&p);
        nam_recipe_free(&r);
    }
    { const char *s[] = { "pattern.map", "R=M", "mod.enabled", "true", "mod.layers", "0", NULL };
      expect_plan_err("MoD on an A layer: refused", s, NAM_ERR_CONFLICT, "layer 0 is family A"); }
    { const char *s[] = { "pattern.map", "R=M", "mhc.enabled", "true", "mhc.layers", "52", NULL };
      expect_plan_err("mHC beyond the depth: refused", s, NAM_ERR_RANGE, "beyond the pattern's depth 52"); }
    { const char *s[] = { "pattern.map", "R=M", "mhc.enabled", "true", NULL };
      expect_plan_err("mHC enabled with no layers: refused", s, NAM_ERR_CONFLICT, "mhc.layers is empty"); }
    { const char *s[] = { "pattern.map", "R=M", "mhc.layers", "1", NULL };
      expect_plan_arg("a disabled feature's layers are not checked and add no seam", s, "--spec", "megatron.core.models.hybrid.hybrid_layer_specs hybrid_stack_spec"); }
    expect_recipe_err("recipe: unknown feature key", "[engram]\nlayer = 0\n", 0, NAM_ERR_UNKNOWN_KEY, 2, 1, "engram.layer");
    expect_recipe_err("recipe: MoD capacity 0 is outside (0, 1]", "[mod]\ncapacity = 0\n", 0, NAM_ERR_RANGE, 2, 12, "(0, 1]");
    expect_recipe_err("recipe: Engram dropout 1 is outside [0, 1)", "[engram]\ndropout = 1\n", 0, NAM_ERR_RANGE, 2, 11, "[0, 1)");
    /* MTP block and mtp.depths */
    { const char *s[] = { "pattern.map", "R=G", "mtp.depths", "2", NULL };
      st = plan_with(&p, &e, s);
      CHECK(st == NAM_OK && strstr(p.native_pattern, "EME/*-/*-") && arg_of(&p, "--mtp-num-layers") && !strcmp(arg_of(&p, "--mtp-num-layers"), "2"),
            "mtp.depths 2 repeats the AF block: native '/*-/*-' and --mtp-num-layers 2", "%s", st ? e.message : p.native_pattern);
      if (st == NAM_OK) nam_plan_free(&p); }
    { const char *s[] = { "pattern.text", "AEMEAEMEAEMR", "mtp.depths", "1", NULL };
      expect_plan_err("mtp.depths without an MTP block: refused", s, NAM_ERR_MTP, "no MTP block"); }
    { const char *s[] = { "pattern.text", "AEMEAEMEAEMR/AF/AF", "mtp.depths", "3", NULL };
      expect_plan_err("mtp.depths 3 with two written copies: refused", s, NAM_ERR_MTP, "2 MTP copies"); }
    { const char *s[] = { "pattern.families", "F", NULL };
      st = plan_with(&p, &e, s);
      CHECK(st == NAM_ERR_CONFLICT && strstr(e.message, "built in"), "F is built in and cannot be declared", "%s %s", nam_status_str(st), e.message);
      if (st == NAM_OK) nam_plan_free(&p); }
}

/* ---- pre-flight: parameters, static memory, FLOPs against Megatron's formulas --------- */
/* Megatron-LM d98e8a64 megatron/training/theoretical_memory_usage.py,
   compute_weight_and_optimizer_memory, for a GPT model of `layers` transformer layers
   (attention + MLP or MoE each), pp = 1, no MTP, RMSNorm, SwiGLU, GQA, untied embeddings,
   distributed optimizer. Written from that file, not from nam.h. */
static double megatron_weight_memory(double h, double n, double g, double kv, double ffn, double layers, double vocab,
                                     double experts, double topk, double moe_ffn, double shared, double tp, double ep, double etp,
                                     double dp, double edp, double *total_params) {
    double qps = kv * n, ratio = qps / h;
    double self_attn = 2 * h * h * ((1 + g / n) * ratio);                      /* lines 85-97 */
    double glu = 1.5, norm = 1;
    double dense_mlp = 2 * h * ffn * glu, shared_p = 2 * h * shared * glu;     /* lines 106-107 */
    double routed = experts ? 2 * h * moe_ffn * experts * glu : 0;             /* lines 113-115 */
    double ln = 2 * h * norm, router = experts ? h * experts : 0;             /* lines 130-134 */
    double nd = experts ? 0 : layers, nm = experts ? layers : 0;             /* moe_layer_freq = 1 */
    double emb = h * vocab, final_ln = norm * h;
    double tp_block = (self_attn + dense_mlp) * nd + (self_attn + shared_p) * nm;       /* lines 210-213 */
    double rep_block = ln * nd + (ln + router) * nm + final_ln;                          /* lines 214-222 */
    double exp_block = routed * nm;
    double tp_shard = (tp_block / 1 + emb) / tp + emb / tp;   /* + untied output layer with pp == 1 (line 266) */
    double exp_shard = exp_block / (etp * ep);
    (void)topk;
    *total_params = (self_attn + dense_mlp + ln) * nd + (self_attn + shared_p + routed + ln + router) * nm + final_ln + 2 * emb;
    return (tp_shard + rep_block) * (6 + 12 / dp) + exp_shard * (6 + 12 / edp);
}

/* Megatron's hybrid_flops (training.py:964-1010) for given layer counts. */
static double megatron_hybrid_flops(double T, double S2, double h, double na, double nm, double nmlp, double nmoe, double ngdn,
                                    double N, double G, double H, double heads, double groups, double kv, double ffn,
                                    double moe_ffn, double shared, double topk, double qkd, double vd, double nqk, double nv,
                                    double ck, double vocab, double mtp) {
    double pr = kv * heads / h, d_in = 2 * h, qk = qkd * nqk, v = vd * nv;
    double attn = 4 * T * h * pr * (h + h * (groups / heads)) + 2 * S2 * h * pr;
    double mlp = 4 * (ffn / h) * 1.5 * T * h * h;
    double mamba = 2 * T * h * (2 * d_in + 2 * G * N + H) + 7 * T * d_in * N + 2 * T * d_in * h;
    double moe = 4 * T * h * moe_ffn * topk * 1.5 + 4 * T * h * shared * 1.5;
    double gdn = 2 * T * (h * (2 * qk + 2 * v + 2 * nv) + ck * (2 * qk + v) + nv * vd * vd * 4 + h * v);
    return 3 * (na * attn + nmlp * mlp + nm * mamba + nmoe * moe + ngdn * gdn + 2 * T * h * vocab * (1 + mtp));
}

static int close_rel(double a, double b) { return fabs(a - b) <= 1e-12 * fabs(b) + 1e-6; }

/* A plan's parameter total and rank-0 static memory against Megatron's formula's values. */
static void expect_weights(const char *what, const char *const *sets, double total, double bytes) {
    nam_plan p;
    nam_error e;
    char d[160];
    nam_status st = plan_with(&p, &e, sets);
    snprintf(d, sizeof d, "pre-flight: %s parameters equal Megatron's weight formula", what);
    CHECK(st == NAM_OK && close_rel(p.preflight.params_total, total), d, "%s nam %.17g megatron %.17g", st ? e.message : "", st ? 0 : p.preflight.params_total, total);
    snprintf(d, sizeof d, "pre-flight: %s static memory equals compute_weight_and_optimizer_memory", what);
    CHECK(st == NAM_OK && close_rel(p.preflight.ranks[0].static_bytes, bytes), d, "nam %.17g megatron %.17g", st ? 0 : p.preflight.ranks[0].static_bytes, bytes);
    if (st == NAM_OK) nam_plan_free(&p);
}

static void test_preflight(void) {
    nam_plan p;
    nam_error e;
    nam_status st;
    double total, want;
    {   /* dense GPT as hybrid "*-" x 26 */
        const char *s[] = { "pattern.text", "AF", "pattern.stages", "1", "parallel.pp", "1", "parallel.ep", "1", "moe.num_experts", "0",
                            "cuda_graph.modules", "attn", "model.vocab_size", "32000", "model.ffn_hidden_size", "14336", NULL };
        want = megatron_weight_memory(4096, 32, 8, 128, 14336, 26, 32000, 0, 0, 0, 0, 2, 1, 1, 4, 8, &total);
        expect_weights("dense attention + MLP (pp 1)", s, total, want);
    }
    {   /* MoE GPT as hybrid "*E" x 26: 8 experts top-2, shared expert, EP 4, ETP 1, expert dp 2 */
        const char *s[] = { "pattern.text", "AE", "pattern.stages", "1", "parallel.pp", "1", "moe.num_experts", "8", "moe.router_topk", "2",
                            "model.vocab_size", "32000", "parallel.world_size", "8", "cuda_graph.modules", "attn,moe_router,moe_preprocess", NULL };
        want = megatron_weight_memory(4096, 32, 8, 128, 10880, 26, 32000, 8, 2, 1408, 2816, 2, 4, 1, 4, 2, &total);
        expect_weights("MoE, EP 4, expert dp 2 (pp 1)", s, total, want);
    }
    {   /* Megatron's hybrid FLOPs on NAM56R with R bound to G (13 *, 13 M, 22 E, 4 G; MTP *- once) */
        const char *s[] = { "pattern.map", "R=G", "pattern.mamba_impl", "mamba2", NULL };
        double T = 64.0 * 4096, S2 = 64.0 * 4096 * 4096;
        st = plan_with(&p, &e, s);
        want = megatron_hybrid_flops(T, S2, 4096, 13 + 1, 13, 1, 22, 4, 128, 8, 128, 32, 8, 128, 10880, 1408, 2816, 6, 128, 128, 16, 32, 4, 131072, 1);
        CHECK(st == NAM_OK && close_rel(p.preflight.flops_megatron, want), "pre-flight: FLOPs equal Megatron's hybrid formula on NAM56R (R=G)",
              "%s nam %.17g megatron %.17g", st ? e.message : "", st ? 0 : p.preflight.flops_megatron, want);
        CHECK(st == NAM_OK && close_rel(p.preflight.flops_total - p.preflight.flops[NAM_FAM_MTP], want),
              "pre-flight: nam's own count agrees where the families are Megatron's (no MLA, no custom mixers)", "nam %.17g", st ? 0 : p.preflight.flops_total);
        if (st == NAM_OK) nam_plan_free(&p);
    }
    {   /* per-rank placement: the embedding on pp rank 0, output and MTP on the last */
        const char *s[] = { "pattern.map", "R=M", NULL };
        st = plan_with(&p, &e, s);
        CHECK(st == NAM_OK && p.preflight.num_ranks == 2 && p.preflight.ranks[0].params[NAM_FAM_EMBEDDING] > 0 && p.preflight.ranks[1].params[NAM_FAM_EMBEDDING] == 0 &&
              p.preflight.ranks[1].params[NAM_FAM_OUTPUT] > 0 && p.preflight.ranks[1].params[NAM_FAM_MTP] > 0 && p.preflight.ranks[0].num_layers == 26 && p.preflight.ranks[1].num_layers == 26 &&
              p.preflight.ranks[0].params[NAM_FAM_M2RNN] > 0 && p.preflight.params[NAM_FAM_MAMBA2] == 0,
              "pre-flight: embedding on pp rank 0, output layer and MTP on the last rank, layers split 26/26", "%s", e.message);
        /* M2RNN per layer at hidden 4096, K 64, V 16, H 51, conv 4: in_proj 4096*(128+1632+51)
           + conv (2K + HV = 944)*4 + 944 + dt/A 102 + W 51*256 + D 816 + norm 816 + out 816*4096 + input norm 4096 */
        want = 4.0 * (4096.0 * 1811 + 944 * 4 + 944 + 102 + 13056 + 816 + 816 + 816.0 * 4096 + 4096);
        CHECK(st == NAM_OK && close_rel(p.preflight.params[NAM_FAM_M2RNN], want), "pre-flight: M2RNN parameters from the reference's shapes", "nam %.17g want %.17g", st ? 0 : p.preflight.params[NAM_FAM_M2RNN], want);
        if (st == NAM_OK) nam_plan_free(&p);
    }
    {   /* per virtual chunk: the layers' share of each rank */
        const char *s[] = { "pattern.map", "R=M", NULL };
        double sum[2] = {0, 0};
        int k, layers = 0;
        st = plan_with(&p, &e, s);
        for (k = 0; st == NAM_OK && k < p.preflight.num_chunks; k++) { sum[p.preflight.chunks[k].pp_rank] += p.preflight.chunks[k].params; layers += p.preflight.chunks[k].num_layers; }
        CHECK(st == NAM_OK && p.preflight.num_chunks == 4 && layers == 52 && p.preflight.chunks[2].vp_stage == 1 && p.preflight.chunks[2].pp_rank == 0 &&
              close_rel(sum[0] + p.preflight.ranks[0].params[NAM_FAM_EMBEDDING], p.preflight.ranks[0].params_total) &&
              /* rank 1 also holds the MTP block AF: attention (4096*128*48 + 32*128*4096)/2 + 4096
                 = 20975616 and MLP 4096*10880*3/2 + 4096 = 66850816 per GPU at tp 2 */
              close_rel(sum[1] + p.preflight.ranks[1].params[NAM_FAM_OUTPUT] + p.preflight.ranks[1].params[NAM_FAM_MTP] + 20975616.0 + 66850816.0, p.preflight.ranks[1].params_total),
              "pre-flight: per virtual chunk, 4 chunks of 13 layers whose params add up to each rank's minus embedding, output and MTP",
              "%s", e.message);
        if (st == NAM_OK) nam_plan_free(&p);
    }
    { const char *s[] = { "pattern.map", "R=M", "preflight.device_memory_gib", "16", NULL };
      st = plan_with(&p, &e, s);
      CHECK(st == NAM_OK && p.preflight.fits == 0, "pre-flight: plan mode keeps a plan that does not fit and says so", "%s", e.message);
      if (st == NAM_OK) nam_plan_free(&p); }
    { const char *s[] = { "recipe.mode", "strict", "pattern.map", "R=G", "pattern.mamba_impl", "mamba2", "preflight.device_memory_gib", "16", NULL };
      expect_plan_err("pre-flight: strict mode refuses a plan whose memory does not fit", s, NAM_ERR_RANGE, "above preflight.device_memory_gib"); }
    { const char *s[] = { "pattern.map", "R=M", "preflight.step_time_s", "10", "preflight.peak_tflops", "1000", NULL };
      st = plan_with(&p, &e, s);
      CHECK(st == NAM_OK && close_rel(p.preflight.mfu, p.preflight.flops_total / (10.0 * 8 * 1000e12)), "pre-flight: MFU from a step time = FLOPs / (time * world * peak)", "%s", e.message);
      if (st == NAM_OK) nam_plan_free(&p); }
    { const char *s[] = { "parallel.distributed_optimizer", "false", NULL };
      expect_plan_arg("--use-distributed-optimizer follows parallel.distributed_optimizer", s, "--use-distributed-optimizer", NULL); }
}

/* ---- nam_args_compare ---------------------------------------------------------------- */
static const nam_cmp_row *cmp_row(const nam_args_cmp *c, const char *flag) {
    int i;
    for (i = 0; i < c->num_rows; i++) if (!strcmp(c->rows[i].flag, flag)) return &c->rows[i];
    return NULL;
}

static void test_compare(void) {
    nam_plan p;
    nam_error e;
    nam_args_cmp c;
    nam_status st;
    char *text = NULL;
    const char *s[] = { "pattern.map", "R=G", "pattern.mamba_impl", "mamba2", NULL };
    const nam_cmp_row *R;
    if (plan_with(&p, &e, s) != NAM_OK) { CHECK(0, "compare: plan", "%s", e.message); return; }
    nam_plan_args_text(&p, &text, &e);
    st = nam_args_compare(&p, text, 0, "self", &c, &e);
    CHECK(st == NAM_OK && c.num_rows == p.num_args + p.num_policy_args && c.count[NAM_CMP_MATCH] == c.num_rows, "compare: nam's own args text against the plan: every flag matches",
          "%s rows %d match %d", e.message, c.num_rows, c.count[0]);
    if (st == NAM_OK) nam_args_cmp_free(&c);
    nam_free(text);
    {
        const char *argv =
            "torchrun --nproc-per-node 8 pretrain_hybrid.py \\\n"
            "  --hybrid-override-pattern \"*EME*EME*EMG*|EME*EME*EMG*E|ME*EME*EMG*EM|E*EME*EMG*EME/*-\" \\\n"
            "  --tensor-model-parallel-size=2 --hidden-size 2048 --hidden-size 4096 \\\n"
            "  --moe-aux-loss-coeff 1e-4 --kv-channels 128 --context-parallel-size 1 \\\n"
            "  --use-rotary-position-embeddings --max-position-embeddings 8192 \\\n"
            "  --lr 3e-4   # not modelled by nam\n";
        st = nam_args_compare(&p, argv, 0, "t.sh", &c, &e);
        CHECK(st == NAM_OK, "compare: a torchrun command line parses", "%s", e.message);
        if (st == NAM_OK) {
            CHECK(c.ignored_words == 4 && !cmp_row(&c, "--nproc-per-node"), "compare: launcher words before the script are ignored", "%d", c.ignored_words);
            R = cmp_row(&c, "--hybrid-layer-pattern");
            CHECK(R && R->verdict == NAM_CMP_MATCH && R->note && strstr(R->note, "renamed"), "compare: --hybrid-override-pattern is the renamed --hybrid-layer-pattern", "%s", R ? nam_cmp_verdict_str(R->verdict) : "no row");
            R = cmp_row(&c, "--tensor-model-parallel-size");
            CHECK(R && R->verdict == NAM_CMP_MATCH && !strcmp(R->other_value, "2"), "compare: --flag=value", "%s", R ? R->other_value : "no row");
            R = cmp_row(&c, "--hidden-size");
            CHECK(R && R->verdict == NAM_CMP_MATCH && R->note, "compare: a flag given twice keeps the last value (argparse)", "%s", R ? nam_cmp_verdict_str(R->verdict) : "no row");
            R = cmp_row(&c, "--moe-aux-loss-coeff");
            CHECK(R && R->verdict == NAM_CMP_MATCH, "compare: numbers compare by value (1e-4 = 0.0001)", "%s", R ? R->nam_value : "no row");
            R = cmp_row(&c, "--position-embedding-type");
            CHECK(R && R->verdict == NAM_CMP_MATCH, "compare: --use-rotary-position-embeddings is --position-embedding-type rope", "%s", R ? nam_cmp_verdict_str(R->verdict) : "no row");
            R = cmp_row(&c, "--max-position-embeddings");
            CHECK(R && R->verdict == NAM_CMP_DIFFERS && !strcmp(R->nam_value, "4096") && !strcmp(R->other_value, "8192"), "compare: differs, with both values", "%s", R ? nam_cmp_verdict_str(R->verdict) : "no row");
            R = cmp_row(&c, "--lr");
            CHECK(R && R->verdict == NAM_CMP_MISSING_IN_NAM && !R->nam_value && !strcmp(R->other_value, "3e-4"), "compare: missing in nam", "%s", R ? nam_cmp_verdict_str(R->verdict) : "no row");
            R = cmp_row(&c, "--num-experts");
            CHECK(R && R->verdict == NAM_CMP_ONLY_IN_NAM && !R->other_value, "compare: only in nam", "%s", R ? nam_cmp_verdict_str(R->verdict) : "no row");
            R = cmp_row(&c, "--mamba-state-dim");
            CHECK(R && R->verdict == NAM_CMP_MATCH && R->note, "compare: nam setting Megatron's default while the other leaves it out matches", "%s", R ? nam_cmp_verdict_str(R->verdict) : "no row");
            R = cmp_row(&c, "--expert-tensor-parallel-size");
            CHECK(R && R->verdict == NAM_CMP_ONLY_IN_NAM, "compare: a derived default (etp = tp = 2) is not nam's etp 1", "%s", R ? nam_cmp_verdict_str(R->verdict) : "no row");
            CHECK(c.count[0] + c.count[1] + c.count[2] + c.count[3] == c.num_rows, "compare: counts add up to the rows", "%d", c.num_rows);
            nam_args_cmp_free(&c);
        }
    }
    st = nam_args_compare(&p, "--hidden-size 4096\n--spec \"a.b\n", 0, "q.txt", &c, &e);
    CHECK(st == NAM_ERR_SYNTAX && e.line == 2 && e.column == 8 && strstr(e.message, "q.txt:2:8"), "compare: an unterminated quote names its line and column", "%s", e.message);
    st = nam_args_compare(&p, "--hidden-size ${H}\n", 0, "v.txt", &c, &e);
    CHECK(st == NAM_ERR_SYNTAX && strstr(e.message, "v.txt:1:15"), "compare: a shell variable is an error, not a silent literal", "%s", e.message);
    st = nam_args_compare(&p, "--hidden-size 40\xc3\xa9" "96\n", 0, "u.txt", &c, &e);
    CHECK(st == NAM_ERR_SYNTAX, "compare: non-ASCII bytes are an error", "%s", e.message);
    nam_plan_free(&p);
}

/* Megatron-LM d98e8a64 theoretical_memory_usage.py: compute_activation_memory (with SP, the
   estimator report_theoretical_memory uses with SP and selective recompute) and
   compute_activation_memory_without_sp, for L transformer layers; written from that file. */
static double megatron_act_sp(double s, double b, double h, double ffn, double L, double pp, double vpp, double m, double tp, double vocab) {
    double a = s * b * h * (18 + 4 * (ffn / h)) * L;                      /* lines 306-314 */
    a += 8 * s * b * pp;                                                  /* 319-321 */
    a += s * b * h * pp;                                                  /* 323-328 */
    if (vpp > 0) a *= 1 + (pp - 1) / (pp * vpp);                          /* 331-344 */
    if (vpp == 0 && pp > 1) a *= (m / pp < 1 ? m / pp : 1);               /* 348-355 */
    if (pp == 1) a += s * b * h * 4 * (1 + vocab / h);                    /* 357-365 */
    return a / tp;
}
static double megatron_act_nosp(double s, double b, double h, double L, double pp, double vpp, double m, double tp, double vocab) {
    double a = s * b * h * (10 + 24 / tp) * L;
    a += 8 * s * b * pp + s * b * h * pp;
    if (vpp > 0) a *= 1 + (pp - 1) / (pp * vpp);
    if (vpp == 0 && pp > 1) a *= (m / pp < 1 ? m / pp : 1);
    if (pp == 1) a += (s * b * vocab / tp + s * b * h) * 2;
    return a * 1.05;
}

static void test_activations(void) {
    nam_plan p;
    nam_error e;
    nam_status st;
    double want;
    {   /* pp 1, SP, selective: "*-" x 26 */
        const char *s[] = { "pattern.text", "AF", "pattern.stages", "1", "parallel.pp", "1", "parallel.ep", "1", "moe.num_experts", "0", "cuda_graph.modules", "attn",
                            "model.vocab_size", "32000", "model.ffn_hidden_size", "14336", "memory.recompute_granularity", "selective", "batch.micro_batch_size", "2",
                            "memory.recompute_modules", "layernorm", NULL };
        st = plan_with(&p, &e, s);
        want = megatron_act_sp(4096, 2, 4096, 14336, 26, 1, 0, 16, 2, 32000);
        CHECK(st == NAM_OK && close_rel(p.preflight.ranks[0].activation_bytes, want), "activations: pp 1 with SP equal Megatron's compute_activation_memory",
              "%s nam %.17g megatron %.17g", st ? e.message : "", st ? 0 : p.preflight.ranks[0].activation_bytes, want);
        CHECK(st == NAM_OK && arg_of(&p, "--recompute-granularity") && !strcmp(arg_of(&p, "--recompute-granularity"), "selective") &&
              arg_of(&p, "--recompute-modules") && !strcmp(arg_of(&p, "--recompute-modules"), "layernorm"), "activations: --recompute-granularity selective with its modules", "%s", e.message);
        if (st == NAM_OK) nam_plan_free(&p);
    }
    {   /* pp 2, two stages (1F1B): rank 0 holds min(m, pp) = 2 microbatches */
        const char *s[] = { "pattern.text", "AF", "pattern.stages", "2", "parallel.ep", "1", "moe.num_experts", "0", "cuda_graph.modules", "attn",
                            "model.vocab_size", "32000", "model.ffn_hidden_size", "14336", "memory.recompute_granularity", "selective", "memory.recompute_modules", "layernorm", NULL };
        st = plan_with(&p, &e, s);
        want = megatron_act_sp(4096, 1, 4096, 14336, 26, 2, 0, 32, 2, 32000);
        CHECK(st == NAM_OK && p.vpp == 0 && close_rel(p.preflight.ranks[0].activation_bytes, want), "activations: 1F1B pp 2, first stage equals Megatron's",
              "%s nam %.17g megatron %.17g", st ? e.message : "", st ? 0 : p.preflight.ranks[0].activation_bytes, want);
        CHECK(st == NAM_OK && p.preflight.ranks[1].in_flight == 1 && p.preflight.ranks[0].in_flight == 2, "activations: the last 1F1B stage holds one microbatch", "%s", e.message);
        if (st == NAM_OK) nam_plan_free(&p);
    }
    {   /* pp 2, four stages: interleaved, vpp 2; depth 48 so every stage holds 6 "*-" pairs */
        const char *s[] = { "pattern.text", "AF", "pattern.depth", "48", "pattern.stages", "4", "parallel.ep", "1", "moe.num_experts", "0", "cuda_graph.modules", "attn",
                            "model.vocab_size", "32000", "model.ffn_hidden_size", "14336", "memory.recompute_granularity", "selective", "memory.recompute_modules", "layernorm", NULL };
        st = plan_with(&p, &e, s);
        want = megatron_act_sp(4096, 1, 4096, 14336, 24, 2, 2, 32, 2, 32000);
        CHECK(st == NAM_OK && p.vpp == 2 && close_rel(p.preflight.ranks[0].activation_bytes, want), "activations: interleaved pp 2 vpp 2, first stage equals Megatron's (penalty 1 + (pp-1)/(pp*vpp))",
              "%s nam %.17g megatron %.17g", st ? e.message : "", st ? 0 : p.preflight.ranks[0].activation_bytes, want);
        if (st == NAM_OK) nam_plan_free(&p);
    }
    {   /* no SP: compute_activation_memory_without_sp (ffn = 4h, where its 10 + 24/tp holds) */
        const char *s[] = { "pattern.text", "AF", "pattern.stages", "1", "parallel.pp", "1", "parallel.ep", "1", "moe.num_experts", "0", "cuda_graph.modules", "attn",
                            "model.vocab_size", "32000", "model.ffn_hidden_size", "16384", "parallel.sequence_parallel", "false", NULL };
        st = plan_with(&p, &e, s);
        want = megatron_act_nosp(4096, 1, 4096, 26, 1, 0, 16, 2, 32000);
        CHECK(st == NAM_OK && close_rel(p.preflight.ranks[0].activation_bytes, want), "activations: without SP equal Megatron's compute_activation_memory_without_sp",
              "%s nam %.17g megatron %.17g", st ? e.message : "", st ? 0 : p.preflight.ranks[0].activation_bytes, want);
        if (st == NAM_OK) nam_plan_free(&p);
    }
    {   /* full recompute keeps layer inputs: far less than none */
        const char *n[] = { "pattern.map", "R=M", NULL };
        const char *f[] = { "pattern.map", "R=M", "memory.recompute_granularity", "full", "memory.recompute_num_layers", "2", "cuda_graph.impl", "none", "cuda_graph.modules", "", NULL };
        nam_plan q;
        st = plan_with(&p, &e, n);
        if (st == NAM_OK) st = plan_with(&q, &e, f);
        CHECK(st == NAM_OK && q.preflight.ranks[0].activation_bytes < 0.5 * p.preflight.ranks[0].activation_bytes &&
              !strcmp(arg_of(&q, "--recompute-method"), "uniform") && !strcmp(arg_of(&q, "--recompute-num-layers"), "2"),
              "activations: full recompute keeps less than none, and emits method and layers", "%s", e.message);
        CHECK(st == NAM_OK && q.preflight.ranks[1].total_bytes == q.preflight.ranks[1].static_bytes + q.preflight.ranks[1].activation_bytes, "activations: every rank's total is static + activations", "%s", e.message);
        if (st == NAM_OK) { nam_plan_free(&p); nam_plan_free(&q); }
    }
    { const char *s[] = { "memory.recompute_granularity", "full", NULL };
      expect_plan_err("full recompute with TE CUDA graphs: refused (Megatron: full_iteration only)", s, NAM_ERR_CONFLICT, "transformer_config.py:2858"); }
    { const char *s[] = { "memory.recompute_granularity", "selective", NULL };
      expect_plan_err("core_attn recompute with graphed attention and default dropout: refused", s, NAM_ERR_CONFLICT, "transformer_config.py:2883"); }
    { const char *s[] = { "memory.recompute_granularity", "selective", "memory.recompute_modules", "moe", NULL };
      expect_plan_err("moe recompute with the moe_router TE graph: refused", s, NAM_ERR_CONFLICT, "transformer_config.py:2868"); }
    { const char *s[] = { "memory.recompute_granularity", "selective", "memory.recompute_modules", "moe_act,layernorm", NULL };
      expect_plan_arg("selective recompute outside the graphed modules: accepted", s, "--recompute-modules", "moe_act layernorm"); }
    { const char *s[] = { "memory.recompute_granularity", "full", "memory.recompute_num_layers", "27", "cuda_graph.impl", "none", "cuda_graph.modules", "", NULL };
      expect_plan_err("full recompute of more layers than a pp rank holds: refused", s, NAM_ERR_RANGE, "transformer_config.py:1919"); }
    {
        nam_recipe r;
        nam_recipe_init(&r, &e);
        st = nam_recipe_set(&r, "memory.recompute_modules", "core_attn,attn", &e);
        CHECK(st == NAM_ERR_RANGE && strstr(e.message, "'attn'"), "recompute modules outside Megatron's list are refused", "%s", e.message);
        nam_recipe_free(&r);
    }
}

/* ---- launch-profile coverage: precision, implementation, schedule, run inputs ------- */
static const char *policy_of(const nam_plan *p, const char *flag) {
    int i;
    for (i = 0; i < p->num_policy_args; i++)
        if (!strcmp(p->policy_args[i].flag, flag)) return p->policy_args[i].value ? p->policy_args[i].value : "";
    return NULL;
}

static void test_policy_args(void) {
    nam_plan p;
    nam_error e;
    nam_status st;
    {
        const char *s[] = { "pattern.map", "R=G", "train.train_iters", "1000", "train.lr", "3e-4", "train.min_lr", "3e-5", "data.data_path", "0.7 /d/a 0.3 /d/b",
                            "data.tokenizer_type", "HuggingFaceTokenizer", "data.save", "/ckpt", "implementation.masked_softmax_fusion", "false",
                            "precision.fp8", "hybrid", "precision.fp8_amax_history_len", "1024", NULL };
        st = plan_with(&p, &e, s);
        CHECK(st == NAM_OK && policy_of(&p, "--train-iters") && !strcmp(policy_of(&p, "--train-iters"), "1000") && !arg_of(&p, "--train-iters") &&
              !strcmp(policy_of(&p, "--lr"), "0.0003") && !strcmp(policy_of(&p, "--min-lr"), "3e-05") && !strcmp(policy_of(&p, "--data-path"), "0.7 /d/a 0.3 /d/b") &&
              !strcmp(policy_of(&p, "--tokenizer-type"), "HuggingFaceTokenizer") && !strcmp(policy_of(&p, "--save"), "/ckpt") && policy_of(&p, "--no-masked-softmax-fusion"),
              "policy: schedule and run inputs are fixed-policy args, not generated ones", "%s", e.message);
        CHECK(st == NAM_OK && !strcmp(arg_of(&p, "--fp8-recipe"), "delayed") && !strcmp(arg_of(&p, "--fp8-amax-history-len"), "1024") && !strcmp(arg_of(&p, "--fp8-amax-compute-algo"), "most_recent"),
              "policy: fp8 recipe and amax settings are generated args with fp8", "%s", e.message);
        if (st == NAM_OK) {
            char *j = NULL;
            CHECK(nam_plan_args_text(&p, &j, &e) == NAM_OK && strstr(j, "# fixed policy: operator choices") &&
                  strstr(j, "--data-path 0.7 /d/a 0.3 /d/b\n") && strstr(j, "# fixed policy") < strstr(j, "--train-iters"), "policy: args text keeps the fixed policy under its own comment", "%s", j ? j : e.message);
            nam_free(j);
            j = NULL;
            CHECK(nam_plan_json(&p, NAM_JSON_LAUNCH, &j, &e) == NAM_OK && strstr(j, "\"launcher_args\": [") && strstr(j, "\"--train-iters\",\"1000\""), "policy: the launch contract carries them as fixed_policy.launcher_args", "%s", j ? j : e.message);
            nam_free(j);
            nam_plan_free(&p);
        }
    }
    { const char *s[] = { "cuda_graph.modules", "attn,mamba,moe", NULL };
      expect_plan_err("capacity: 'moe' graphs without drop-and-pad: refused", s, NAM_ERR_CONFLICT, "transformer_config.py:2839"); }
    { const char *s[] = { "cuda_graph.modules", "attn,mamba,moe", "moe.capacity_factor", "1.25", "moe.pad_to_capacity", "true", NULL };
      expect_plan_arg("capacity: 'moe' graphs with capacity 1.25 and padding: accepted", s, "--moe-expert-capacity-factor", "1.25"); }
    { const char *s[] = { "moe.pad_to_capacity", "true", NULL };
      expect_plan_err("capacity: padding without a capacity factor: refused", s, NAM_ERR_CONFLICT, "transformer_config.py:1862"); }
    { const char *s[] = { "moe.capacity_factor", "1.0", "moe.load_balancing", "sinkhorn", "moe.aux_loss_coeff", "0", NULL };
      expect_plan_err("capacity: with sinkhorn balancing: refused", s, NAM_ERR_CONFLICT, "transformer_config.py:1836"); }
    { const char *s[] = { "moe.capacity_factor", "1.0", NULL };
      expect_plan_err("capacity: moe_preprocess graph with a capacity under alltoall: refused", s, NAM_ERR_CONFLICT, "transformer_config.py:2846"); }
    {   /* padded capacity raises the MoE activations by the factor */
        const char *a[] = { "pattern.map", "R=G", "cuda_graph.modules", "attn,mamba", NULL };
        const char *b[] = { "pattern.map", "R=G", "cuda_graph.modules", "attn,mamba", "moe.capacity_factor", "2", "moe.pad_to_capacity", "true", NULL };
        nam_plan q;
        st = plan_with(&p, &e, a);
        if (st == NAM_OK) st = plan_with(&q, &e, b);
        CHECK(st == NAM_OK && q.preflight.ranks[0].activation_bytes > p.preflight.ranks[0].activation_bytes, "capacity: padded expert inputs raise the activation estimate", "%s", e.message);
        if (st == NAM_OK) { nam_plan_free(&p); nam_plan_free(&q); }
    }
    { const char *s[] = { "data.split", "969,30,1", "data.mock_data", "true", NULL };
      st = plan_with(&p, &e, s);
      CHECK(st == NAM_OK && !strcmp(policy_of(&p, "--split"), "969,30,1") && policy_of(&p, "--mock-data"), "policy: --split and --mock-data", "%s", e.message);
      if (st == NAM_OK) nam_plan_free(&p); }
    { const char *s[] = { "implementation.mla_down_proj_fusion", "true", NULL };
      expect_plan_err("policy: MLA down-projection fusion without MLA: refused", s, NAM_ERR_CONFLICT, "arguments.py:1977"); }
    { const char *s[] = { "implementation.moe_shared_expert_overlap", "true", "moe.dispatcher", "allgather", NULL };
      expect_plan_err("policy: shared-expert overlap with the allgather dispatcher: refused", s, NAM_ERR_CONFLICT, "transformer_config.py:1820"); }
    { const char *s[] = { "implementation.moe_shared_expert_overlap", "true", "moe.shared_expert_size", "0", NULL };
      expect_plan_err("policy: shared-expert overlap without a shared expert: refused", s, NAM_ERR_CONFLICT, "shared expert"); }
    { const char *s[] = { "train.lr", "1e-4", "train.min_lr", "1e-3", NULL };
      expect_plan_err("policy: min_lr above lr: refused", s, NAM_ERR_RANGE, "arguments.py:1359"); }
    { const char *s[] = { "moe.dispatcher", "flex", "implementation.moe_flex_backend", "hybridep", NULL };
      st = plan_with(&p, &e, s);
      CHECK(st == NAM_OK && !strcmp(policy_of(&p, "--moe-flex-dispatcher-backend"), "hybridep"), "policy: the flex backend goes with the flex dispatcher", "%s", e.message);
      if (st == NAM_OK) nam_plan_free(&p); }
    {
        nam_recipe r;
        nam_recipe_init(&r, &e);
        st = nam_recipe_set(&r, "data.tokenizer_type", "BPE", &e);
        CHECK(st == NAM_ERR_RANGE && strstr(e.message, "'BPE'"), "policy: an unknown tokenizer type is refused naming it", "%s", e.message);
        st = nam_recipe_set(&r, "implementation.attention_backend", "local", &e);
        CHECK(st == NAM_ERR_RANGE, "policy: attention backend local (needs --spec local) is not offered", "%s", e.message);
        nam_recipe_free(&r);
    }
}

int main(void) {
    test_pattern();
    test_megatron();
    test_ratios();
    test_recipe();
    test_translate();
    test_megatron_rules();
    test_seams();
    test_preflight();
    test_compare();
    test_activations();
    test_policy_args();
    test_ranks();
    test_misc();
    return test_done("test_core");
}
