/* A plugin written in C (tests/it/plugin.rs): the ABI of core/src/plugin/abi.rs, by hand.
 * Built as a shared library; with -DNO_SYMBOL it exports no declaration, and -DMAGIC=,
 * -DABI=, -DSIZE= make a declaration the host must refuse. As is, validate accepts anything
 * and run logs one line through the host and succeeds. */
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

__attribute__((unused)) static int32_t validate(struct nonstop_str args, const struct nonstop_host *host) {
    (void)args;
    (void)host;
    return 0;
}

__attribute__((unused)) static int32_t run(struct nonstop_str args, const struct nonstop_host *host) {
    (void)args;
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
