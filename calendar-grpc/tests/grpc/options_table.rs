//! The README's configuration tables checked against the binaries' `--help`, so neither can
//! drift from the other.
//!
//! A table follows a marker line `<!-- options: NAME -->` and has the columns `variable`,
//! `flag`, `default` and `meaning`, plus `role` for a binary with subcommands (each row names
//! the role it applies to, or `both`). Cells: `` `CALENDAR_X` `` or `—` (no variable);
//! `` `--flag` ``; `` `value` `` (clap's default, exactly), `unset` (optional, no default) or
//! `required`. Every possible value of an option must be named in its meaning.
//!
//! Shared by the tests of calendar-grpc (`calendar-grpc`, `calendar`) and calendar-worker
//! (`calendar-worker scheduler|sender`), which include this file by path: each crate can only
//! run its own binaries.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// An option as `--help` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct HelpOption {
    /// The environment variable, if any.
    pub(crate) env: Option<String>,
    /// The default, if any.
    pub(crate) default: Option<String>,
    /// The possible values, if listed.
    pub(crate) values: Vec<String>,
    /// Whether the usage line requires it.
    pub(crate) required: bool,
}

/// The README at the workspace root, as seen from a member crate's manifest directory.
pub(crate) fn readme(manifest_dir: &str) -> String {
    let path = Path::new(manifest_dir).join("../README.md");
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// What `exe args... --help` prints, run with an empty environment so that no variable of the
/// test's own shows up as a value.
pub(crate) fn help_of(exe: &str, args: &[&str]) -> String {
    let output = Command::new(exe)
        .args(args)
        .arg("--help")
        .env_clear()
        .output()
        .unwrap_or_else(|error| panic!("cannot run {exe}: {error}"));
    assert!(output.status.success(), "{exe} {args:?} --help failed");
    String::from_utf8(output.stdout).unwrap()
}

/// The flag an option line of `--help` starts with (`  -u, --user <USER> ...`), if it is one.
fn option_line(line: &str) -> Option<String> {
    let indent = line.len() - line.trim_start().len();
    if !(2..=6).contains(&indent) {
        return None;
    }
    let mut rest = line.trim_start();
    if rest.len() > 4 && rest.starts_with('-') && !rest.starts_with("--") && &rest[2..4] == ", " {
        rest = &rest[4..];
    }
    let flag = rest.strip_prefix("--")?;
    let name: String = flag
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    (!name.is_empty()).then(|| format!("--{name}"))
}

/// The text of every `[key: value]` in `text`.
fn bracketed<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let start = text.find(&format!("[{key}: "))? + key.len() + 3;
    let end = text[start..].find(']')? + start;
    Some(&text[start..end])
}

/// Every option of a `--help` output (clap's short or long format) by flag, without `--help`
/// and `--version`.
pub(crate) fn parse_help(help: &str) -> BTreeMap<String, HelpOption> {
    let usage = help
        .lines()
        .find_map(|line| line.strip_prefix("Usage: "))
        .unwrap_or_default()
        .replace("[OPTIONS]", "");
    let mut entries: Vec<(String, String)> = Vec::new();
    for line in help.lines() {
        if let Some(flag) = option_line(line) {
            entries.push((flag, line.to_owned()));
        } else if !line.is_empty() && !line.starts_with(' ') {
            // A heading: the entry before it is complete.
            entries.push((String::new(), String::new()));
        } else if let Some((_, text)) = entries.last_mut() {
            text.push('\n');
            text.push_str(line);
        }
    }
    let mut options = BTreeMap::new();
    for (flag, text) in entries {
        if flag.is_empty() || flag == "--help" || flag == "--version" {
            continue;
        }
        let mut values: Vec<String> = bracketed(&text, "possible values")
            .map(|list| list.split(", ").map(str::to_owned).collect())
            .unwrap_or_default();
        if let Some(listed) = text.split("Possible values:").nth(1) {
            values.extend(listed.lines().filter_map(|line| {
                let item = line.trim().strip_prefix("- ")?;
                Some(item.split(':').next()?.trim().to_owned())
            }));
        }
        let option = HelpOption {
            env: bracketed(&text, "env").map(|env| env.split('=').next().unwrap_or(env).to_owned()),
            default: bracketed(&text, "default").map(str::to_owned),
            values,
            required: usage.split_whitespace().any(|word| word == flag),
        };
        options.insert(flag, option);
    }
    options
}

/// A row of a README table.
#[derive(Debug, Clone)]
struct Row {
    cells: BTreeMap<String, String>,
}

impl Row {
    fn cell(&self, column: &str) -> &str {
        self.cells.get(column).map_or("", String::as_str)
    }
}

