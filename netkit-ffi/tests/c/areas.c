/*
 * The newer areas of the C API used from C, for the memory checkers (valgrind, AddressSanitizer):
 * rules, neighbours and the FDB, events (poll the descriptor, read, free), IPAM (open, allocate,
 * lookup, release, gc) and the firewall (a port mapping, teardown). Every returned object is
 * freed once; a second free of some is tried (ignored by the library).
 *
 * Usage: areas DIR PREFIX. Makes the namespace PREFIX-a (deleted at the end), an IPAM store in
 * DIR/cnet and the firewall's state in DIR/fw. Prints "areas: ok" when every step worked.
 */
#include <poll.h>
#include <stdio.h>
#include <string.h>

#include "netkit.h"

static int fail(const char *what, int status, netkit_error *err) {
    fprintf(stderr, "areas: %s: %s: %s\n", what, netkit_status_name(status),
            err ? netkit_error_message(err) : "(no details)");
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

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: areas DIR PREFIX\n");
        return 2;
    }
    int rc = 0;
    char name[128];
    snprintf(name, sizeof name, "%s-a", argv[2]);
    netkit_netns *ns = NULL;
    netkit_handle *h = NULL;
    netkit_events *sub = NULL;
    netkit_ipam *ipam = NULL;
    netkit_fw *fw = NULL;

    TRY("netns create", netkit_netns_create(name, &ns, E));
    TRY("handle open", netkit_handle_open(ns, &h, E));
    TRY("subscribe", netkit_events_subscribe(h, 0, &sub, E));

    netkit_veth_config veth = {0};
    veth.name = "v0";
    veth.peer_name = "v1";
    veth.up = true;
    TRY("veth", netkit_link_add_veth(h, &veth, NULL, E));
    netkit_prefix p;
    TRY("parse", netkit_prefix_parse("10.5.0.1/24", &p, E));
    TRY("addr add", netkit_addr_add(h, "v0", &p, 0, E));

    /* Rules. */
    netkit_rule_config rule = {0};
    TRY("parse", netkit_prefix_parse("10.5.0.0/24", &rule.from, E));
    rule.table = 100;
    rule.set_priority = true;
    rule.priority = 1000;
    rule.iif = "v0";
    TRY("rule add", netkit_rule_add(h, &rule, E));
    netkit_rule *rules = NULL;
    size_t n = 0;
    TRY("rule list", netkit_rule_list(h, 0, &rules, &n, E));
    int found = 0;
    for (size_t i = 0; i < n; i++)
        found |= rules[i].priority == 1000 && rules[i].iif && strcmp(rules[i].iif, "v0") == 0;
    netkit_rule_list_free(rules, n);
    netkit_rule_list_free(rules, n); /* ignored */
    printf("rule 1000 iif v0: %s\n", found ? "ok" : "FAILED");
    rc |= !found;

    /* Neighbours and the FDB. */
    netkit_neigh_config nb = {0};
    nb.dev = "v0";
    TRY("parse", netkit_ip_parse("10.5.0.2", &nb.ip, E));
    memcpy(nb.mac, "\x02\x00\x00\x00\x05\x02", 6);
    TRY("neigh add", netkit_neigh_add(h, &nb, E));
    netkit_neigh *neighs = NULL;
    TRY("neigh list", netkit_neigh_list(h, "v0", 0, &neighs, &n, E));
    found = 0;
    for (size_t i = 0; i < n; i++)
        found |= neighs[i].has_mac && neighs[i].mac[5] == 2;
    netkit_neigh_list_free(neighs, n);
    printf("neighbour 10.5.0.2: %s\n", found ? "ok" : "FAILED");
    rc |= !found;
    netkit_fdb *fdb = NULL;
    TRY("fdb list", netkit_fdb_list(h, NULL, &fdb, &n, E));
    netkit_fdb_list_free(fdb, n);

    /* Events: everything above was announced; read it all. */
    int fd = -1;
    TRY("events fd", netkit_events_fd(sub, &fd, E));
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    int links = 0, addrs = 0, events = 0;
    while (poll(&pfd, 1, 2000) > 0) {
        netkit_event *ev = NULL;
        int got = 0;
        for (;;) {
            TRY("events next", netkit_events_next(sub, &ev, E));
            if (!ev)
                break;
            got = 1;
            events++;
            if (ev->kind == NETKIT_EVENT_NEW_LINK && strcmp(ev->link->name, "v0") == 0)
                links++;
            if (ev->kind == NETKIT_EVENT_NEW_ADDR)
                addrs++;
            netkit_event_free(ev);
        }
        if (got && links && addrs)
            break;
    }
    printf("events: %s\n", links && addrs ? "ok" : "FAILED");
    rc |= !(links && addrs);

    /* IPAM, with DNS settings from a resolv.conf. */
    char conf[512], json[1024];
    snprintf(conf, sizeof conf, "%s/resolv.conf", argv[1]);
    FILE *f = fopen(conf, "w");
    if (!f || fputs("nameserver 10.6.0.53\nsearch a.test b.test\noptions ndots:2\n", f) < 0 || fclose(f) != 0) {
        fprintf(stderr, "areas: write %s\n", conf);
        rc = 1;
        goto out;
    }
    snprintf(json, sizeof json,
             "{\"ranges\": [[{\"subnet\": \"10.6.0.0/24\"}]], \"routes\": [{\"dst\": \"0.0.0.0/0\"}], "
             "\"resolvConf\": \"%s\"}",
             conf);
    TRY("ipam open", netkit_ipam_open(json, "cnet", argv[1], &ipam, E));
    netkit_ipam_allocation *a = NULL;
    TRY("allocate", netkit_ipam_allocate(ipam, "ctr1", "eth0", NULL, 0, &a, E));
    char *text = NULL;
    TRY("format", netkit_prefix_format(&a->ips[0].address, &text, E));
    printf("allocated %s (%zu routes, nameserver %s, %zu search domains)\n", text, a->routes_len,
           a->dns_nameservers_len ? a->dns_nameservers[0] : "none", a->dns_search_len);
    netkit_string_free(text);
    netkit_ipam_allocation_free(a);
    netkit_ipam_allocation_free(a); /* ignored */
    netkit_ip *ips = NULL;
    TRY("lookup", netkit_ipam_lookup(ipam, "ctr1", "eth0", &ips, &n, E));
    rc |= n != 1;
    netkit_ip_list_free(ips, n);
    TRY("release", netkit_ipam_release(ipam, "ctr1", "eth0", &ips, &n, E));
    netkit_ip_list_free(ips, n);
    TRY("gc", netkit_ipam_gc(ipam, NULL, 0, NULL, NULL, E));

    /* The firewall: a port mapping, then teardown. */
    {
        char fwdir[512];
        snprintf(fwdir, sizeof fwdir, "%s/fw", argv[1]);
        netkit_error *err = NULL;
        int status = netkit_fw_open(ns, NETKIT_FW_AUTO, fwdir, &fw, &err);
        if (status == NETKIT_E_UNSUPPORTED) {
            printf("firewall: unsupported here\n");
            netkit_error_free(err);
        } else if (status != NETKIT_OK) {
            rc = fail("fw open", status, err);
            goto out;
        }
    }
    if (fw) {
        netkit_port_mapping pm = {0};
        pm.host_port = 8080;
        pm.container_port = 80;
        TRY("parse", netkit_ip_parse("10.5.0.2", &pm.container_ip, E));
        netkit_fw_rules fr = {0};
        fr.port_mappings = &pm;
        fr.port_mappings_len = 1;
        TRY("fw add", netkit_fw_add(fw, "ctr1:eth0", &fr, E));
        char **owners = NULL;
        TRY("fw owners", netkit_fw_owners(fw, &owners, &n, E));
        found = n == 1 && strcmp(owners[0], "ctr1:eth0") == 0;
        netkit_strings_free(owners, n);
        TRY("fw teardown", netkit_fw_teardown(fw, "ctr1:eth0", E));
        printf("firewall: %s\n", found ? "ok" : "FAILED");
        rc |= !found;
    }

    /* A failing call's error object, freed. */
    {
        netkit_error *err = NULL;
        netkit_neigh *none = NULL;
        int status = netkit_neigh_list(h, "nope0", 0, &none, &n, &err);
        rc |= status != NETKIT_E_NOT_FOUND;
        netkit_error_free(err);
    }

out:
    netkit_fw_close(fw);
    netkit_ipam_close(ipam);
    netkit_events_close(sub);
    netkit_events_close(sub); /* ignored */
    netkit_handle_close(h);
    netkit_netns_free(ns);
    netkit_netns_delete(name, NULL);
    if (rc == 0)
        printf("areas: ok (%d events)\n", events);
    return rc;
}
