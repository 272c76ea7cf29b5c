//! Dev mode demo data: the agent `demo` / `demo` and a few customers with
//! history, posted through the real send path (so the worker persists them).
//! Client ids are derived from the content, so two gateways seeding at once,
//! or a restart, post nothing twice.

use sha2::{Digest, Sha256};

use schema::frames::{MessageKind, UserKind, UserRef};

use crate::error::GatewayError;
use crate::handlers::{post_message, NewMessage};
use crate::registry::Identity;
use crate::state::AppState;

/// A UUID-shaped id derived from a name (stable across runs).
pub fn stable_uuid(name: &str) -> String {
    let h = hex::encode(Sha256::digest(name.as_bytes()));
    format!("{}-{}-4{}-a{}-{}", &h[0..8], &h[8..12], &h[13..16], &h[17..20], &h[20..32])
}

const CUSTOMERS: &[(&str, &[(bool, &str)])] = &[
    ("alice", &[(false, "Hi! I ordered a latte this morning but it never came."), (true, "Sorry about that, Alice! Let me check your order."), (false, "Thanks, it was order #1042.")]),
    ("bob", &[(false, "Do you have vegan options on the new menu?"), (true, "We do: oat milk for every drink and two vegan pastries."), (false, "Great, see you tomorrow!")]),
    ("carol", &[(false, "How many points do I need for a free coffee?")]),
    ("dave", &[(false, "My voucher code says expired, can you help?"), (true, "Of course, Dave. Which code is it?")]),
    ("erin", &[(false, "Is the shop on Main Street open on Sunday?")]),
];

pub async fn seed(state: &AppState) -> Result<(), GatewayError> {
    let agent = state.store.ensure_agent("demo", "Demo Agent", "demo").await?;
    if !state.cfg.demo_data {
        return Ok(());
    }
    let staff = UserRef { kind: UserKind::Agent, id: agent.id.clone(), username: agent.username.clone() };
    for (name, lines) in CUSTOMERS {
        let ident = Identity { kind: UserKind::Customer, id: name.to_string(), username: name.to_string(), display_name: None };
        crate::auth::ensure_customer_profile(state, &ident).await?;
        for (i, (from_staff, text)) in lines.iter().enumerate() {
            let (kind, author) = if *from_staff { (MessageKind::Staff, staff.clone()) } else { (MessageKind::Customer, ident.user_ref()) };
            let client_id = stable_uuid(&format!("seed:{name}:{i}"));
            post_message(
                state,
                NewMessage { conv: name, kind, author: Some(author), text, reply_to: None, client_id: &client_id, order_json: None },
            )
            .await?;
        }
    }
    tracing::info!("dev seed: agent demo/demo and {} demo customers", CUSTOMERS.len());
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn stable_uuid_is_a_uuid() {
        let u = super::stable_uuid("x");
        assert!(schema::ids::valid_client_id(&u), "{u}");
        assert_eq!(u, super::stable_uuid("x"));
    }
}
