//! `netkit_attach_add / _check / _del` as C calls them: two containers attached to a bridge in a
//! host namespace of the test's own (`host_netns`, never the namespace the tests run in), the
//! result JSON, pings, CHECK with the result passed and with it inside the configuration, a
//! CHECK that finds a difference, DEL idempotent and leaving nothing; argument errors.

use std::ffi::{c_char, CStr, CString};

use netkit::attach::*;
use netkit::error::*;
use netkit::netns::{netkit_netns, netkit_netns_free, netkit_netns_open};
use netkit::own::netkit_string_free;
use netkit_core::NetNsGuard;
use netkit_test_support::{ip, ipj, ping, HostNs};
use serde_json::{json, Value};

use crate::common::{call, cs, fails, ok, Failure};

const NET: &str = "ffinet";

/// A host namespace opened through the ABI, and containers.
struct Lab {
    host: HostNs,
    host_ns: *mut netkit_netns,
    ctrs: Vec<NetNsGuard>,
}

impl Lab {
    fn new(tag: &str) -> Lab {
        let host = HostNs::new(tag);
        let mut host_ns = std::ptr::null_mut();
        let name = cs(host.name());
        // SAFETY: valid C string and out-pointer.
        ok(|e| unsafe { netkit_netns_open(name.as_ptr(), &mut host_ns, e) });
        Lab {
            host,
            host_ns,
            ctrs: Vec::new(),
        }
    }

    fn container(&mut self) -> usize {
        let i = self.ctrs.len();
        self.ctrs.push(self.host.container(&format!("c{i}")));
        i
    }

    fn ctr_name(&self, i: usize) -> &str {
        self.ctrs[i].name().expect("named")
    }

    fn conf(&self, subnet: &str) -> CString {
        let v = json!({
            "cniVersion": "1.1.0",
            "name": NET,
            "type": "netkit-cni",
            "bridge": "cni0",
            "isGateway": true,
            "isDefaultGateway": true,
            "waitLinkFree": true,
            "ipam": {"type": "netkit-ipam", "dataDir": self.host.ipam_dir(), "ranges": [[{"subnet": subnet}]]}
        });
        cs(&v.to_string())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // SAFETY: a live namespace object of this lab, freed once.
        unsafe { netkit_netns_free(self.host_ns) };
    }
}

/// The C strings an attachment points to, kept alive with it.
struct Att {
    netns: Option<CString>,
    id: CString,
    ifname: CString,
    args: Vec<(CString, CString)>,
    c_args: Vec<netkit_attach_arg>,
    cni_path: Option<CString>,
}

impl Att {
    fn new(lab: &Lab, i: usize) -> Att {
        Att {
            netns: Some(cs(&lab.ctrs[i].path().display().to_string())),
            id: cs(&format!("ctr{i}")),
            ifname: cs("eth0"),
            args: Vec::new(),
            c_args: Vec::new(),
            cni_path: None,
        }
    }

    fn cni_path(mut self, path: &str) -> Att {
        self.cni_path = Some(cs(path));
        self
    }

    fn arg(mut self, k: &str, v: &str) -> Att {
        self.args.push((cs(k), cs(v)));
        self.c_args = self
            .args
            .iter()
            .map(|(k, v)| netkit_attach_arg {
                key: k.as_ptr(),
                value: v.as_ptr(),
            })
            .collect();
        self
    }

    fn c(&self, lab: &Lab) -> netkit_attachment {
        netkit_attachment {
            netns: self.netns.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
            container_id: self.id.as_ptr(),
            ifname: self.ifname.as_ptr(),
            args: if self.c_args.is_empty() {
                std::ptr::null()
            } else {
                self.c_args.as_ptr()
            },
            args_len: self.c_args.len(),
            host_netns: lab.host_ns,
            cni_path: self.cni_path.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
        }
    }
}

/// ADD; the result JSON parsed (the string freed).
fn add(lab: &Lab, att: &Att, conf: &CString) -> Result<Value, Failure> {
    let c = att.c(lab);
    let mut out: *mut c_char = std::ptr::null_mut();
    // SAFETY: valid arguments for the call.
    call(|e| unsafe { netkit_attach_add(&c, conf.as_ptr(), &mut out, e) })?;
    assert!(!out.is_null());
    // SAFETY: a live netkit string: read, then freed once.
    let text = unsafe { CStr::from_ptr(out) }.to_str().unwrap().to_string();
    // SAFETY: as above.
    unsafe { netkit_string_free(out) };
    Ok(serde_json::from_str(&text).expect("the result is JSON"))
}

fn check(lab: &Lab, att: &Att, conf: &CString, prev: Option<&Value>) -> Result<(), Failure> {
    let c = att.c(lab);
    let prev = prev.map(|p| cs(&p.to_string()));
    let prev_ptr = prev.as_ref().map_or(std::ptr::null(), |p| p.as_ptr());
    // SAFETY: valid arguments for the call.
    call(|e| unsafe { netkit_attach_check(&c, conf.as_ptr(), prev_ptr, e) })
}

