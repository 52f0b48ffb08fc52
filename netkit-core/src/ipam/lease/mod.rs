//! Node subnet leases: a cluster network carved into per-node subnets (Flannel and Calico style).
