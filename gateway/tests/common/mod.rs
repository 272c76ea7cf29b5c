//! The stack of the gateway's tests comes from the workspace's test kit
//! (`testkit`: processes, key prefix, database, WebSocket client); only what
//! just these tests use stays here.
#![allow(dead_code, unused_imports)]

pub mod proxy;

pub use testkit::*;
