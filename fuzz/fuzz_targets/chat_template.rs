//! Chat-template compilation and rendering: a template and messages from the input render or
//! fail with an error, never a panic or a hang.
#![no_main]

use libfuzzer_sys::fuzz_target;
use swerl_model::{ChatMessage, ChatTemplate, SpecialTokens};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (source, content) = text.split_once('\0').unwrap_or((text, "hello"));
    let specials =
        SpecialTokens { bos_token: Some("<s>".into()), eos_token: Some("</s>".into()), ..Default::default() };
    if let Ok(t) = ChatTemplate::new(source, specials, "fuzz") {
        let messages =
            [ChatMessage::system("s"), ChatMessage::user(content), ChatMessage::assistant(content)];
        let _ = t.render(&messages, true);
    }
});
