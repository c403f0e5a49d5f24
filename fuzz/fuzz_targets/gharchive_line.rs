//! GH Archive line parsing: an hour file of arbitrary bytes (plain `.json`, and the same bytes
//! gzipped) scans without panicking; every non-empty line is counted once.
#![no_main]

use libfuzzer_sys::fuzz_target;
use swerl_data::{ScanConfig, scan_file};

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("tmp");
    let config = ScanConfig { validate_all: data.first().is_some_and(|b| b & 1 == 1), max_line_bytes: 4096 };
    for name in ["2021-07-21-6.json", "2021-07-21-6.json.gz"] {
        let path = dir.path().join(name);
        std::fs::write(&path, data).expect("write");
        let scan = scan_file(&path, &config, &|_| {}).expect("an existing file scans");
        let s = &scan.stats;
        assert_eq!(s.events + s.malformed_lines + s.legacy_events, s.lines, "{s:?}");
    }
});