fn del(lab: &Lab, att: &Att, conf: &CString) {
    let c = att.c(lab);
    // SAFETY: valid arguments for the call.
    ok(|e| unsafe { netkit_attach_del(&c, conf.as_ptr(), e) });
}

/// The container address (without prefix) of a result.
fn addr_of(r: &Value) -> String {
    let a = r["ips"][0]["address"].as_str().expect("an address");
    a.split('/').next().unwrap().to_string()
}

#[test]
fn add_ping_check_del_idempotent() {
    let mut lab = Lab::new("fat");
    let conf = lab.conf("10.203.0.0/24");
    let (c0, c1) = (lab.container(), lab.container());
    let (a0, a1) = (Att::new(&lab, c0), Att::new(&lab, c1).arg("IP", "10.203.0.77"));
    let r0 = add(&lab, &a0, &conf).expect("ADD ctr0");
    let r1 = add(&lab, &a1, &conf).expect("ADD ctr1");
    // The CNI result: bridge, host end, container interface in its sandbox, the address asked
    // for with CNI_ARGS IP=.
    assert_eq!(r0["cniVersion"], "1.1.0", "{r0}");
    assert_eq!(r0["interfaces"][0]["name"], "cni0", "{r0}");
    assert_eq!(r0["interfaces"][2]["name"], "eth0", "{r0}");
    assert_eq!(
        r0["interfaces"][2]["sandbox"],
        lab.ctrs[c0].path().display().to_string(),
        "{r0}"
    );
    assert_eq!(addr_of(&r1), "10.203.0.77", "{r1}");
    // The kernel agrees: the host side is in the lab's host namespace.
    let addrs = ipj(lab.ctr_name(c0), &["addr", "show", "dev", "eth0"]).expect("eth0 in ctr0");
    assert!(addrs.to_string().contains(&addr_of(&r0)), "{addrs}");
    let host_end = r0["interfaces"][1]["name"].as_str().unwrap();
    let port = ipj(lab.host.name(), &["link", "show", "dev", host_end]).expect("the host end in H");
    assert_eq!(port[0]["master"], "cni0", "{port}");
    assert!(ping(lab.ctr_name(c0), &addr_of(&r1)), "ctr0 -> ctr1");
    assert!(ping(lab.ctr_name(c1), "10.203.0.1"), "ctr1 -> gateway");

    // CHECK with the result passed, and with it inside the configuration as prevResult.
    check(&lab, &a0, &conf, Some(&r0)).expect("CHECK ctr0");
    let mut with_prev: Value = serde_json::from_str(conf.to_str().unwrap()).unwrap();
    with_prev["prevResult"] = r1.clone();
    let conf_prev = cs(&with_prev.to_string());
    check(&lab, &a1, &conf_prev, None).expect("CHECK ctr1 (prevResult in the configuration)");
    // Without any prevResult CHECK cannot compare.
    let f = check(&lab, &a1, &conf, None).expect_err("CHECK without prevResult");
    assert_eq!(f.status, NETKIT_E_CHECK_FAILED, "{f:?}");
    // An address gone is a difference.
    let gone = r1["ips"][0]["address"].as_str().unwrap();
    ip(&["-n", lab.ctr_name(c1), "addr", "del", gone, "dev", "eth0"]);
    let f = check(&lab, &a1, &conf, Some(&r1)).expect_err("CHECK without the address");
    assert_eq!(f.status, NETKIT_E_CHECK_FAILED, "{f:?}");
    assert!(f.message.contains(gone), "{f:?}");

    del(&lab, &a0, &conf);
    del(&lab, &a1, &conf);
    assert!(
        ipj(lab.ctr_name(c0), &["link", "show", "eth0"]).is_none(),
        "eth0 left in ctr0"
    );
    assert_eq!(lab.host.veths(), Vec::<String>::new(), "veths left in H");
    assert_eq!(lab.host.ipam_held(NET), Vec::<String>::new(), "IPAM left");
    // Idempotent: again, and without the container's namespace.
    del(&lab, &a0, &conf);
    let gone_ns = Att {
        netns: None,
        ..Att::new(&lab, c1)
    };
    del(&lab, &gone_ns, &conf);
}

