//! The git side: finding clones, locating PRs, extracting their changes.

pub mod clones;
pub mod funcname;
pub mod history;
pub mod mine;
pub mod pullindex;
