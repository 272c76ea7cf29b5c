//! A message's meta value in Redis (`{c:<id>}:meta`, field = seq):
//! `side|deleted|excerpt`, read for edit rights and reply quotes. Written by
//! the send and mutate scripts (`lua/meta.lua`) and, after Redis lost it,
//! restored from the SQL record here: one definition on each side.

use schema::frames::MessageKind;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    /// `customer`, `staff` or `system` (see [`Meta::side_of`]).
    pub side: String,
    pub deleted: bool,
    /// Empty when deleted.
    pub excerpt: String,
}

impl Meta {
    /// The side recorded for a message kind (who may edit it).
    pub fn side_of(kind: MessageKind) -> &'static str {
        match kind {
            MessageKind::Customer => "customer",
            MessageKind::Staff => "staff",
            MessageKind::System | MessageKind::Order => "system",
        }
    }

    /// The value as `meta_value` in `lua/meta.lua` writes it.
    pub fn encode(&self) -> String {
        if self.deleted {
            format!("{}|1|", self.side)
        } else {
            format!("{}|0|{}", self.side, self.excerpt)
        }
    }

    /// Parses a stored value; `None` when it is not `side|deleted|excerpt`.
    pub fn parse(v: &str) -> Option<Meta> {
        let mut parts = v.splitn(3, '|');
        let side = parts.next()?.to_string();
        let deleted = parts.next()? == "1";
        let excerpt = parts.next().unwrap_or("").to_string();
        Some(Meta { side, deleted, excerpt })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_excerpts_with_bars() {
        let m = Meta { side: "staff".into(), deleted: false, excerpt: "a|b".into() };
        assert_eq!(m.encode(), "staff|0|a|b");
        assert_eq!(Meta::parse(&m.encode()), Some(m));
        let d = Meta::parse("customer|1|").unwrap();
        assert!(d.deleted);
        assert_eq!(d.encode(), "customer|1|");
        assert_eq!(Meta::parse("nonsense"), None);
    }
}
