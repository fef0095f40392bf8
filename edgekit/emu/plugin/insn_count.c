/*
 * insn_count: a qemu TCG plugin that counts guest instructions between two marks.
 *
 * The guest marks its measured window with two unused syscall numbers: 4093 starts it, 4094 ends it
 * and appends one line to the file given by `out=PATH`: first the number of guest instructions
 * executed in between by all vCPUs (all guest threads), then, space-separated, the share of each vCPU
 * that executed any instruction in the window, in vCPU order (readers take the first field as the
 * total; the others show how the work split between threads), then `;` and the window's instruction mix
 * over all threads, by AArch64 encoding group: SIMD/FP data processing, SIMD/FP loads and stores, other
 * loads and stores, branches, other (integer data processing, system). Counting adds each translation block's
 * instruction count when the block executes, into a per-vCPU slot, so threads never race on a
 * counter; with one thread the count is exactly the same on every run.
 *
 * With cache levels given (l1=SIZE:WAYS, l2=..., optionally l3=..., sizes in bytes) every guest load and store
 * also goes through a simulated data cache hierarchy (set-associative, LRU, 64-byte lines, write-allocate, virtual
 * addresses; each vCPU its own, so threads never race on it), and the line ends with `;` and the window's
 * accesses and misses at each level: an idealised hierarchy of the board's sizes, not the board's counters. With
 * pf=1 each level also has a stream prefetcher (a miss next to a recent miss or prefetch fetches the next
 * PF_DEGREE lines in that direction into that level and the ones below; edgekit passes it with the boards'
 * caches: the Cortex-A72 and A76 prefetch streams); without it there is none. Without cache levels no memory
 * callback is registered (counting stays as fast as before).
 *
 * With blocks=PATH each translated block also counts its own executions, and every end mark appends to PATH a
 * section: a line `#`, then the window's executed blocks, one per line: hex address, executions in the window, then
 * the block's instruction words in hex (edgekit/emu/plugin/cycles.py times them with llvm-mca's model of the core);
 * a block translated twice has two lines. Section i is the window of out's line i (both appended at the mark). A
 * window more than one thread ran in has an empty section (its blocks' executions are the threads' together).
 *
 * Usage: qemu-aarch64 -plugin insn_count.so,out=/tmp/counts.txt[,l1=32768:2,l2=1048576:16[,pf=1]][,blocks=PATH] \
 *            -cpu cortex-a72 ...
 * Built by edgekit/emu/plugin/build.py against qemu-plugin.h from Debian's qemu source package.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <qemu-plugin.h>

QEMU_PLUGIN_EXPORT int qemu_plugin_version = QEMU_PLUGIN_VERSION;

#define MARK_START 4093
#define MARK_END 4094
#define MAX_VCPUS 1024

#define N_CLASSES 5 /* simd_fp, simd_ldst, ldst, branch, other */

/* One counter set per vCPU, each on its own cache lines so threads do not share a line. */
typedef struct {
    uint64_t insns;
    uint64_t cls[N_CLASSES];
    char pad[16];
} slot_t;

/* blocks=PATH: one translated block's address, instruction words and executions (its own counter, atomic). */
typedef struct block {
    uint64_t vaddr;
    uint64_t n;
    uint32_t *words;
    uint64_t execs, start;
    struct block *next;
} block_t;

/* What one translation block adds when it executes. */
typedef struct {
    uint64_t insns;
    uint64_t cls[N_CLASSES];
    block_t *block; /* blocks=PATH only */
} tb_counts_t;

static const char *blocks_path;
static block_t *blocks;
static pthread_mutex_t blocks_lock = PTHREAD_MUTEX_INITIALIZER;

#define MAX_LEVELS 3
#define LINE_SHIFT 6
#define CACHE_VCPUS 64 /* vCPUs with simulated caches; others are not simulated (counted as such below) */

#define PF_RECENT 16 /* the stream prefetcher's memory of recent miss lines, per level */
#define PF_DEGREE 4  /* lines fetched ahead once a stream is seen */

typedef struct {
    uint64_t sets, ways;
    uint64_t *tags; /* sets x ways; line + 1, 0 = empty */
    uint64_t *ages; /* sets x ways: the clock at last use */
    uint64_t clock;
    uint64_t recent[PF_RECENT]; /* line + 1 of recent misses and prefetches (pf=1 only) */
    int recent_pos;
} cache_t;

