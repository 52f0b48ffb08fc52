//! Create-or-compare: make sure a link with the wanted attributes exists.

use super::{Link, LinkError, LinkSpec};
use crate::Handle;

/// What [`Handle::link_ensure`] does when a link of that name exists but
/// differs from the spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnsurePolicy {
    /// Return [`LinkError::Mismatch`] listing the differences; change nothing.
    Report,
    /// Delete the existing link and create the wanted one.
    Recreate,
    /// Return the existing link as it is (differences are in [`Ensured`]).
    Keep,
}

/// What [`Handle::link_ensure`] found and did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EnsureAction {
    /// No link had that name; it was created.
    Created,
    /// A link with the wanted attributes existed.
    Existing,
    /// A differing link existed and was recreated.
    Recreated,
    /// A differing link existed and was kept ([`EnsurePolicy::Keep`]).
    KeptDifferent,
}

/// The result of [`Handle::link_ensure`].
#[derive(Clone, Debug)]
pub struct Ensured {
    /// The link now in place.
    pub link: Link,
    /// What was done.
    pub action: EnsureAction,
    /// The differences found on the existing link (empty if none).
    pub differences: Vec<String>,
}

impl Handle {
    /// Make sure a link like `spec` exists: create it if missing; if one with
    /// that name exists, compare kind, MTU, MAC and the kind's own attributes
    /// and act per `policy`. Leftover devices from an earlier run (a bridge,
    /// a VXLAN device with another VNI) are the usual reason to call this.
    ///
    /// ```no_run
    /// # async fn f(h: &netkit_core::Handle) -> Result<(), netkit_core::link::LinkError> {
    /// use netkit_core::link::{EnsurePolicy, Vxlan};
    /// let e = h.link_ensure(&Vxlan::new("vx0", 42).learning(false), EnsurePolicy::Recreate).await?;
    /// println!("{:?}: {:?}", e.action, e.differences);
    /// # Ok(()) }
    /// ```
    pub async fn link_ensure<S: LinkSpec>(&self, spec: &S, policy: EnsurePolicy) -> Result<Ensured, LinkError> {
        let existing = match self.link_get(spec.name()).await {
            Ok(l) => Some(l),
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(e),
        };
        let Some(existing) = existing else {
            let link = self.link_add(spec).await?;
            return Ok(Ensured {
                link,
                action: EnsureAction::Created,
                differences: vec![],
            });
        };
        let differences = spec.differences(&existing);
        if differences.is_empty() {
            return Ok(Ensured {
                link: existing,
                action: EnsureAction::Existing,
                differences,
            });
        }
        match policy {
            EnsurePolicy::Report => Err(LinkError::Mismatch {
                link: spec.name().to_string(),
                kind: spec.kind().to_string(),
                netns: self.ns_label(),
                differences,
            }),
            EnsurePolicy::Keep => Ok(Ensured {
                link: existing,
                action: EnsureAction::KeptDifferent,
                differences,
            }),
            EnsurePolicy::Recreate => {
                self.link_del_by_index(existing.index).await?;
                let link = self.link_add(spec).await?;
                Ok(Ensured {
                    link,
                    action: EnsureAction::Recreated,
                    differences,
                })
            }
        }
    }
}
