/*
 * ncbench: the containers benchmark's work (netkit-core/benches/containers) done from C
 * through libnetkit's C API, call for call as tools/vnbench does it with vishvananda/netlink
 * (and as tools/nkgobench does it with netkit's Go package), so the bench can put the C ABI's
 * cost next to the same calls made from Rust (its method "netkit calls").
 *
 *   ncbench setup    PREFIX N full|links   (run inside the bench's host namespace)
 *   ncbench teardown PREFIX N
 *
 * For container i (0 <= i < N), in vnbench's order:
 *  1. named namespace PREFIX<i> (netkit_netns_create);
 *  2. veth vb<i> up, its peer eth0 born in the container (netkit_link_add_veth);
 *  3. (full) 10.200.x.y+1/30 on vb<i> (netkit_link_get + netkit_addr_add_index);
 *  4. a handle in the container (netkit_handle_open): lo up, eth0 up
 *     (netkit_link_get + netkit_link_set_up each);
 *  5. (full) 10.200.x.y+2/30 on eth0 and the default route via the host end.
 * Teardown: netkit_link_get + netkit_link_del of every vb<i>, then netkit_netns_delete of
 * every name. Prints "ns=<nanoseconds>", the time of the loop alone (not the first call into
 * libnetkit, which starts its runtime: the host handle is opened before the clock).
 *
 * Build: tools/ncbench/build.sh OUT (links target/release/libnetkit.a).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "netkit.h"

static void fail(const char *what, const char *obj, int status, netkit_error *err) {
    fprintf(stderr, "ncbench: %s %s: %s: %s\n", what, obj, netkit_status_name(status),
            err ? netkit_error_message(err) : "(no details)");
    netkit_error_free(err);
    exit(1);
}

#define CHECK(what, obj, call)                                                             \
    do {                                                                                   \
        netkit_error *err_ = NULL;                                                         \
        int status_ = (call);                                                              \
        if (status_ != NETKIT_OK)                                                          \
            fail(what, obj, status_, err_);                                                \
    } while (0)
#define E (&err_)

/* The /30 of container i in 10.200.0.0/16: .1 the host end, .2 eth0. */
static netkit_prefix addr30(int i, int host) {
    uint32_t v = (10u << 24) | (200u << 16) | (uint32_t)(4 * i) | (host ? 1u : 2u);
    netkit_prefix p;
    memset(&p, 0, sizeof p);
    p.ip.family = NETKIT_AF_INET;
    p.ip.addr[0] = (uint8_t)(v >> 24);
    p.ip.addr[1] = (uint8_t)(v >> 16);
    p.ip.addr[2] = (uint8_t)(v >> 8);
    p.ip.addr[3] = (uint8_t)v;
    p.len = 30;
    return p;
}

/* netkit_link_get of `name`, freed at once: the lookup vnbench's LinkByName makes. */
static uint32_t link_index(netkit_handle *h, const char *name) {
    netkit_link *l = NULL;
    CHECK("link", name, netkit_link_get(h, name, &l, E));
    uint32_t index = l->index;
    netkit_link_free(l);
    return index;
}

static netkit_handle *host_handle(void) {
    netkit_netns *ns = NULL;
    netkit_handle *h = NULL;
    CHECK("open", "the host namespace", netkit_netns_open_pid((uint32_t)getpid(), &ns, E));
    CHECK("handle in", "the host namespace", netkit_handle_open(ns, &h, E));
    netkit_netns_free(ns);
    return h;
}

static void setup(netkit_handle *host, const char *prefix, int n, int full) {
    for (int i = 0; i < n; i++) {
        char name[128], vb[32];
        snprintf(name, sizeof name, "%s%d", prefix, i);
        snprintf(vb, sizeof vb, "vb%d", i);
        netkit_netns *ns = NULL;
        CHECK("netns", name, netkit_netns_create(name, &ns, E));

        netkit_veth_config veth;
        memset(&veth, 0, sizeof veth);
        veth.name = vb;
        veth.peer_name = "eth0";
        veth.peer_netns = ns;
        veth.up = true;
        CHECK("veth", vb, netkit_link_add_veth(host, &veth, NULL, E));
        netkit_prefix host_ip = addr30(i, 1), ctr_ip = addr30(i, 0);
        if (full) {
            uint32_t index = link_index(host, vb);
            CHECK("address on", vb, netkit_addr_add_index(host, index, &host_ip, 0, E));
        }

        netkit_handle *h = NULL;
        CHECK("handle in", name, netkit_handle_open(ns, &h, E));
        const char *devs[2] = {"lo", "eth0"};
        for (int d = 0; d < 2; d++) {
            uint32_t index = link_index(h, devs[d]);
            CHECK("up", devs[d], netkit_link_set_up(h, devs[d], E));
            if (full && d == 1) {
                CHECK("address in", name, netkit_addr_add_index(h, index, &ctr_ip, 0, E));
                netkit_route_config route;
                memset(&route, 0, sizeof route);
                route.dst.ip.family = NETKIT_AF_INET; /* 0.0.0.0/0: default */
                route.gateway = host_ip.ip;
                route.dev_index = index;
                CHECK("default route in", name, netkit_route_add(h, &route, E));
            }
        }
        netkit_handle_close(h);
        netkit_netns_free(ns);
    }
}

static void teardown(netkit_handle *host, const char *prefix, int n) {
    for (int i = 0; i < n; i++) {
        char vb[32];
        snprintf(vb, sizeof vb, "vb%d", i);
        link_index(host, vb);
        CHECK("delete", vb, netkit_link_del(host, vb, E));
    }
    for (int i = 0; i < n; i++) {
        char name[128];
        snprintf(name, sizeof name, "%s%d", prefix, i);
        CHECK("delete netns", name, netkit_netns_delete(name, E));
    }
}

int main(int argc, char **argv) {
    if (argc < 4)
        fail("usage:", "ncbench setup PREFIX N full|links | ncbench teardown PREFIX N", NETKIT_E_INVALID, NULL);
    int n = atoi(argv[3]);
    if (n < 1)
        fail("N", argv[3], NETKIT_E_INVALID, NULL);
    /* The library's first call starts its runtime and threads: not part of the work (the
     * bench's Rust methods run warm), so the handle is opened before the clock starts. */
    netkit_handle *host = host_handle();
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (strcmp(argv[1], "setup") == 0) {
        if (argc != 5 || (strcmp(argv[4], "full") != 0 && strcmp(argv[4], "links") != 0))
            fail("setup needs", "full or links", NETKIT_E_INVALID, NULL);
        setup(host, argv[2], n, strcmp(argv[4], "full") == 0);
    } else if (strcmp(argv[1], "teardown") == 0) {
        teardown(host, argv[2], n);
    } else {
        fail("unknown phase", argv[1], NETKIT_E_INVALID, NULL);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    netkit_handle_close(host);
    printf("ns=%lld\n", (long long)(t1.tv_sec - t0.tv_sec) * 1000000000LL + (t1.tv_nsec - t0.tv_nsec));
    return 0;
}
