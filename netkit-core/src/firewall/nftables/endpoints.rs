//! Endpoint changes of mapped services (see [`super::ruleset`]) as set element operations:
//! the intervals of the service's `eps-<id>` map, its `noendpoints` elements when its endpoint
//! count goes 0 ↔ n, and hairpin pairs. Sent as one nf_tables netlink batch, with no
//! libnftables run and no rule change, so an endpoint change costs the same whatever the
//! number of services.

use super::netlink::{self, Data, Element, OpKind};
use super::ruleset::{endpoints_only, eps_interval, eps_map, reject_keys};
use crate::firewall::model::{Rules, Service};

/// One operation on one set: `(set, kind, elements)`.
pub(crate) type SetOp = (String, OpKind, Vec<Element>);

/// The operations that take the kernel from `old`'s endpoints to `new`'s for every service of
/// `new` whose change is endpoints only ([`endpoints_only`]), and the operations that undo
/// them (hairpin pairs are not taken back: a stale one is harmless).
pub(crate) fn endpoint_ops(old: &Rules, new: &Rules) -> (Vec<SetOp>, Vec<SetOp>) {
    let (mut ops, mut undo) = (Vec::new(), Vec::new());
    for s in &new.services {
        let Some(b) = old.services.iter().find(|o| o.name == s.name) else {
            continue;
        };
        if !endpoints_only(b, s) {
            continue;
        }
        let map = eps_map(s);
        ops.push((map.clone(), OpKind::Destroy, intervals(b, false)));
        ops.push((map.clone(), OpKind::Create, intervals(s, true)));
        undo.push((map.clone(), OpKind::Destroy, intervals(s, false)));
        undo.push((map, OpKind::Create, intervals(b, true)));
        match (b.endpoints.is_empty(), s.endpoints.is_empty()) {
            (true, false) => {
                for (set, els) in reject_elements(b) {
                    ops.push((set.clone(), OpKind::Destroy, els.clone()));
                    undo.push((set, OpKind::Add, els));
                }
            }
            (false, true) => {
                for (set, els) in reject_elements(s) {
                    ops.push((set.clone(), OpKind::Add, els.clone()));
                    undo.push((set, OpKind::Destroy, els));
                }
            }
            _ => {}
        }
        // Pairs of the endpoints that came (the others' are there).
        let v = if s.vip.is_ipv4() { 4 } else { 6 };
        let pairs = s
            .endpoints
            .iter()
            .filter(|e| !b.endpoints.iter().any(|o| o.ip == e.ip))
            .map(|e| Element::new(Data::new().ip_addr(e.ip).ip_addr(e.ip)))
            .collect();
        ops.push((format!("hairpin{v}"), OpKind::Add, pairs));
    }
    ops.retain(|(_, _, els)| !els.is_empty());
    undo.retain(|(_, _, els)| !els.is_empty());
    (ops, undo)
}

/// Append `ops` to `batch` (table `table`).
pub(crate) fn push(batch: &mut netlink::Batch, table: &str, ops: &[SetOp]) {
    for (set, kind, els) in ops {
        let els = els.iter().cloned();
        match kind {
            OpKind::Add => batch.add(table, set, els),
            OpKind::Create => batch.create(table, set, els),
            OpKind::Destroy => batch.destroy(table, set, els),
        };
    }
}

/// The elements of `svc`'s endpoint intervals: each interval's start (with the endpoint as
/// its value when `with_values`) and its end element.
fn intervals(svc: &Service, with_values: bool) -> Vec<Element> {
    let n = svc.endpoints.len();
    let mut out = Vec::with_capacity(2 * n);
    for (i, ep) in svc.endpoints.iter().enumerate() {
        let Some((first, last)) = eps_interval(i, n) else {
            continue;
        };
        let start = Element::new(Data::new().u32_be(first));
        out.push(match with_values {
            true => start.value(Data::new().ip_addr(ep.ip).inet_service(ep.port)),
            false => start,
        });
        out.push(Element::interval_end(Data::new().u32_be(last + 1)));
    }
    out
}

/// The `noendpoints` elements of `svc` ([`reject_keys`], grouped by set).
fn reject_elements(svc: &Service) -> Vec<(String, Vec<Element>)> {
    let mut out: Vec<(String, Vec<Element>)> = Vec::new();
    for (set, ip, p, port) in reject_keys(svc) {
        let key = match ip {
            Some(ip) => Data::new().ip_addr(ip),
            None => Data::new(),
        };
        let el = Element::new(key.inet_proto(p.number()).inet_service(port)).comment(&svc.name);
        match out.iter_mut().find(|(s, _)| *s == set) {
            Some((_, els)) => els.push(el),
            None => out.push((set, vec![el])),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::model::{Endpoint, Protocol};

    fn web(eps: &[&str]) -> Service {
        eps.iter().fold(
            Service::new("default/web", Protocol::Tcp, "10.96.0.1".parse().unwrap(), 80),
            |s, e| s.endpoint(Endpoint::new(e.parse().unwrap(), 8080)),
        )
    }

    fn rules(s: Service) -> Rules {
        Rules {
            services: vec![s],
            ..Default::default()
        }
    }

    #[test]
    fn intervals_cover_every_value_once() {
        for n in [1usize, 2, 3, 7, 10, 1000] {
            let mut next = 0u32;
            for i in 0..n {
                let (a, b) = eps_interval(i, n).unwrap();
                assert_eq!(a, next, "n={n} i={i}");
                assert!(b >= a);
                next = b + 1;
            }
            assert_eq!(next, 65536, "n={n}");
        }
        // Sizes differ by one at most.
        let sizes: Vec<u32> = (0..3)
            .map(|i| eps_interval(i, 3).map(|(a, b)| b - a + 1).unwrap())
            .collect();
        assert!(
            sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1,
            "{sizes:?}"
        );
    }

    #[test]
    fn endpoint_changes_are_element_operations_and_their_undo() {
        let (ops, undo) = endpoint_ops(&rules(web(&[])), &rules(web(&["10.0.0.1", "10.0.0.2"])));
        let kinds: Vec<(&str, OpKind, usize)> = ops.iter().map(|(s, k, e)| (s.as_str(), *k, e.len())).collect();
        let map = eps_map(&web(&[]));
        assert_eq!(
            kinds,
            vec![
                (map.as_str(), OpKind::Create, 4),
                ("noendpoints4", OpKind::Destroy, 1),
                ("hairpin4", OpKind::Add, 2),
            ]
        );
        assert!(undo
            .iter()
            .any(|(s, k, e)| s == "noendpoints4" && *k == OpKind::Add && e.len() == 1));
        // Another change than endpoints (the port): not element operations.
        let mut other = web(&["10.0.0.1"]);
        other.port = 81;
        let (ops, _) = endpoint_ops(&rules(web(&["10.0.0.1"])), &rules(other));
        assert!(ops.is_empty());
        // A service with affinity is not mapped.
        let aff = |eps: &[&str]| web(eps).affinity(std::time::Duration::from_secs(60));
        let (ops, _) = endpoint_ops(&rules(aff(&["10.0.0.1"])), &rules(aff(&["10.0.0.2"])));
        assert!(ops.is_empty());
    }
}
