//! Tests that cross the crates: the file formats between them (what `swerl mine` writes is what
//! `swerl train` reads) and the example binaries, run end to end on a git repository made here.

mod examples;
mod oracle;
mod pipeline;
mod support;
