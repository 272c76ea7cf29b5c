//! Frames are rendered once with placeholders (`"pos":0,`, `"seq":0,`,
//! `"reactions":{},`) that the scripts fill in Redis (`lua/subst.lua`) and
//! the gateway fills the same way for the copy it relays.

/// Replaces a `"field":0,` placeholder, as `subst.lua` does.
pub fn subst(frame: &str, field: &str, v: u64) -> String {
    let pat = format!("\"{field}\":0,");
    match frame.find(&pat) {
        Some(i) => format!("{}\"{field}\":{v},{}", &frame[..i], &frame[i + pat.len()..]),
        None => frame.to_string(),
    }
}

/// Fills the `"reactions":{},` placeholder with the counts a script returned.
pub fn with_reactions(frame: &str, reactions_json: &str) -> String {
    frame.replacen("\"reactions\":{},", &format!("\"reactions\":{reactions_json},"), 1)
}

#[cfg(test)]
mod tests {
    #[test]
    fn fills_the_first_placeholder_only() {
        assert_eq!(super::subst(r#"{"pos":0,"seq":0,"t":"\"pos\":0,"}"#, "pos", 7), r#"{"pos":7,"seq":0,"t":"\"pos\":0,"}"#);
        assert_eq!(super::with_reactions(r#"{"reactions":{},"x":1}"#, r#"{"a":1}"#), r#"{"reactions":{"a":1},"x":1}"#);
    }
}