fn split_row(line: &str) -> Vec<String> {
    line.trim()
        .trim_start_matches('|')
        .trim_end_matches('|')
        .split('|')
        .map(|cell| cell.trim().to_owned())
        .collect()
}

/// The rows of the table after `<!-- options: {name} -->`.
fn table(readme: &str, name: &str) -> Result<Vec<Row>, String> {
    let marker = format!("<!-- options: {name} -->");
    let after = readme
        .split_once(&marker)
        .ok_or_else(|| format!("README.md has no `{marker}` before a table"))?
        .1;
    let mut lines = after
        .lines()
        .map(str::trim)
        .skip_while(|line| line.is_empty());
    let header: Vec<String> = split_row(lines.next().unwrap_or_default())
        .into_iter()
        .map(|cell| cell.to_lowercase())
        .collect();
    if !header.iter().any(|column| column == "flag") {
        return Err(format!("the table after `{marker}` has no `flag` column"));
    }
    lines.next(); // |---|---|
    Ok(lines
        .take_while(|line| line.starts_with('|'))
        .map(|line| Row {
            cells: header.iter().cloned().zip(split_row(line)).collect(),
        })
        .collect())
}

/// `` `text` `` without its backticks; None if the cell is not one code span.
fn code(cell: &str) -> Option<&str> {
    cell.strip_prefix('`')?.strip_suffix('`')
}

/// Compares the table `name` with the helps of the binary's roles (`("", help)` for a binary
/// without roles) and returns every difference, in the README's terms.
pub(crate) fn differences(readme: &str, name: &str, helps: &[(&str, &str)]) -> Vec<String> {
    let rows = match table(readme, name) {
        Ok(rows) => rows,
        Err(problem) => return vec![problem],
    };
    let mut problems = Vec::new();
    if rows.is_empty() {
        problems.push(format!("the `{name}` table has no rows"));
    }
    for (role, help) in helps {
        let context = if role.is_empty() {
            format!("`{name}`")
        } else {
            format!("`{name} {role}`")
        };
        let options = parse_help(help);
        if options.is_empty() {
            problems.push(format!("{context} --help lists no options"));
        }
        let mut documented = BTreeMap::new();
        for row in &rows {
            let applies =
                role.is_empty() || matches!(row.cell("role"), "both") || row.cell("role") == *role;
            if !applies {
                continue;
            }
            let Some(flag) = code(row.cell("flag")) else {
                problems.push(format!(
                    "{context}: the flag cell {:?} is not `--flag`",
                    row.cell("flag")
                ));
                continue;
            };
            if documented.insert(flag.to_owned(), row.clone()).is_some() {
                problems.push(format!("{context}: {flag} has two rows"));
            }
        }
        for (flag, option) in &options {
            let Some(row) = documented.get(flag) else {
                problems.push(format!(
                    "{context}: {flag} ({}) is missing from the README table",
                    option.env.as_deref().unwrap_or("no variable")
                ));
                continue;
            };
            let variable = row.cell("variable");
            match &option.env {
                Some(env) if code(variable) != Some(env.as_str()) => problems.push(format!(
                    "{context}: {flag} reads {env}, the README says {variable}"
                )),
                None if variable != "—" => problems.push(format!(
                    "{context}: {flag} has no variable, the README says {variable} (write —)"
                )),
                _ => {}
            }
            let default = row.cell("default");
            match &option.default {
                Some(value) if code(default) != Some(value.as_str()) => problems.push(format!(
                    "{context}: {flag} defaults to `{value}`, the README says {default}"
                )),
                None if option.required && default != "required" => problems.push(format!(
                    "{context}: {flag} is required, the README says {default}"
                )),
                None if !option.required && default != "unset" => problems.push(format!(
                    "{context}: {flag} has no default, the README says {default} (write unset)"
                )),
                _ => {}
            }
            let meaning = row.cell("meaning");
            if meaning.is_empty() {
                problems.push(format!("{context}: {flag} has no meaning"));
            }
            for value in &option.values {
                if !meaning.contains(&format!("`{value}`")) {
                    problems.push(format!(
                        "{context}: {flag}'s meaning does not name `{value}`"
                    ));
                }
            }
        }
        for flag in documented.keys() {
            if !options.contains_key(flag) {
                problems.push(format!(
                    "{context}: the README documents {flag}, which --help does not list"
                ));
            }
        }
    }
    problems
}

/// Fails with every difference between the table and the helps.
pub(crate) fn assert_documented(readme: &str, name: &str, helps: &[(&str, &str)]) {
    let problems = differences(readme, name, helps);
    assert!(
        problems.is_empty(),
        "README.md's configuration table `{name}` disagrees with --help (update the table):\n  {}",
        problems.join("\n  ")
    );
}