typedef struct {
    cache_t level[MAX_LEVELS];
    uint64_t accesses, misses[MAX_LEVELS];
    uint64_t start_accesses, start_misses[MAX_LEVELS];
    int ready;
    char pad[64];
} hierarchy_t;

static uint64_t level_size[MAX_LEVELS], level_ways[MAX_LEVELS];
static int n_levels;
static int prefetch; /* pf=1: a stream prefetcher at each level */
static hierarchy_t hier[CACHE_VCPUS];
static uint64_t unsimulated; /* accesses of vCPUs beyond CACHE_VCPUS */

static slot_t slots[MAX_VCPUS];
static slot_t slot_start_cls[MAX_VCPUS];
static uint64_t overflow; /* vCPUs beyond MAX_VCPUS: atomic, slower, still exact */
static uint64_t overflow_start;
static uint64_t slot_start[MAX_VCPUS];
static const char *out_path;

static void on_tb_exec(unsigned int vcpu, void *udata)
{
    const tb_counts_t *tb = udata;
    if (vcpu < MAX_VCPUS) {
        slot_t *slot = &slots[vcpu];
        __atomic_store_n(&slot->insns, slot->insns + tb->insns, __ATOMIC_RELAXED);
        for (int c = 0; c < N_CLASSES; c++) {
            __atomic_store_n(&slot->cls[c], slot->cls[c] + tb->cls[c], __ATOMIC_RELAXED);
        }
    } else {
        __atomic_fetch_add(&overflow, tb->insns, __ATOMIC_RELAXED);
    }
    if (tb->block != NULL) {
        __atomic_fetch_add(&tb->block->execs, 1, __ATOMIC_RELAXED);
    }
}

static int hierarchy_init(hierarchy_t *h)
{
    for (int i = 0; i < n_levels; i++) {
        cache_t *c = &h->level[i];
        c->ways = level_ways[i];
        c->sets = level_size[i] / 64 / level_ways[i];
        c->tags = calloc(c->sets * c->ways, sizeof(uint64_t));
        c->ages = calloc(c->sets * c->ways, sizeof(uint64_t));
        if (c->tags == NULL || c->ages == NULL) {
            return -1;
        }
    }
    h->ready = 1;
    return 0;
}

/* 1 on a hit; on a miss the least recently used way of the set takes the line. */
static int cache_access(cache_t *c, uint64_t line)
{
    uint64_t set = line % c->sets;
    uint64_t *tags = c->tags + set * c->ways, *ages = c->ages + set * c->ways;
    uint64_t victim = 0;
    c->clock++;
    for (uint64_t w = 0; w < c->ways; w++) {
        if (tags[w] == line + 1) {
            ages[w] = c->clock;
            return 1;
        }
        if (ages[w] < ages[victim]) {
            victim = w;
        }
    }
    tags[victim] = line + 1;
    ages[victim] = c->clock;
    return 0;
}

static int pf_seen(const cache_t *c, uint64_t line)
{
    for (int k = 0; k < PF_RECENT; k++) {
        if (c->recent[k] == line + 1) {
            return 1;
        }
    }
    return 0;
}

static void pf_remember(cache_t *c, uint64_t line)
{
    c->recent[c->recent_pos] = line + 1;
    c->recent_pos = (c->recent_pos + 1) % PF_RECENT;
}

/* pf=1: a miss at level i next to a recent miss or prefetch (line - 1 or + 1) is a stream: the next PF_DEGREE lines
 * in its direction are fetched into level i and every level below it (not counted as accesses or misses). */
static void pf_on_miss(hierarchy_t *h, int i, uint64_t line)
{
    cache_t *c = &h->level[i];
    int up = pf_seen(c, line - 1), down = !up && pf_seen(c, line + 1);
    pf_remember(c, line);
    if (!up && !down) {
        return;
    }
    for (uint64_t k = 1; k <= PF_DEGREE; k++) {
        uint64_t next = up ? line + k : line - k;
        for (int j = i; j < n_levels; j++) {
            cache_access(&h->level[j], next);
        }
        pf_remember(c, next);
    }
}

