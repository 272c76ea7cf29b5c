//! Every Lua script of the gateway, loaded from `lua/*.lua` at compile time.
//! Shared fragments (`hot.lua`, `meta.lua`) are preludes of the scripts that
//! call them; all run through [`redis_conn::LuaScript`] (`EVALSHA`, then
//! `EVAL` when the server lost the script).

use redis_conn::LuaScript;

const HOT: &str = include_str!("lua/hot.lua");
const META: &str = include_str!("lua/meta.lua");

pub struct Scripts {
    /// A new message: dedupe, number, replay, publish, log.
    pub send: LuaScript,
    /// Edit or delete of a message.
    pub mutate: LuaScript,
    /// A reaction on or off.
    pub react: LuaScript,
    /// Monotonic `delivered`/`seen` state.
    pub read: LuaScript,
    /// Seeds a conversation's state from the record.
    pub seed: LuaScript,
    /// An order card update takes a position.
    pub card_update: LuaScript,
    /// Releases an order's lock if it is still ours.
    pub order_unlock: LuaScript,
    /// Node liveness: heartbeat, claim of a silent node, rejoin, unlock.
    pub node_beat: LuaScript,
    pub node_claim: LuaScript,
    pub node_rejoin: LuaScript,
    pub node_unlock: LuaScript,
}

impl Default for Scripts {
    fn default() -> Self {
        Self {
            send: LuaScript::new("send", include_str!("lua/send.lua")),
            mutate: LuaScript::with_prelude("mutate", &[HOT, META], include_str!("lua/mutate.lua")),
            react: LuaScript::with_prelude("react", &[HOT, META], include_str!("lua/react.lua")),
            read: LuaScript::new("read", include_str!("lua/read.lua")),
            seed: LuaScript::new("seed", include_str!("lua/seed.lua")),
            card_update: LuaScript::with_prelude("card_update", &[HOT], include_str!("lua/card_update.lua")),
            order_unlock: LuaScript::new("order_unlock", include_str!("lua/order_unlock.lua")),
            node_beat: LuaScript::new("node_beat", include_str!("lua/node_beat.lua")),
            node_claim: LuaScript::new("node_claim", include_str!("lua/node_claim.lua")),
            node_rejoin: LuaScript::new("node_rejoin", include_str!("lua/node_rejoin.lua")),
            node_unlock: LuaScript::new("node_unlock", include_str!("lua/node_unlock.lua")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_carry_their_preludes() {
        let s = Scripts::default();
        assert!(s.mutate.source().starts_with(HOT));
        assert!(s.react.source().contains("local function meta_of"));
        assert!(s.card_update.source().contains("local function hot"));
        // The send script needs no helper: nothing is assembled in Lua.
        assert!(!s.send.source().contains("local function"));
    }
}
