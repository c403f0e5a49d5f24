//! GGUF header reading: arbitrary bytes open as an error or a header whose config validates.
#![no_main]

use libfuzzer_sys::fuzz_target;
use swerl_model::GgufFile;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("m.gguf");
    std::fs::write(&path, data).expect("write");
    if let Ok(file) = GgufFile::open(&path)
        && let Ok(config) = file.config()
    {
        config.validate("fuzz").expect("a config GGUF returns is valid");
        let _ = file.tokenizer();
    }
});
