/*
 * Two network namespaces joined by a veth pair, through netkit's C API: the C version of
 * examples/veth_pair.rs.
 *
 *   a/eth0 10.0.0.1/24 fd00::1/64  <-- veth -->  b/eth0 10.0.0.2/24 fd00::2/64
 *   b/lo   10.0.1.1/32, reached from a by the route 10.0.1.0/24 via 10.0.0.2
 *
 * Then it pings b from a (IPv4, IPv6, and through the route), lists a's links and routes,
 * and deletes both namespaces. Run as root; an optional argument is the prefix of the
 * namespace names (default "nkc-PID"). Exit status 0 when every step worked.
 *
 * Build (from the repository root, after `cargo build -p netkit-ffi`):
 *   gcc -Wall -Wextra -o veth_pair examples/c/veth_pair.c -Inetkit-ffi/include \
 *       target/debug/libnetkit.a -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "netkit.h"

/* Print the failure of `what` (status and the error's message), free the error, and fail. */
static int fail(const char *what, int status, netkit_error *err) {
    fprintf(stderr, "veth_pair: %s: %s: %s (errno %d)\n", what, netkit_status_name(status),
            err ? netkit_error_message(err) : "(no details)", netkit_error_errno(err));
    netkit_error_free(err);
    return 1;
}

#define TRY(what, call)                                                                    \
    do {                                                                                   \
        netkit_error *err_ = NULL;                                                         \
        int status_ = (call);                                                              \
        if (status_ != NETKIT_OK) {                                                        \
            rc = fail(what, status_, err_);                                                \
            goto out;                                                                      \
        }                                                                                  \
    } while (0)
#define E (&err_)

/* Add the address `text` to `dev`. */
static int addr_add(netkit_handle *h, const char *dev, const char *text, netkit_error **err) {
    netkit_prefix p;
    int status = netkit_prefix_parse(text, &p, err);
    if (status != NETKIT_OK)
        return status;
    /* nodad: an IPv6 address is usable at once (no effect on IPv4). */
    return netkit_addr_add(h, dev, &p, NETKIT_ADDR_NODAD, err);
}

/* Ping `ip` from namespace `ns` once (iputils' ping in `ip netns exec`). */
static int ping(const char *ns, const char *ip) {
    char cmd[256];
    snprintf(cmd, sizeof cmd, "ip netns exec %s ping -c 1 -W 2 -q %s >/dev/null 2>&1", ns, ip);
    int ok = system(cmd) == 0;
    printf("ping %s from %s: %s\n", ip, ns, ok ? "ok" : "FAILED");
    return ok;
}

int main(int argc, char **argv) {
    int rc = 0;
    char prefix[64], name_a[96], name_b[96];
    netkit_netns *a = NULL, *b = NULL;
    netkit_handle *ha = NULL, *hb = NULL;
    netkit_link *links = NULL;
    size_t nlinks = 0;
    netkit_route *routes = NULL;
    size_t nroutes = 0;

    if (netkit_version() != NETKIT_ABI_VERSION) {
        fprintf(stderr, "veth_pair: libnetkit ABI %u, header %d\n", netkit_version(), NETKIT_ABI_VERSION);
        return 1;
    }
    if (argc > 1)
        snprintf(prefix, sizeof prefix, "%s", argv[1]);
    else
        snprintf(prefix, sizeof prefix, "nkc-%d", (int)getpid());
    snprintf(name_a, sizeof name_a, "%s-a", prefix);
    snprintf(name_b, sizeof name_b, "%s-b", prefix);

    TRY("create namespace a", netkit_netns_create(name_a, &a, E));
    TRY("create namespace b", netkit_netns_create(name_b, &b, E));
    TRY("open a handle in a", netkit_handle_open(a, &ha, E));
    TRY("open a handle in b", netkit_handle_open(b, &hb, E));

    /* The veth pair: eth0 in a, its peer eth0 born directly inside b. */
    netkit_veth_config veth = {0};
    veth.name = "eth0";
    veth.peer_name = "eth0";
    veth.peer_netns = b;
    veth.up = true;
    TRY("add veth eth0", netkit_link_add_veth(ha, &veth, NULL, E));
    TRY("set b/eth0 up", netkit_link_set_up(hb, "eth0", E));
    TRY("set a/lo up", netkit_link_set_up(ha, "lo", E));
    TRY("set b/lo up", netkit_link_set_up(hb, "lo", E));

    TRY("address a/eth0 v4", addr_add(ha, "eth0", "10.0.0.1/24", E));
    TRY("address a/eth0 v6", addr_add(ha, "eth0", "fd00::1/64", E));
    TRY("address b/eth0 v4", addr_add(hb, "eth0", "10.0.0.2/24", E));
    TRY("address b/eth0 v6", addr_add(hb, "eth0", "fd00::2/64", E));
    TRY("address b/lo", addr_add(hb, "lo", "10.0.1.1/32", E));

    /* a reaches 10.0.1.0/24 through b. */
    netkit_route_config route = {0};
    TRY("parse route destination", netkit_prefix_parse("10.0.1.0/24", &route.dst, E));
    TRY("parse gateway", netkit_ip_parse("10.0.0.2", &route.gateway, E));
    route.dev = "eth0";
    TRY("add route 10.0.1.0/24 via 10.0.0.2", netkit_route_add(ha, &route, E));

    if (!ping(name_a, "10.0.0.2") || !ping(name_a, "fd00::2") || !ping(name_a, "10.0.1.1"))
        rc = 1;

    TRY("list a's links", netkit_link_list(ha, &links, &nlinks, E));
    for (size_t i = 0; i < nlinks; i++) {
        const netkit_link *l = &links[i];
        printf("link %u %s kind %s mtu %u %s", l->index, l->name, l->kind, l->mtu, l->operstate);
        if (l->has_mac)
            printf(" mac %02x:%02x:%02x:%02x:%02x:%02x", l->mac[0], l->mac[1], l->mac[2], l->mac[3],
                   l->mac[4], l->mac[5]);
        printf("\n");
    }

    TRY("list a's IPv4 routes", netkit_route_list(ha, NETKIT_AF_INET, 0, &routes, &nroutes, E));
    for (size_t i = 0; i < nroutes; i++) {
        char *dst = NULL, *gw = NULL;
        TRY("format destination", netkit_prefix_format(&routes[i].dst, &dst, E));
        if (routes[i].gateway.family != 0 && netkit_ip_format(&routes[i].gateway, &gw, NULL) != NETKIT_OK)
            gw = NULL;
        printf("route %s%s%s table %u\n", dst, gw ? " via " : "", gw ? gw : "", routes[i].table);
        netkit_string_free(dst);
        netkit_string_free(gw);
    }

out:
    netkit_route_list_free(routes, nroutes);
    netkit_link_list_free(links, nlinks);
    netkit_handle_close(ha);
    netkit_handle_close(hb);
    netkit_netns_free(a);
    netkit_netns_free(b);
    /* Deleting a namespace deletes its links, addresses and routes. */
    if (a && netkit_netns_delete(name_a, NULL) != NETKIT_OK)
        rc = 1;
    if (b && netkit_netns_delete(name_b, NULL) != NETKIT_OK)
        rc = 1;
    if (rc == 0)
        printf("veth_pair: ok\n");
    return rc;
}
