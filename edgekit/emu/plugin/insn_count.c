/*
 * insn_count: a qemu TCG plugin that counts guest instructions between two marks.
 *
 * The guest marks its measured window with two unused syscall numbers: 4093 starts it, 4094 ends it
 * and appends one line to the file given by `out=PATH`: first the number of guest instructions
 * executed in between by all vCPUs (all guest threads), then, space-separated, the share of each vCPU
 * that executed any instruction in the window, in vCPU order (readers take the first field as the
 * total; the others show how the work split between threads). Counting adds each translation block's
 * instruction count when the block executes, into a per-vCPU slot, so threads never race on a
 * counter; with one thread the count is exactly the same on every run.
 *
 * Usage: qemu-aarch64 -plugin insn_count.so,out=/tmp/counts.txt -cpu cortex-a72 -L SYSROOT prog
 * Built by edgekit/emu/plugin/build.py against qemu-plugin.h from Debian's qemu source package.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <qemu-plugin.h>

QEMU_PLUGIN_EXPORT int qemu_plugin_version = QEMU_PLUGIN_VERSION;

#define MARK_START 4093
#define MARK_END 4094
#define MAX_VCPUS 1024

/* One counter per vCPU, each on its own cache line so threads do not share a line. */
typedef struct {
    uint64_t insns;
    char pad[56];
} slot_t;

static slot_t slots[MAX_VCPUS];
static uint64_t overflow; /* vCPUs beyond MAX_VCPUS: atomic, slower, still exact */
static uint64_t window_start;
static uint64_t slot_start[MAX_VCPUS];
static const char *out_path;

static uint64_t total_insns(void)
{
    uint64_t sum = __atomic_load_n(&overflow, __ATOMIC_RELAXED);
    for (int i = 0; i < MAX_VCPUS; i++) {
        sum += __atomic_load_n(&slots[i].insns, __ATOMIC_RELAXED);
    }
    return sum;
}

static void on_tb_exec(unsigned int vcpu, void *udata)
{
    uint64_t n = (uint64_t)(uintptr_t)udata;
    if (vcpu < MAX_VCPUS) {
        __atomic_store_n(&slots[vcpu].insns, slots[vcpu].insns + n, __ATOMIC_RELAXED);
    } else {
        __atomic_fetch_add(&overflow, n, __ATOMIC_RELAXED);
    }
}

static void on_tb_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    uintptr_t n = qemu_plugin_tb_n_insns(tb);
    qemu_plugin_register_vcpu_tb_exec_cb(tb, on_tb_exec, QEMU_PLUGIN_CB_NO_REGS, (void *)n);
}

static void on_syscall(qemu_plugin_id_t id, unsigned int vcpu, int64_t num, uint64_t a1, uint64_t a2,
                       uint64_t a3, uint64_t a4, uint64_t a5, uint64_t a6, uint64_t a7, uint64_t a8)
{
    if (num == MARK_START) {
        for (int i = 0; i < MAX_VCPUS; i++) {
            slot_start[i] = __atomic_load_n(&slots[i].insns, __ATOMIC_RELAXED);
        }
        window_start = total_insns();
    } else if (num == MARK_END) {
        uint64_t delta = total_insns() - window_start;
        FILE *f = fopen(out_path, "a");
        if (f == NULL) {
            fprintf(stderr, "insn_count: cannot open %s\n", out_path);
            return;
        }
        fprintf(f, "%llu", (unsigned long long)delta);
        for (int i = 0; i < MAX_VCPUS; i++) {
            uint64_t share = __atomic_load_n(&slots[i].insns, __ATOMIC_RELAXED) - slot_start[i];
            if (share != 0) {
                fprintf(f, " %llu", (unsigned long long)share);
            }
        }
        fprintf(f, "\n");
        fclose(f); /* closes and flushes: the guest reads the line right after the mark */
    }
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc,
                                           char **argv)
{
    for (int i = 0; i < argc; i++) {
        if (strncmp(argv[i], "out=", 4) == 0) {
            out_path = argv[i] + 4;
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
