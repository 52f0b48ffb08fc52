//! Choosing a free subnet, the same way in every store.

use std::collections::BTreeSet;

use ipnetwork::IpNetwork;

use super::SubnetPlan;

/// The subnets to try, in order, for a node that holds none: `preferred` first when it is
/// free, then every free subnet from the lowest. `taken` holds the numbers of the subnets
/// leased to live nodes.
///
/// Only `taken.len() + 1` numbers are looked at before the first free one, so this stays
/// cheap on IPv6 plans with 2^64 subnets.
pub(crate) fn free_subnets<'a>(
    plan: &'a SubnetPlan,
    taken: &'a BTreeSet<u128>,
    preferred: Option<u128>,
) -> impl Iterator<Item = IpNetwork> + 'a {
    let preferred = preferred.filter(|p| !taken.contains(p));
    let rest = (0..plan.count()).filter(move |i| !taken.contains(i) && Some(*i) != preferred);
    preferred.into_iter().chain(rest).map_while(move |i| plan.subnet(i))
}
