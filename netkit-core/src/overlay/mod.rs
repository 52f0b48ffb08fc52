//! Overlay data paths built from the primitives: the VXLAN recipe Flannel
//! and Calico use to join pod subnets across nodes.
//!
//! See [`VxlanOverlay`].

mod vxlan;

pub use vxlan::{OverlayError, VxlanOverlay, VxlanOverlayConfig, VxlanPeer};
