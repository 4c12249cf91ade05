//! Deployment tests (issue 10): the server's drain, the PROXY protocol and
//! the per-address limit on their own, and behind a real HAProxy started
//! from deploy/haproxy.cfg, with real hb-server and hb-client processes on
//! 127.0.0.1 ports; the systemd unit checked by `systemd-analyze verify`;
//! the sysctl.d file against the capacity it is for.
//! Tests needing a missing program print `SKIPPED: <test>: <program> not
//! found`; CI (.ci/run) installs them. Unix only: HAProxy's stats socket
//! is a Unix socket, and signals are sent with `kill`.
#![cfg(unix)]

#[path = "../common/mod.rs"]
mod common;

mod drain;
mod haproxy;
mod proxy;
mod support;
mod sysctl;
mod systemd;
mod through_haproxy;
