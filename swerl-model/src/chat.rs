//! Chat templates: the Jinja templates shipped with Hugging Face tokenizers, rendered with
//! [`minijinja`] configured as transformers configures Jinja2 (`trim_blocks`, `lstrip_blocks`,
//! Python string methods, `tojson`, `raise_exception`, `strftime_now`).

use std::time::{SystemTime, UNIX_EPOCH};

use minijinja::{Environment, ErrorKind, Value};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One chat message: swerl's one chat-message type, defined with the prompt format in
/// `swerl-reward`.
pub use swerl_reward::ChatMessage;

/// Special-token strings a template may refer to (`bos_token`, `eos_token`, ...).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpecialTokens {
    /// Beginning-of-sequence token text.
    pub bos_token: Option<String>,
    /// End-of-sequence token text.
    pub eos_token: Option<String>,
    /// Padding token text.
    pub pad_token: Option<String>,
    /// Unknown token text.
    pub unk_token: Option<String>,
}

/// A compiled chat template.
#[derive(Debug)]
pub struct ChatTemplate {
    env: Environment<'static>,
    source: String,
    specials: SpecialTokens,
}

impl Clone for ChatTemplate {
    fn clone(&self) -> Self {
        Self::new(&self.source, self.specials.clone(), "clone")
            .expect("a template that compiled once compiles again")
    }
}

const NAME: &str = "chat_template";

impl ChatTemplate {
    /// Compiles `source`; `origin` names where it came from in errors.
    pub fn new(source: &str, specials: SpecialTokens, origin: &str) -> Result<Self> {
        let mut env = Environment::new();
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(|e| template_error(origin, &e))?;
        env.set_syntax(syntax);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_template_owned(NAME, source.to_string()).map_err(|e| template_error(origin, &e))?;
        Ok(Self { env, source: source.to_string(), specials })
    }

    /// The template text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The special tokens passed to the template.
    pub fn special_tokens(&self) -> &SpecialTokens {
        &self.specials
    }

    /// Renders `messages` (any serialisable list of message objects, e.g. [`ChatMessage`]s or
    /// JSON values with tool calls), appending the assistant header when
    /// `add_generation_prompt` is set, as `tokenizer.apply_chat_template(tokenize=False)`.
    pub fn render<M: Serialize>(&self, messages: &[M], add_generation_prompt: bool) -> Result<String> {
        let tmpl = self.env.get_template(NAME).map_err(|e| template_error("render", &e))?;
        let ctx = minijinja::context! {
            messages => Value::from(minijinja::value::Serde(messages)),
            add_generation_prompt => add_generation_prompt,
            bos_token => self.specials.bos_token.clone().unwrap_or_default(),
            eos_token => self.specials.eos_token.clone().unwrap_or_default(),
            pad_token => self.specials.pad_token.clone().unwrap_or_default(),
            unk_token => self.specials.unk_token.clone().unwrap_or_default(),
        };
        tmpl.render(ctx).map_err(|e| template_error("render", &e))
    }
}

fn template_error(context: &str, e: &minijinja::Error) -> Error {
    let mut message = e.to_string();
    if let Some(line) = e.line() {
        message.push_str(&format!(" (template line {line})"));
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        message.push_str(&format!(": {s}"));
        source = s.source();
    }
    Error::ChatTemplate { context: context.to_string(), message }
}

fn raise_exception(message: String) -> std::result::Result<Value, minijinja::Error> {
    Err(minijinja::Error::new(ErrorKind::InvalidOperation, message))
}

/// `strftime_now(format)` as transformers provides it, for the common directives.
fn strftime_now(format: String) -> String {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    strftime(secs, &format)
}

fn strftime(unix_secs: u64, format: &str) -> String {
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    let days = (unix_secs / 86_400) as i64;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let secs_of_day = unix_secs % 86_400;
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('d') => out.push_str(&format!("{day:02}")),
            Some('m') => out.push_str(&format!("{month:02}")),
            Some('Y') => out.push_str(&year.to_string()),
            Some('y') => out.push_str(&format!("{:02}", year % 100)),
            Some('B') => out.push_str(MONTHS[(month - 1) as usize]),
            Some('b') => out.push_str(&MONTHS[(month - 1) as usize][..3]),
            Some('H') => out.push_str(&format!("{:02}", secs_of_day / 3600)),
            Some('M') => out.push_str(&format!("{:02}", secs_of_day / 60 % 60)),
            Some('S') => out.push_str(&format!("{:02}", secs_of_day % 60)),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SmolLM2-Instruct's ChatML template (from its `tokenizer_config.json`).
    const CHATML: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    /// The Llama 3.1 Instruct template, abridged to its non-tool path but keeping its Jinja
    /// features (namespace-free `set`, `strip()`, `raise_exception`, whitespace control).
    const LLAMA3: &str = r#"{{- bos_token }}
{%- if not date_string is defined %}
    {%- set date_string = "26 Jul 2024" %}
{%- endif %}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}
{{- "<|start_header_id|>system<|end_header_id|>\n\n" }}
{{- "Cutting Knowledge Date: December 2023\n" }}
{{- "Today Date: " + date_string + "\n\n" }}
{{- system_message }}
{{- "<|eot_id|>" }}
{%- for message in messages %}
    {%- if message.role not in ['user', 'assistant'] %}
        {{- raise_exception("unknown role " + message.role) }}
    {%- endif %}
    {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'].strip() + '<|eot_id|>' }}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}
{%- endif %}
"#;

    #[test]
    fn renders_chatml_like_transformers() {
        let t = ChatTemplate::new(CHATML, SpecialTokens::default(), "test").unwrap();
        let out = t.render(&[ChatMessage::user("Hi!")], true).unwrap();
        assert_eq!(
            out,
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn renders_llama3_with_python_methods_and_errors() {
        let specials =
            SpecialTokens { bos_token: Some("<|begin_of_text|>".into()), ..SpecialTokens::default() };
        let t = ChatTemplate::new(LLAMA3, specials, "test").unwrap();
        let msgs = [ChatMessage::system("Be brief. "), ChatMessage::user("  2+2?  ")];
        let out = t.render(&msgs, true).unwrap();
        assert_eq!(
            out,
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\nBe brief.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n2+2?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
        );
        let err = t.render(&[ChatMessage::new("robot", "x")], false).unwrap_err();
        assert!(err.to_string().contains("unknown role robot"), "{err}");
    }

    #[test]
    fn bad_templates_are_reported_with_their_origin() {
        let err =
            ChatTemplate::new("{% for %}", SpecialTokens::default(), "tokenizer_config.json").unwrap_err();
        assert!(err.to_string().contains("tokenizer_config.json"), "{err}");
    }

    #[test]
    fn strftime_formats_known_dates() {
        // 2024-07-26T13:05:09Z
        assert_eq!(strftime(1_721_999_109, "%d %b %Y"), "26 Jul 2024");
        assert_eq!(strftime(1_721_999_109, "%Y-%m-%d %H:%M:%S %B"), "2024-07-26 13:05:09 July");
        assert_eq!(strftime(0, "%d %B %y %%"), "01 January 70 %");
    }
}
