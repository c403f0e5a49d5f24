//! The help texts: snapshots of `swerl --help` and each subcommand's, and the train flags'
//! defaults against `TrainConfig::default()`.

use crate::helpers::{assert_code, run, stdout};

fn help(args: &[&str]) -> String {
    let o = run(args.iter().copied().chain(["--help"]));
    assert_code(&o, 0);
    stdout(&o)
}

#[test]
fn help_snapshots() {
    insta::assert_snapshot!("swerl", help(&[]));
    for sub in ["mine", "reward", "train", "sft", "logprobs", "generate", "eval", "serve", "plot"] {
        insta::assert_snapshot!(sub, help(&[sub]));
    }
    insta::assert_snapshot!("mine_merge", help(&["mine", "merge"]));
    insta::assert_snapshot!("eval_harness", help(&["eval", "harness"]));
    insta::assert_snapshot!("eval_agentless", help(&["eval", "agentless"]));
    insta::assert_snapshot!("eval_repair", help(&["eval", "repair"]));
}

/// The help block of flag `--name`: its lines up to the next flag, whitespace collapsed.
fn flag_block(help: &str, name: &str) -> Option<String> {
    let start = help.lines().position(|l| {
        let l = l.trim_start();
        l.starts_with(&format!("{name} ")) || l == name || l.starts_with(&format!("{name}="))
    })?;
    let mut text: Vec<&str> = vec![help.lines().nth(start)?];
    for l in help.lines().skip(start + 1) {
        let t = l.trim_start();
        if t.starts_with("--") || t.starts_with('-') && t.chars().nth(1).is_some_and(|c| c.is_alphabetic()) {
            break;
        }
        text.push(t);
    }
    Some(text.join(" ").split_whitespace().collect::<Vec<_>>().join(" "))
}

#[test]
fn every_train_and_sft_config_key_has_a_flag_showing_its_default() {
    let configs = [
        ("train", serde_json::to_value(swerl_grpo::TrainConfig::default()).expect("serialises")),
        ("sft", serde_json::to_value(swerl_grpo::sft::SftConfig::default()).expect("serialises")),
    ];
    for (sub, defaults) in configs {
        let help = help(&[sub]);
        let keys = defaults.as_object().expect("an object");
        assert!(keys.len() > 20, "{keys:?}");
        for (key, value) in keys {
            let flag = format!("--{}", key.replace('_', "-"));
            let block = flag_block(&help, &flag).unwrap_or_else(|| panic!("no {flag} in\n{help}"));
            let shown = match value {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Null => "none".to_owned(),
                v => v.to_string(),
            };
            assert!(
                block.contains(&format!("[default: {shown}]")),
                "{sub} {flag}: `{block}` lacks [default: {shown}]"
            );
        }
    }
}
