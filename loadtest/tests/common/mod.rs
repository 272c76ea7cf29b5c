//! The load tool's tests start the stack through the workspace's test kit
//! (`testkit`) with the load settings ([`testkit::LOAD_ENV`]); here only the
//! load tool's own view of it.
#![allow(dead_code, unused_imports)]

use std::ops::Deref;

pub use testkit::REDIS_URL;
use testkit::Db;

pub struct Stack(pub testkit::Stack);

impl Deref for Stack {
    type Target = testkit::Stack;
    fn deref(&self) -> &testkit::Stack {
        &self.0
    }
}

impl Stack {
    /// `g` gateways and `w` workers in dev mode, with a high per-socket send rate.
    pub async fn start(g: usize, w: usize) -> Stack {
        Self::start_with(g, w, None).await
    }

    /// As [`Stack::start`]; with `gateway_nofile`, the gateways run with that
    /// open-file limit (soft and hard).
    pub async fn start_with(g: usize, w: usize, gateway_nofile: Option<u64>) -> Stack {
        let mut s = testkit::Stack::new(Db::Sqlite).await.base(testkit::LOAD_ENV);
        s.gateway_nofile = gateway_nofile;
        Stack(s.spawn(g, w).await)
    }

    /// The stack as the load tool sees it (our target, dev secret, demo agent).
    pub fn target(&self) -> loadtest::scenario::Stack {
        loadtest::scenario::Stack {
            target: loadtest::proto::Target::Ours,
            gateways: self.gateways.iter().map(|g| g.addr.parse().expect("addr")).collect(),
            secret: loadtest::scenario::DEV_SECRET.into(),
            agent_user: "demo".into(),
            agent_pass: "demo".into(),
            redis_url: Some(self.redis_url.clone()),
            key_prefix: self.prefix.clone(),
            log_shards: 4,
        }
    }
}
