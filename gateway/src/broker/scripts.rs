//! Every Lua script of the gateway, loaded from `lua/*.lua` at compile time.
//! Shared fragments (`subst.lua`, `hot.lua`, `meta.lua`) are preludes of the
//! scripts that call them; all run through [`redis_conn::LuaScript`]
//! (`EVALSHA`, then `EVAL` when the server lost the script).

use redis_conn::LuaScript;

const SUBST: &str = include_str!("lua/subst.lua");
const HOT: &str = include_str!("lua/hot.lua");
const META: &str = include_str!("lua/meta.lua");

pub struct Scripts {
    /// A new message: dedupe, number, replay, meta; returns the targets.
    pub send: LuaScript,
    /// Edit or delete of a message.
    pub mutate: LuaScript,
    /// A reaction on or off.
    pub react: LuaScript,
    /// Monotonic `delivered`/`seen` state.
    pub read: LuaScript,
    /// One fewer watcher of a conversation on a node.
    pub unwatch: LuaScript,
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
            send: LuaScript::with_prelude("send", &[SUBST, HOT, META], include_str!("lua/send.lua")),
            mutate: LuaScript::with_prelude("mutate", &[SUBST, HOT, META], include_str!("lua/mutate.lua")),
            react: LuaScript::with_prelude("react", &[SUBST, HOT, META], include_str!("lua/react.lua")),
            read: LuaScript::new("read", include_str!("lua/read.lua")),
            unwatch: LuaScript::new("unwatch", include_str!("lua/unwatch.lua")),
            card_update: LuaScript::with_prelude("card_update", &[SUBST, HOT], include_str!("lua/card_update.lua")),
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
        assert!(s.send.source().starts_with(SUBST));
        assert!(s.send.source().contains("local function meta_value"));
        assert!(s.card_update.source().contains("local function hot"));
        assert!(!s.read.source().contains("local function subst"));
        // The publish-in-script half is gone.
        assert!(!s.send.source().contains("KEYS[8]"));
    }
}
