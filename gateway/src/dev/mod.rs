//! Dev mode only (`CHAT_DEV=1`): demo data ([`seed`]).

pub mod seed;
