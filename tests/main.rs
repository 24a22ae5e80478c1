//! bootfleet's integration tests: one binary that runs the real program.
//! Tests that need root, namespaces or a hypervisor say so in their name and
//! skip with a message elsewhere.

mod support;

mod alerts;
mod bad_input;
mod boot_e2e;
mod boot_failures;
mod browser_run;
mod cli;
mod cluster;
mod cluster_libvirtd;
mod dhcp;
mod dhcp_proxy;
mod dhcp_shared;
mod docs;
mod etcd_cluster;
mod examples;
mod golden;
mod ignition;
mod images_fetch;
mod power;
mod ra;
mod segments;
mod serve;
mod store_etcd;
mod systemd_units;
mod tftp;