#[test]
fn argument_and_configuration_errors() {
    let mut lab = Lab::new("fae");
    let conf = lab.conf("10.204.0.0/24");
    let c0 = lab.container();
    let att = Att::new(&lab, c0);
    let c = att.c(&lab);
    let mut out: *mut c_char = std::ptr::null_mut();
    // NULL attachment, configuration, result pointer.
    // SAFETY: NULL where the contract allows a check; everything else valid.
    let f = fails(NETKIT_E_INVALID, |e| unsafe {
        netkit_attach_add(std::ptr::null(), conf.as_ptr(), &mut out, e)
    });
    assert!(f.message.contains("att"), "{f:?}");
    // SAFETY: as above.
    fails(NETKIT_E_INVALID, |e| unsafe {
        netkit_attach_add(&c, std::ptr::null(), &mut out, e)
    });
    // SAFETY: as above.
    fails(NETKIT_E_INVALID, |e| unsafe {
        netkit_attach_add(&c, conf.as_ptr(), std::ptr::null_mut(), e)
    });
    // ADD and CHECK need the namespace; DEL does not.
    let no_ns = netkit_attachment {
        netns: std::ptr::null(),
        ..c
    };
    // SAFETY: as above.
    let f = fails(NETKIT_E_INVALID, |e| unsafe {
        netkit_attach_add(&no_ns, conf.as_ptr(), &mut out, e)
    });
    assert!(f.message.contains("att.netns"), "{f:?}");
    // args_len without args.
    let no_args = netkit_attachment { args_len: 2, ..c };
    // SAFETY: as above.
    let f = fails(NETKIT_E_INVALID, |e| unsafe {
        netkit_attach_add(&no_args, conf.as_ptr(), &mut out, e)
    });
    assert!(f.message.contains("att.args"), "{f:?}");
    // Not JSON; an unknown mode; an unsupported cniVersion.
    for bad in [
        "not json".to_string(),
        conf.to_str()
            .unwrap()
            .replace("\"bridge\":\"cni0\"", "\"mode\":\"nope\""),
        conf.to_str().unwrap().replace("1.1.0", "9.9.9"),
    ] {
        let bad = cs(&bad);
        // SAFETY: as above.
        fails(NETKIT_E_INVALID, |e| unsafe {
            netkit_attach_add(&c, bad.as_ptr(), &mut out, e)
        });
    }
    // A bad container ID and a prevResult that is not JSON.
    let bad_id = cs("-bad id");
    let bad = netkit_attachment {
        container_id: bad_id.as_ptr(),
        ..c
    };
    // SAFETY: as above.
    fails(NETKIT_E_INVALID, |e| unsafe {
        netkit_attach_add(&bad, conf.as_ptr(), &mut out, e)
    });
    let junk = cs("{");
    // SAFETY: as above.
    fails(NETKIT_E_INVALID, |e| unsafe {
        netkit_attach_check(&c, conf.as_ptr(), junk.as_ptr(), e)
    });
    // A container namespace that does not exist.
    let missing = cs("/run/netns/netkit-no-such-namespace");
    let gone = netkit_attachment {
        netns: missing.as_ptr(),
        ..c
    };
    // SAFETY: as above.
    fails(NETKIT_E_NOT_FOUND, |e| unsafe {
        netkit_attach_add(&gone, conf.as_ptr(), &mut out, e)
    });
    assert!(out.is_null(), "no result on failure");
    // Nothing was made.
    assert_eq!(lab.host.veths(), Vec::<String>::new());
}

/// A delegated IPAM plugin (Debian's host-local) is found through `cni_path` (a `:` list, as
/// CNI_PATH), and not without it.
#[test]
fn delegated_ipam_through_cni_path() {
    const PLUGINS: &str = "/usr/lib/cni";
    if !std::path::Path::new(PLUGINS).join("host-local").exists() {
        netkit_test_support::report_skip(
            "ffi::attach::delegated_ipam_through_cni_path",
            "no /usr/lib/cni/host-local (apt-get install containernetworking-plugins)",
        );
        return;
    }
    let mut lab = Lab::new("fadel");
    let i = lab.container();
    let data = lab.host.ipam_dir().join("host-local");
    let conf = cs(&json!({
        "cniVersion": "1.0.0",
        "name": NET,
        "type": "netkit-cni",
        "bridge": "cni0",
        "isGateway": true,
        "waitLinkFree": true,
        "ipam": {"type": "host-local", "dataDir": data, "ranges": [[{"subnet": "10.71.0.0/24"}]]}
    })
    .to_string());
    let without = Att::new(&lab, i);
    let e = add(&lab, &without, &conf).expect_err("no CNI path: no host-local");
    assert!(e.message.contains("host-local"), "{e:?}");
    let att = Att::new(&lab, i).cni_path(&format!("/nonexistent:{PLUGINS}"));
    let r = add(&lab, &att, &conf).expect("host-local through cni_path");
    let ip = addr_of(&r);
    assert!(ip.starts_with("10.71.0."), "{r}");
    assert!(data.join(NET).join(&ip).exists(), "host-local's record of {ip}");
    assert!(ping(lab.host.name(), &ip), "the host reaches {ip}");
    del(&lab, &att, &conf);
    assert!(
        !data.join(NET).join(&ip).exists(),
        "DEL released {ip} through host-local"
    );
}
