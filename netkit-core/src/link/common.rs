//! The settings many link kinds share — MTU, MAC address, administratively up — given once by a
//! frontend (a command line, the C ABI) and applied to whichever kind it creates: each kind
//! takes in its creating request what the kernel accepts there, and hands back the rest for a
//! `link set` after creation.

use crate::MacAddr;

use super::{Bridge, IpIp, LinkSet, Macvlan, Veth, Vxlan};

/// MTU, MAC address and "up" for a link about to be created (`ip link add NAME mtu M address
/// MAC … ; ip link set NAME up`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkCommon {
    /// The MTU.
    pub mtu: Option<u32>,
    /// The MAC address.
    pub mac: Option<MacAddr>,
    /// Bring the link up.
    pub up: bool,
}

impl LinkCommon {
    /// Nothing left to set.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// `set` with these settings (for what a kind could not take when it was created).
    pub fn apply_to<'a>(&self, mut set: LinkSet<'a>) -> LinkSet<'a> {
        if let Some(m) = self.mtu {
            set = set.mtu(m);
        }
        if let Some(m) = self.mac {
            set = set.mac(m);
        }
        if self.up {
            set = set.up();
        }
        set
    }
}

/// A link kind that takes (some of) the [`LinkCommon`] settings in its creating request.
pub trait WithCommon: Sized {
    /// This spec with the settings of `c` it can take; the ones it cannot come back, for a
    /// [`LinkCommon::apply_to`] once the link exists.
    fn with_common(self, c: LinkCommon) -> (Self, LinkCommon);
}

/// Kinds that take all three.
macro_rules! takes_all {
    ($($kind:ty),*) => {$(
        impl WithCommon for $kind {
            fn with_common(mut self, c: LinkCommon) -> (Self, LinkCommon) {
                if let Some(m) = c.mtu {
                    self = self.mtu(m);
                }
                if let Some(m) = c.mac {
                    self = self.mac(m);
                }
                if c.up {
                    self = self.up();
                }
                (self, LinkCommon::default())
            }
        }
    )*};
}

/// Kinds that take the MTU only (the kernel picks their address; they come up by a `set`).
macro_rules! takes_mtu {
    ($($kind:ty),*) => {$(
        impl WithCommon for $kind {
            fn with_common(mut self, c: LinkCommon) -> (Self, LinkCommon) {
                if let Some(m) = c.mtu {
                    self = self.mtu(m);
                }
                (self, LinkCommon { mtu: None, ..c })
            }
        }
    )*};
}

takes_all!(Veth, Bridge, Vxlan);
takes_mtu!(Macvlan, IpIp);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_take_what_they_can_and_hand_back_the_rest() {
        let c = LinkCommon {
            mtu: Some(1400),
            mac: Some("02:00:00:00:00:01".parse().unwrap()),
            up: true,
        };
        assert!(Bridge::new("br0").with_common(c).1.is_empty());
        let (_, left) = Macvlan::new("mv0", "eth0").with_common(c);
        assert_eq!(left, LinkCommon { mtu: None, ..c });
        assert!(LinkCommon::default().is_empty());
    }
}
