//! Frames are rendered once with placeholders (`"pos":0,`, `"seq":0,`,
//! `"reactions":{},`). The scripts keep and publish them as they are (only
//! the reactions are spliced in, by `react.lua`); whoever reads one from the
//! replay stream or a channel fills the position ([`subst_position`]).

/// Replaces a `"field":0,` placeholder (the first: frames render their
/// fields before any user text, and a user's quote is escaped as `\"`).
pub fn subst(frame: &str, field: &str, v: u64) -> String {
    let pat = format!("\"{field}\":0,");
    match frame.find(&pat) {
        Some(i) => format!("{}\"{field}\":{v},{}", &frame[..i], &frame[i + pat.len()..]),
        None => frame.to_string(),
    }
}

/// Fills the `"pos":0,` and `"seq":0,` placeholders of a kept or published
/// frame from its position (a message's seq is its position; other frames
/// have no `"seq":0,`: their `seq` names an earlier message, never 0).
pub fn subst_position(template: &str, pos: u64) -> String {
    subst(&subst(template, "pos", pos), "seq", pos)
}

#[cfg(test)]
mod tests {
    #[test]
    fn fills_the_first_placeholder_only() {
        assert_eq!(super::subst(r#"{"pos":0,"seq":0,"t":"\"pos\":0,"}"#, "pos", 7), r#"{"pos":7,"seq":0,"t":"\"pos\":0,"}"#);
        assert_eq!(super::subst_position(r#"{"pos":0,"message":{"seq":0,"t":1}}"#, 5), r#"{"pos":5,"message":{"seq":5,"t":1}}"#);
        assert_eq!(super::subst_position(r#"{"pos":0,"seq":4,"x":1}"#, 9), r#"{"pos":9,"seq":4,"x":1}"#);
    }
}
