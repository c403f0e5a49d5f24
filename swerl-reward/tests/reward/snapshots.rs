//! Snapshots (`insta`) of rendered text: the paper's prompt for an instance and a `git diff`
//! patch. A change to either is a change of what models see or what tools read: review the
//! snapshot diff (`cargo insta review`, or `INSTA_UPDATE=always` and `git diff`).

use std::collections::BTreeMap;

use swerl_reward::{RlInstance, git_diff};

fn instance() -> RlInstance {
    RlInstance {
        instance_id: "acme__calc-1".into(),
        problem_statement: "mean([]) raises ZeroDivisionError\n\nIt should return 0.0.\n".into(),
        code_context: BTreeMap::from([
            ("calc/stats.py".to_owned(), "def mean(values):\n    return sum(values) / len(values)\n".to_owned()),
            ("docs/usage.md".to_owned(), "Use ```mean(xs)```.\n".to_owned()),
        ]),
        oracle_new_content: BTreeMap::from([(
            "calc/stats.py".to_owned(),
            "def mean(values):\n    if not values:\n        return 0.0\n    return sum(values) / len(values)\n".to_owned(),
        )]),
    }
}

#[test]
fn the_rendered_prompt() {
    let messages = instance().messages();
    let rendered: Vec<String> = messages.iter().map(|m| format!("<<{}>>\n{}", m.role, m.content)).collect();
    insta::assert_snapshot!(rendered.join("\n"));
}

#[test]
fn a_produced_patch() {
    let inst = instance();
    let mut after: BTreeMap<&str, &str> =
        inst.oracle_new_content.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    // A new file without a final newline and a path git quotes.
    after.insert("calc/nové.py", "x = 1");
    insta::assert_snapshot!(git_diff(&inst.code_context, &after));
}