static void on_mem(unsigned int vcpu, qemu_plugin_meminfo_t info, uint64_t vaddr, void *udata)
{
    if (vcpu >= CACHE_VCPUS) {
        __atomic_fetch_add(&unsimulated, 1, __ATOMIC_RELAXED);
        return;
    }
    hierarchy_t *h = &hier[vcpu]; /* only this vCPU's thread touches it */
    if (!h->ready && hierarchy_init(h) != 0) {
        return;
    }
    uint64_t line = vaddr >> LINE_SHIFT;
    __atomic_store_n(&h->accesses, h->accesses + 1, __ATOMIC_RELAXED);
    for (int i = 0; i < n_levels; i++) {
        if (cache_access(&h->level[i], line)) {
            break;
        }
        __atomic_store_n(&h->misses[i], h->misses[i] + 1, __ATOMIC_RELAXED);
        if (prefetch) {
            pf_on_miss(h, i, line);
        }
    }
}

/* The AArch64 encoding group of one instruction (Arm ARM, "A64 instruction set encoding", op0 = bits 28:25). */
static int insn_class(uint32_t word)
{
    uint32_t op0 = (word >> 25) & 0xf;
    if ((op0 & 0x7) == 0x7) {
        return 0; /* x111: SIMD and floating-point data processing */
    }
    if ((op0 & 0x5) == 0x4) {
        return (word >> 26) & 1 ? 1 : 2; /* x1x0: loads and stores; bit 26 (V) set for SIMD/FP registers */
    }
    if ((op0 & 0xe) == 0xa) {
        return 3; /* 101x: branches, exceptions, system */
    }
    return 4; /* data processing (immediate, register), reserved */
}

static void on_tb_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    size_t n = qemu_plugin_tb_n_insns(tb);
    tb_counts_t *counts = calloc(1, sizeof(*counts)); /* lives as long as the translated block may run */
    if (counts == NULL) {
        return;
    }
    counts->insns = n;
    for (size_t i = 0; i < n; i++) {
        const struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        uint32_t word = 0;
        memcpy(&word, qemu_plugin_insn_data(insn), sizeof(word));
        counts->cls[insn_class(word)]++;
    }
    if (blocks_path != NULL) {
        block_t *b = calloc(1, sizeof(*b));
        if (b != NULL && (b->words = calloc(n ? n : 1, sizeof(uint32_t))) != NULL) {
            b->vaddr = qemu_plugin_tb_vaddr(tb);
            b->n = n;
            for (size_t i = 0; i < n; i++) {
                memcpy(&b->words[i], qemu_plugin_insn_data(qemu_plugin_tb_get_insn(tb, i)), sizeof(uint32_t));
            }
            pthread_mutex_lock(&blocks_lock);
            b->next = blocks;
            blocks = b;
            pthread_mutex_unlock(&blocks_lock);
            counts->block = b;
        }
    }
    qemu_plugin_register_vcpu_tb_exec_cb(tb, on_tb_exec, QEMU_PLUGIN_CB_NO_REGS, counts);
    if (n_levels > 0) {
        for (size_t i = 0; i < n; i++) {
            qemu_plugin_register_vcpu_mem_cb(qemu_plugin_tb_get_insn(tb, i), on_mem, QEMU_PLUGIN_CB_NO_REGS,
                                             QEMU_PLUGIN_MEM_RW, NULL);
        }
    }
}

