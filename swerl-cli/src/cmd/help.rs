//! Help texts whose `[default: ...]` comes from the value the code really uses (a config's
//! `Default`), so that the help and the behaviour cannot drift apart.

use clap::Command;

/// Appends `[default: value]` to the help of each named argument of `cmd`; names without an
/// argument are ignored (the CLI tests check that every config key has its flag).
pub(crate) fn with_defaults<'a>(
    mut cmd: Command,
    defaults: impl IntoIterator<Item = (&'a str, String)>,
) -> Command {
    for (id, value) in defaults {
        if !cmd.get_arguments().any(|a| a.get_id() == id) {
            continue;
        }
        cmd = cmd.mut_arg(id, |arg| {
            let short = arg.get_help().map(ToString::to_string).unwrap_or_default();
            let long = arg.get_long_help().map(ToString::to_string);
            let arg = arg.help(format!("{short} [default: {value}]"));
            match long {
                Some(long) => arg.long_help(format!("{long}\n\n[default: {value}]")),
                None => arg,
            }
        });
    }
    cmd
}

/// A config value as the help shows it: strings bare, `null` as `none`.
pub(crate) fn render(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "none".to_owned(),
        other => other.to_string(),
    }
}

/// The top-level keys of a serialisable config with their rendered default values.
pub(crate) fn config_defaults<T: serde::Serialize>(config: &T) -> Vec<(String, String)> {
    match serde_json::to_value(config) {
        Ok(serde_json::Value::Object(map)) => map.iter().map(|(k, v)| (k.clone(), render(v))).collect(),
        _ => Vec::new(),
    }
}
