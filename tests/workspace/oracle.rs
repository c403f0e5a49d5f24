//! The SFT target on real data: every vendored SWE-bench row, converted to an RL instance by
//! swerl-data, has an oracle answer (swerl-reward) that reproduces its change and scores 1.0.

use std::path::Path;

use anyhow::Result;

#[test]
fn the_oracle_answer_of_every_vendored_swebench_instance_scores_one() -> Result<()> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/swebench");
    let mut checked = 0;
    for file in ["lite-dev.json", "lite-test-sample.json"] {
        let path = dir.join(file);
        let text = std::fs::read_to_string(&path)?;
        let (instances, skipped) = swerl::data::swebench::rl_instances_from_swebench(&text, &path)?;
        assert!(skipped.is_empty(), "{file}: {skipped:?}");
        for inst in &instances {
            let answer = swerl::reward::oracle_answer(inst)?;
            let score = swerl::reward::score(&inst.code_context, &inst.oracle_new_content, &answer)?;
            assert_eq!(score.reward, 1.0, "{}: {answer}", inst.instance_id);
            // Minimal: no edit is the whole file when the file has unchanged lines around it.
            let edits: usize = swerl::reward::oracle_edits(inst)?.iter().map(|f| f.edits.len()).sum();
            assert!(edits >= inst.oracle_new_content.len(), "{}", inst.instance_id);
            checked += 1;
        }
    }
    assert!(checked >= 60, "{checked} instances");
    Ok(())
}