static void on_syscall(qemu_plugin_id_t id, unsigned int vcpu, int64_t num, uint64_t a1, uint64_t a2,
                       uint64_t a3, uint64_t a4, uint64_t a5, uint64_t a6, uint64_t a7, uint64_t a8)
{
    if (num == MARK_START) {
        for (int i = 0; i < MAX_VCPUS; i++) {
            slot_start[i] = __atomic_load_n(&slots[i].insns, __ATOMIC_RELAXED);
            for (int c = 0; c < N_CLASSES; c++) {
                slot_start_cls[i].cls[c] = __atomic_load_n(&slots[i].cls[c], __ATOMIC_RELAXED);
            }
        }
        overflow_start = __atomic_load_n(&overflow, __ATOMIC_RELAXED);
        pthread_mutex_lock(&blocks_lock);
        for (block_t *b = blocks; b != NULL; b = b->next) {
            b->start = __atomic_load_n(&b->execs, __ATOMIC_RELAXED);
        }
        pthread_mutex_unlock(&blocks_lock);
        for (int v = 0; v < CACHE_VCPUS; v++) {
            hier[v].start_accesses = __atomic_load_n(&hier[v].accesses, __ATOMIC_RELAXED);
            for (int i = 0; i < n_levels; i++) {
                hier[v].start_misses[i] = __atomic_load_n(&hier[v].misses[i], __ATOMIC_RELAXED);
            }
        }
    } else if (num == MARK_END) {
        /* Other threads (a pool's spinning workers) still run while this one writes the line: each share is
         * read once and the total is their sum, so the line always adds up. */
        uint64_t shares[MAX_VCPUS];
        uint64_t delta = __atomic_load_n(&overflow, __ATOMIC_RELAXED) - overflow_start;
        for (int i = 0; i < MAX_VCPUS; i++) {
            shares[i] = __atomic_load_n(&slots[i].insns, __ATOMIC_RELAXED) - slot_start[i];
            delta += shares[i];
        }
        FILE *f = fopen(out_path, "a");
        if (f == NULL) {
            fprintf(stderr, "insn_count: cannot open %s\n", out_path);
            return;
        }
        fprintf(f, "%llu", (unsigned long long)delta);
        int active = 0; /* vCPUs that ran in the window */
        for (int i = 0; i < MAX_VCPUS; i++) {
            if (shares[i] != 0) {
                fprintf(f, " %llu", (unsigned long long)shares[i]);
                active++;
            }
        }
        fprintf(f, " ;");
        for (int c = 0; c < N_CLASSES; c++) {
            uint64_t sum = 0;
            for (int i = 0; i < MAX_VCPUS; i++) {
                sum += __atomic_load_n(&slots[i].cls[c], __ATOMIC_RELAXED) - slot_start_cls[i].cls[c];
            }
            fprintf(f, " %llu", (unsigned long long)sum);
        }
        if (n_levels > 0) { /* ; accesses, then the misses of each level */
            uint64_t acc = 0, miss[MAX_LEVELS] = {0};
            for (int v = 0; v < CACHE_VCPUS; v++) {
                acc += __atomic_load_n(&hier[v].accesses, __ATOMIC_RELAXED) - hier[v].start_accesses;
                for (int i = 0; i < n_levels; i++) {
                    miss[i] += __atomic_load_n(&hier[v].misses[i], __ATOMIC_RELAXED) - hier[v].start_misses[i];
                }
            }
            fprintf(f, " ; %llu", (unsigned long long)acc);
            for (int i = 0; i < n_levels; i++) {
                fprintf(f, " %llu", (unsigned long long)miss[i]);
            }
        }
        fprintf(f, "\n");
        fclose(f); /* closes and flushes: the guest reads the line right after the mark */
        if (blocks_path != NULL) { /* the window's executed blocks: vaddr, executions, words */
            FILE *bf = fopen(blocks_path, "a");
            if (bf != NULL) {
                fprintf(bf, "#\n");
                pthread_mutex_lock(&blocks_lock);
                for (block_t *b = active > 1 ? NULL : blocks; b != NULL; b = b->next) {
                    uint64_t runs = __atomic_load_n(&b->execs, __ATOMIC_RELAXED) - b->start;
                    if (runs == 0) {
                        continue;
                    }
                    fprintf(bf, "%llx %llu", (unsigned long long)b->vaddr, (unsigned long long)runs);
                    for (uint64_t i = 0; i < b->n; i++) {
                        fprintf(bf, " %08x", b->words[i]);
                    }
                    fprintf(bf, "\n");
                }
                pthread_mutex_unlock(&blocks_lock);
                fclose(bf);
            }
        }
    }
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc,
                                           char **argv)
{
    for (int i = 0; i < argc; i++) {
        if (strncmp(argv[i], "out=", 4) == 0) {
            out_path = argv[i] + 4;
        } else if (strncmp(argv[i], "blocks=", 7) == 0) {
            blocks_path = argv[i] + 7;
        } else if (strcmp(argv[i], "pf=1") == 0) {
            prefetch = 1;
        } else if (argv[i][0] == 'l' && argv[i][1] >= '1' && argv[i][1] <= '3' && argv[i][2] == '=') {
            unsigned long long size = 0, ways = 0;
            if (argv[i][1] - '1' != n_levels || sscanf(argv[i] + 3, "%llu:%llu", &size, &ways) != 2 || ways == 0 ||
                size / 64 / ways == 0) {
                fprintf(stderr, "insn_count: bad or out-of-order cache level %s (l1=SIZE:WAYS, then l2, l3)\n",
                        argv[i]);
                return 1;
            }
            level_size[n_levels] = size;
            level_ways[n_levels] = ways;
            n_levels++;
        }
    }
    if (out_path == NULL || out_path[0] == '\0') {
        fprintf(stderr, "insn_count: missing argument out=PATH\n");
        return 1;
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_tb_trans);
    qemu_plugin_register_vcpu_syscall_cb(id, on_syscall);
    return 0;
}
