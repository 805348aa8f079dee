/* A plugin written in C (tests/it/plugin.rs): the ABI of core/src/plugin/abi.rs, by hand.
 * Built as a shared library; with -DNO_SYMBOL it exports no declaration, and -DMAGIC=,
 * -DABI=, -DSIZE= make a declaration the host must refuse; with -DUNDEFINED it needs a
 * function nothing defines (loading it with RTLD_NOW fails, naming the symbol); with
 * -DBLOCK_IN_CONSTRUCTOR its constructor writes the pid to the file $PLUGIN_C_PID_FILE names
 * and then blocks forever (loading it never returns). As is, validate accepts anything and run
 * logs one line through the host and succeeds. */
#define _POSIX_C_SOURCE 200809L
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct nonstop_str { const char *ptr; size_t len; };
struct nonstop_host {
    void *ctx;
    void (*beat)(void *ctx);
    bool (*stop_requested)(void *ctx);
    void (*log)(void *ctx, struct nonstop_str line);
    void (*fail)(void *ctx, struct nonstop_str path, struct nonstop_str message);
};
typedef int32_t (*nonstop_entry)(struct nonstop_str args, const struct nonstop_host *host);
struct nonstop_plugin {
    uint64_t magic;
    uint32_t abi_version;
    uint32_t size;
    struct nonstop_str name, version, description, sdk_version;
    nonstop_entry validate, run;
};

#ifndef MAGIC
#define MAGIC 0x6e6967756c70736eULL /* "nsplugin" read as a little-endian u64 */
#endif
#ifndef ABI
#define ABI 1
#endif
#ifndef SIZE
#define SIZE sizeof(struct nonstop_plugin)
#endif

#define STR(s) {s, sizeof(s) - 1}

#ifdef UNDEFINED
void nonstop_test_no_such_function(void);
#endif

#ifdef BLOCK_IN_CONSTRUCTOR
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
__attribute__((constructor)) static void block(void) {
    const char *file = getenv("PLUGIN_C_PID_FILE");
    if (file) {
        FILE *f = fopen(file, "w");
        if (f) {
            fprintf(f, "%d\n", (int)getpid());
            fclose(f);
        }
    }
    for (;;) {
        pause();
    }
}
#endif

__attribute__((unused)) static int32_t validate(struct nonstop_str args, const struct nonstop_host *host) {
    (void)args;
    (void)host;
    return 0;
}

__attribute__((unused)) static int32_t run(struct nonstop_str args, const struct nonstop_host *host) {
    (void)args;
#ifdef UNDEFINED
    nonstop_test_no_such_function();
#endif
    struct nonstop_str line = STR("plugin_c: hello from C");
    host->log(host->ctx, line);
    host->beat(host->ctx);
    return 0;
}

#ifndef NO_SYMBOL
const struct nonstop_plugin NONSTOP_PLUGIN = {
    MAGIC, ABI, (uint32_t)SIZE, STR("plugin_c"), STR("1.0.0"), STR("a plugin written in C"),
    STR("none"), validate, run,
};
#else
const int NOT_A_PLUGIN = 1;
#endif
