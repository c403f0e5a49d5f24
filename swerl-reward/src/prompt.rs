//! Prompts in the SWE-RL structure: a system message asking for reasoning in `<think>` and the
//! answer in `<solution>`, then the issue, the code context as `### path` blocks and the
//! SEARCH/REPLACE instructions with an example. The text is our own; the structure is the
//! paper's. Rendering through a model's chat template and the context budget belong to the
//! model and the trainer.

use serde::{Deserialize, Serialize};

use crate::instance::RlInstance;

/// One chat message (`{"role": ..., "content": ...}`; `role` is `system`, `user`, `assistant`,
/// ...). The one chat-message type of swerl: the model's chat templates render it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ChatMessage {
    /// The speaker.
    pub role: String,
    /// The text.
    pub content: String,
}

impl ChatMessage {
    /// A message with the given role.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self { role: role.into(), content: content.into() }
    }

    /// A `system` message.
    pub fn system(content: impl Into<String>) -> Self {
        Self::new("system", content)
    }

    /// A `user` message.
    pub fn user(content: impl Into<String>) -> Self {
        Self::new("user", content)
    }

    /// An `assistant` message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new("assistant", content)
    }
}

/// The system message.
pub const SYSTEM_PROMPT: &str = "You are an experienced software engineer who resolves issues \
reported against code repositories. Before answering, work through the problem step by step \
inside <think> and </think>: understand the report, locate the code responsible and decide on a \
fix. Then write your final answer inside <solution> and </solution> as one or more SEARCH/REPLACE \
edits, in the format the user describes.";

/// The instructions placed after the code in the user message.
pub const EDIT_INSTRUCTIONS: &str = r#"Locate the cause of the issue in the files above and fix it with SEARCH/REPLACE edits. Each edit is a fenced code block made of:
1. a line `### ` followed by the path of the file to change;
2. the line `<<<<<<< SEARCH`;
3. lines copied exactly from the current file, indentation included, that identify the place to change;
4. the line `=======`;
5. the lines that should take their place;
6. the line `>>>>>>> REPLACE`.

For instance:

```python
### mathlib/stats.py
<<<<<<< SEARCH
def mean(values):
    return sum(values) / len(values)
=======
def mean(values):
    if not values:
        raise ValueError("mean() of an empty sequence")
    return sum(values) / len(values)
>>>>>>> REPLACE
```

Keep each SEARCH part short but long enough to be unique in its file; use several edits for several places. Indentation matters: REPLACE lines are written into the file exactly as you give them. To create a file, give an empty SEARCH part.

Answer in this shape:
<think>
your reasoning
</think>
<solution>
your edits
</solution>"#;

/// Builds the system and user messages for an instance, showing the files of `code_context`
/// whose paths are in `files` (in that order).
pub fn build_messages(instance: &RlInstance, files: &[&str]) -> Vec<ChatMessage> {
    let mut user = String::with_capacity(
        instance.problem_statement.len()
            + files.iter().map(|f| instance.code_context.get(*f).map_or(0, String::len) + 64).sum::<usize>()
            + EDIT_INSTRUCTIONS.len()
            + 256,
    );
    user.push_str("Here is an issue reported against our repository:\n\n<issue>\n");
    user.push_str(instance.problem_statement.trim_end());
    user.push_str("\n</issue>\n\n");
    if files.is_empty() {
        user.push_str("No file contents are provided; new files may be created.\n\n");
    } else {
        user.push_str("These are the contents of the relevant files of the repository:\n\n");
        for path in files {
            let content = instance.code_context.get(*path).map_or("", String::as_str);
            push_file_block(&mut user, path, content);
        }
    }
    user.push_str(EDIT_INSTRUCTIONS);
    vec![ChatMessage::system(SYSTEM_PROMPT), ChatMessage::user(user)]
}

/// Appends `### path` and the content in a fence longer than any backtick run inside it.
fn push_file_block(out: &mut String, path: &str, content: &str) {
    let longest = longest_backtick_run(content);
    let fence = "`".repeat(longest.max(2) + 1);
    out.push_str("### ");
    out.push_str(path);
    out.push('\n');
    out.push_str(&fence);
    out.push_str(language_hint(path));
    out.push('\n');
    out.push_str(content);
    if !content.is_empty() && !content.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(&fence);
    out.push_str("\n\n");
}

fn longest_backtick_run(s: &str) -> usize {
    let mut best = 0;
    let mut run = 0;
    for c in s.chars() {
        if c == '`' {
            run += 1;
            best = best.max(run);
        } else {
            run = 0;
        }
    }
    best
}

