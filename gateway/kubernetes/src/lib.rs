//! Tollgate's Kubernetes ingress controller, split as Kong's ingress controller (KIC 3.x) splits
//! it: `translate` turns the cluster's objects (Ingress, Services, EndpointSlices, Secrets and
//! Kong's CRDs) into the same decK document a file would give, with no I/O, so the offline
//! `tollgate kubernetes translate` and the running controller share one meaning; `watch` keeps
//! those objects current with reflectors and applies each translation as one snapshot.
//!
//! It is a crate of its own so that `kube` and the Kubernetes API types (slow to compile) are
//! rebuilt only when the controller changes, not with every change to the gateway.
pub mod translate;
pub mod watch;
