//! The text records the store keeps, one line per file, checksummed so a truncated or damaged
//! file is recognised instead of misread.
//!
//! * address file `ip/<address>`: `nk1 <container ID> <ifname> <address> <checksum>` (the
//!   address is checked against the file name: a record in the wrong place is corrupt)
//! * owner file `owner/<container ID>:<ifname>`: `nk1 <container ID> <ifname> <addr,addr…|-> <checksum>`
//!
//! The checksum is FNV-1a (64 bit, hex) of everything before it on the line.

use std::net::IpAddr;

use super::super::Owner;

const MAGIC: &str = "nk1";

pub(crate) use crate::fsutil::fnv1a;

fn checksum(text: &str) -> String {
    format!("{:016x}", fnv1a(text.as_bytes()))
}

fn seal(body: String) -> String {
    let sum = checksum(&body);
    format!("{body} {sum}\n")
}

/// Split a sealed line into its fields (checksum and magic checked), or say what is wrong.
fn open(text: &str, fields: usize) -> Result<Vec<&str>, String> {
    let line = text
        .strip_suffix('\n')
        .ok_or_else(|| "no end of line (truncated?)".to_string())?;
    let (body, sum) = line.rsplit_once(' ').ok_or("no checksum")?;
    if checksum(body) != sum {
        return Err("checksum mismatch".into());
    }
    let parts: Vec<&str> = body.split(' ').collect();
    if parts.len() != fields || parts[0] != MAGIC {
        return Err(format!("expected {fields} fields starting with {MAGIC}"));
    }
    Ok(parts)
}

fn owner_of(id: &str, ifname: &str) -> Result<Owner, String> {
    Owner::new(id, ifname).map_err(|e| e.to_string())
}

/// The address file's content for `ip` held by `owner`.
pub(crate) fn encode_address(ip: IpAddr, owner: &Owner) -> String {
    seal(format!("{MAGIC} {} {} {ip}", owner.container_id(), owner.ifname()))
}

/// Parse the address file of `ip`.
pub(crate) fn decode_address(text: &str, ip: IpAddr) -> Result<Owner, String> {
    let p = open(text, 4)?;
    if p[3].parse::<IpAddr>().ok() != Some(ip) {
        return Err(format!("it is the record of {}, not of {ip}", p[3]));
    }
    owner_of(p[1], p[2])
}

/// The owner file's content: the addresses it holds or is claiming.
pub(crate) fn encode_owner(owner: &Owner, ips: &[IpAddr]) -> String {
    let list = if ips.is_empty() {
        "-".to_string()
    } else {
        ips.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(",")
    };
    seal(format!("{MAGIC} {} {} {list}", owner.container_id(), owner.ifname()))
}

/// Parse an owner file.
pub(crate) fn decode_owner(text: &str) -> Result<(Owner, Vec<IpAddr>), String> {
    let p = open(text, 4)?;
    let owner = owner_of(p[1], p[2])?;
    let ips = if p[3] == "-" {
        Vec::new()
    } else {
        p[3].split(',')
            .map(|s| s.parse().map_err(|_| format!("bad address {s:?}")))
            .collect::<Result<_, _>>()?
    };
    Ok((owner, ips))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() {
        let o = Owner::new("c1", "eth0").unwrap();
        let ip: IpAddr = "10.0.0.12".parse().unwrap();
        assert_eq!(decode_address(&encode_address(ip, &o), ip).unwrap(), o);
        let other: IpAddr = "10.0.0.13".parse().unwrap();
        assert!(decode_address(&encode_address(ip, &o), other)
            .unwrap_err()
            .contains("not of"));
        let ips: Vec<IpAddr> = vec!["10.0.0.12".parse().unwrap(), "fd00::2".parse().unwrap()];
        let text = encode_owner(&o, &ips);
        assert_eq!(decode_owner(&text).unwrap(), (o.clone(), ips));
        assert!(decode_owner(&encode_owner(&o, &[])).unwrap().1.is_empty());
        // Every truncation of a record is recognised.
        for cut in 0..text.len() {
            assert!(decode_owner(&text[..cut]).is_err(), "cut at {cut}");
        }
        let edited = text.replace("10.0.0.12", "10.0.0.13");
        assert!(decode_owner(&edited).unwrap_err().contains("checksum"));
    }
}

#[cfg(test)]
mod fuzz {
    //! The record readers fed arbitrary text (never panic, and nothing that is not a sealed
    //! record reads as one) and what the encoders write (read back unchanged).

    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    use proptest::collection::vec;
    use proptest::prelude::*;

    use super::*;

    fn owner() -> impl Strategy<Value = Owner> {
        ("[a-zA-Z0-9][a-zA-Z0-9_.-]{0,70}", "[a-z][a-z0-9]{0,14}")
            .prop_filter_map("a valid owner", |(id, ifname)| Owner::new(&id, &ifname).ok())
    }

    fn addr() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            any::<u32>().prop_map(|a| IpAddr::V4(Ipv4Addr::from(a))),
            any::<u128>().prop_map(|a| IpAddr::V6(Ipv6Addr::from(a))),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_text_never_panics_and_is_no_record(text in "\\PC{0,120}", ip in addr()) {
            // Random text carries the right checksum only by a 2^-64 chance.
            prop_assert!(decode_address(&text, ip).is_err());
            prop_assert!(decode_owner(&text).is_err());
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..120), ip in addr()) {
            let text = String::from_utf8_lossy(&bytes);
            let _ = decode_address(&text, ip);
            let _ = decode_owner(&text);
        }

        #[test]
        fn address_records_round_trip(o in owner(), ip in addr(), other in addr()) {
            let text = encode_address(ip, &o);
            prop_assert_eq!(decode_address(&text, ip), Ok(o));
            if other != ip {
                prop_assert!(decode_address(&text, other).is_err(), "a record read for another address");
            }
        }

        #[test]
        fn owner_records_round_trip(o in owner(), ips in vec(addr(), 0..6)) {
            let text = encode_owner(&o, &ips);
            prop_assert_eq!(decode_owner(&text), Ok((o, ips)));
        }

        #[test]
        fn every_truncation_and_one_byte_change_is_refused(o in owner(), ips in vec(addr(), 1..4), at in any::<prop::sample::Index>(), to in 32u8..127) {
            let text = encode_owner(&o, &ips);
            let cut = at.index(text.len());
            prop_assert!(decode_owner(&text[..cut]).is_err(), "cut at {}", cut);
            let mut changed = text.clone().into_bytes();
            if changed[cut] != to && changed[cut] != b'\n' {
                changed[cut] = to;
                let changed = String::from_utf8(changed).expect("ASCII");
                prop_assert!(decode_owner(&changed).is_err(), "{:?}", changed);
            }
        }
    }
}
