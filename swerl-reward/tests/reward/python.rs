//! Live differential test: random cases scored by swerl and by `tests/golden/reference.py`
//! (the spec on CPython's standard library), started as a subprocess on this machine.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use serde_json::{Value, json};
use swerl_reward::difflib::SequenceMatcher;
use swerl_reward::{Scorer, normalized_patch};

/// A small deterministic generator (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const LINES: &[&str] = &[
    "",
    "    pass",
    "}",
    "def f(x):",
    "    return x",
    "    return x + 1",
    "x = 1",
    "y = x",
    "# é 😀",
    "\tz\r",
    "a\u{2028}b",
    "    if x:",
    "        x -= 1",
];

fn file(rng: &mut Rng, max_lines: usize) -> String {
    let n = rng.below(max_lines + 1);
    let mut text: String = (0..n).map(|_| format!("{}\n", rng.pick(LINES))).collect();
    if rng.below(4) == 0 {
        text.pop();
    }
    text
}

fn case(rng: &mut Rng) -> Value {
    let old = file(rng, 30);
    let oracle = file(rng, 30);
    let lines: Vec<&str> = old.split('\n').collect();
    let mut blocks = String::new();
    for _ in 0..1 + rng.below(3) {
        let start = rng.below(lines.len());
        let end = (start + 1 + rng.below(3)).min(lines.len());
        let search = lines[start..end].join("\n");
        let replace = file(rng, 3);
        let path = if rng.below(8) == 0 { "new.py" } else { "f.py" };
        blocks.push_str(&format!(
            "```python\n### {path}\n<<<<<<< SEARCH\n{search}\n=======\n{}\n>>>>>>> REPLACE\n```\n",
            replace.trim_end_matches('\n')
        ));
    }
    let thought = ["plan", "fix f", "x\ny", "plan", "", " \u{3000} "][rng.below(6)];
    let output = if rng.below(6) == 0 {
        format!("<solution>\n{blocks}</solution>\n<think>{thought}</think>")
    } else {
        format!("<think>{thought}</think>\n<solution>\n{blocks}</solution>")
    };
    json!({"kind": "reward", "code_context": {"f.py": old}, "oracle_new_content": {"f.py": oracle}, "output": output})
}

fn ask_python(requests: &[Value]) -> Vec<Value> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/reference.py");
    let mut child = Command::new("python3")
        .args([script, "serve"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 must be installed to run the differential test");
    let mut stdin = child.stdin.take().unwrap();
    let payload: String = requests.iter().map(|r| format!("{r}\n")).collect();
    let writer = std::thread::spawn(move || stdin.write_all(payload.as_bytes()));
    let answers: Vec<Value> = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map(|l| serde_json::from_str(&l.unwrap()).unwrap())
        .collect();
    writer.join().unwrap().unwrap();
    assert!(child.wait().unwrap().success(), "reference.py failed");
    assert_eq!(answers.len(), requests.len());
    answers
}

#[test]
fn random_cases_agree_with_python() {
    let mut rng = Rng(0x5eed_2025);
    let mut requests: Vec<Value> = (0..400).map(|_| case(&mut rng)).collect();
    for _ in 0..200 {
        let a: String = (0..rng.below(80)).map(|_| rng.pick(&["a", "b", " ", "\n", "é"])).collect();
        let b: String = (0..rng.below(80)).map(|_| rng.pick(&["a", "b", " ", "\n", "é"])).collect();
        requests.push(json!({"kind": "matcher", "a": a, "b": b, "autojunk": rng.below(2) == 0}));
    }
    for _ in 0..100 {
        requests.push(json!({"kind": "change_text", "old": file(&mut rng, 250), "new": file(&mut rng, 250)}));
    }
    let answers = ask_python(&requests);
    let mut formatted = 0;
    for (i, (req, want)) in requests.iter().zip(&answers).enumerate() {
        match req["kind"].as_str().unwrap() {
            "reward" => {
                let ctx: BTreeMap<String, String> =
                    serde_json::from_value(req["code_context"].clone()).unwrap();
                let orc: BTreeMap<String, String> =
                    serde_json::from_value(req["oracle_new_content"].clone()).unwrap();
                let got = Scorer::new(&ctx, &orc).reward(req["output"].as_str().unwrap());
                let want = want["reward"].as_f64().unwrap();
                assert!((got - want).abs() <= 1e-9, "case {i}: {got} != {want}\n{req}");
                formatted += usize::from(want >= 0.0);
            }
            "matcher" => {
                let a: Vec<char> = req["a"].as_str().unwrap().chars().collect();
                let b: Vec<char> = req["b"].as_str().unwrap().chars().collect();
                let m = SequenceMatcher::with_autojunk(&a, &b, req["autojunk"].as_bool().unwrap());
                let blocks: Vec<[usize; 3]> =
                    m.matching_blocks().iter().map(|x| [x.a, x.b, x.size]).collect();
                assert_eq!(json!(blocks), want["blocks"], "case {i}");
                assert_eq!(m.ratio(), want["ratio"].as_f64().unwrap(), "case {i}");
            }
            _ => {
                let old = BTreeMap::from([("f", req["old"].as_str().unwrap())]);
                let new = BTreeMap::from([("f", req["new"].as_str().unwrap())]);
                let got = normalized_patch(&old, &new).remove("f").unwrap_or_default();
                assert_eq!(got, want["text"].as_str().unwrap(), "case {i}");
            }
        }
    }
    assert!(formatted > 100, "too few well-formatted cases ({formatted}) to mean anything");
}
