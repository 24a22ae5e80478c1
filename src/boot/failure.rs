//! A machine's last failure: what it asked for, what it was told, when,
//! how many times, and what a sysadmin can do about it. Kept across a
//! boot's tries until the machine gets past it (see [`super::timeline`]).

use serde::{Deserialize, Serialize};

use super::Stage;

/// A step that failed, and how often in a row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub stage: Stage,
    /// What was asked: `/assets/flatcar/initrd.cpio.gz`, `DHCPDISCOVER`.
    pub asked: String,
    /// What the machine was told: `not found (404)`.
    pub answer: String,
    /// What to do about it, when the server knows.
    pub fix: Option<String>,
    /// When it first and last failed this way (unix ms).
    pub first_at: u64,
    pub at: u64,
    /// How many times in a row.
    pub times: u32,
}

impl Failure {
    /// The sentence the page, `nodes` and the API show:
    /// `failed at initrd: /assets/f/initrd.img not found (404), 3 tries`.
    pub fn message(&self) -> String {
        let mut m = format!(
            "failed at {}: {} {}",
            self.stage.name(),
            self.asked,
            self.answer
        );
        if self.times > 1 {
            m.push_str(&format!(", {} tries", self.times));
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_names_the_stage_the_request_the_answer_and_the_tries() {
        let mut f = Failure {
            stage: Stage::Initrd,
            asked: "/assets/flatcar/initrd.cpio.gz".into(),
            answer: "not found (404)".into(),
            fix: None,
            first_at: 1,
            at: 2,
            times: 1,
        };
        assert_eq!(
            f.message(),
            "failed at initrd: /assets/flatcar/initrd.cpio.gz not found (404)"
        );
        f.times = 3;
        assert!(f.message().ends_with("(404), 3 tries"), "{}", f.message());
    }
}