/// A fence info string from the file extension (helps the model, harmless when unknown).
fn language_hint(path: &str) -> &'static str {
    let ext = path.rsplit_once('.').map_or("", |(_, e)| e);
    match ext {
        "py" | "pyi" => "python",
        "rs" => "rust",
        "js" | "mjs" | "cjs" => "javascript",
        "ts" | "tsx" => "typescript",
        "java" => "java",
        "go" => "go",
        "c" | "h" => "c",
        "cc" | "cpp" | "cxx" | "hpp" | "hh" => "cpp",
        "rb" => "ruby",
        "php" => "php",
        "cs" => "csharp",
        "kt" | "kts" => "kotlin",
        "scala" => "scala",
        "swift" => "swift",
        "sh" | "bash" => "bash",
        "json" => "json",
        "toml" => "toml",
        "yaml" | "yml" => "yaml",
        "md" | "rst" | "txt" => "",
        _ => "",
    }
}

impl RlInstance {
    /// The files a prompt shows, in the order it shows them: the context's own (sorted by path).
    pub fn prompt_files(&self) -> Vec<&str> {
        self.code_context.keys().map(String::as_str).collect()
    }

    /// Files that may be dropped to fit a prompt budget: those the oracle does not change,
    /// largest first.
    pub fn droppable_files(&self) -> Vec<&str> {
        let mut files: Vec<&str> = self
            .code_context
            .keys()
            .map(String::as_str)
            .filter(|p| !self.oracle_new_content.contains_key(*p))
            .collect();
        files.sort_by_key(|p| std::cmp::Reverse(self.code_context[*p].len()));
        files
    }

    /// The paper's prompt for this instance with every context file (see [`build_messages`]).
    pub fn messages(&self) -> Vec<ChatMessage> {
        build_messages(self, &self.prompt_files())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn instance() -> RlInstance {
        RlInstance {
            instance_id: "o__r-1".into(),
            problem_statement: "Crash on empty input\n".into(),
            code_context: BTreeMap::from([
                ("a/big.md".to_owned(), "x ``` y\n".repeat(10)),
                ("a/mod.py".to_owned(), "def f():\n    return 1".to_owned()),
            ]),
            oracle_new_content: BTreeMap::from([(
                "a/mod.py".to_owned(),
                "def f():\n    return 2\n".to_owned(),
            )]),
        }
    }

    #[test]
    fn messages_have_the_paper_structure() {
        let inst = instance();
        let m = inst.messages();
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].role, "system");
        assert!(m[0].content.contains("<think>") && m[0].content.contains("<solution>"));
        let user = &m[1].content;
        assert!(user.contains("<issue>\nCrash on empty input\n</issue>"));
        assert!(user.contains("### a/mod.py\n```python\ndef f():\n    return 1\n```\n"));
        // A file containing ``` gets a longer fence.
        assert!(user.contains("### a/big.md\n````\nx ``` y\n"));
        let issue = user.find("<issue>").unwrap();
        let file = user.find("### a/mod.py").unwrap();
        let rules = user.find("<<<<<<< SEARCH").unwrap();
        assert!(issue < file && file < rules);
    }

    #[test]
    fn the_instruction_example_scores_one_with_the_real_reward() {
        // The example we show the model must be an edit the SWE-RL reward accepts.
        let begin = EDIT_INSTRUCTIONS.find("```python\n### ").unwrap();
        let end = EDIT_INSTRUCTIONS.find(">>>>>>> REPLACE\n```").unwrap() + ">>>>>>> REPLACE\n```".len();
        let block = &EDIT_INSTRUCTIONS[begin..end];
        let before = "import math\n\ndef mean(values):\n    return sum(values) / len(values)\n";
        let after = "import math\n\ndef mean(values):\n    if not values:\n        raise ValueError(\"mean() of an empty sequence\")\n    return sum(values) / len(values)\n";
        let context = BTreeMap::from([("mathlib/stats.py".to_owned(), before.to_owned())]);
        let oracle = BTreeMap::from([("mathlib/stats.py".to_owned(), after.to_owned())]);
        let completion = format!("<think>\nguard the empty case\n</think>\n<solution>\n{block}\n</solution>");
        assert_eq!(crate::reward(&context, &oracle, &completion), 1.0);
    }

    #[test]
    fn droppable_files_exclude_oracle_files_largest_first() {
        let mut inst = instance();
        inst.code_context.insert("z.txt".into(), "small".into());
        assert_eq!(inst.droppable_files(), vec!["a/big.md", "z.txt"]);
    }
}
