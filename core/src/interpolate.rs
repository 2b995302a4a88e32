//! `${VAR}` interpolation of pipeline files, done on the text before YAML parsing.
//!
//! Forms:
//! - `${NAME}`: the variable's value; an unset variable is an error naming it and its
//!   `file:line:column`.
//! - `${NAME:-default}`: the default when the variable is unset or empty (shell semantics).
//! - `$${`: a literal `${` (nothing is interpolated).
//!
//! Interpolation happens in comments never, and respects YAML quoting so that a value always
//! becomes exactly the scalar's content: inside `"…"` quotes and backslashes are escaped,
//! inside `'…'` single quotes are doubled. A value with a line break is only accepted inside
//! double quotes (escaped as `\n`), because anywhere else it would change the YAML structure
//! and every line number after it.
//!
//! Line numbers never change. Columns after a substitution on the same line do, so the
//! result remembers every edit and maps a column of the interpolated text back to the
//! original ([`Interpolated::original_column`]). Values that came from the environment are
//! treated as secrets: [`Interpolated::redact`] replaces them with `***` in any message.

use crate::error::{error_chain, Error, Location, Result};

/// The interpolated text of one file, with what is needed to report errors against the
/// original text without revealing secrets.
#[derive(Debug, Clone, Default)]
pub struct Interpolated {
    /// The text with every `${…}` replaced.
    pub text: String,
    /// Values taken from the environment (redacted from messages).
    secrets: Secrets,
    /// Every replacement, in text order.
    edits: Vec<Edit>,
}

/// One replacement on one line, in character columns (1-based).
#[derive(Debug, Clone, Copy)]
struct Edit {
    line: u64,
    /// Column of the first replaced character in the original text.
    orig_col: u64,
    /// Characters replaced in the original text.
    orig_len: u64,
    /// Column of the replacement in the interpolated text.
    new_col: u64,
    /// Characters of the replacement.
    new_len: u64,
}

impl Interpolated {
    /// Text that needs no interpolation (e.g. YAML built in code), kept as is.
    pub fn verbatim(text: impl Into<String>) -> Self {
        Interpolated {
            text: text.into(),
            ..Default::default()
        }
    }

    /// Maps a 1-based character column of the interpolated text on `line` back to the
    /// original file. A column inside a replaced value maps to the `$` that produced it.
    pub fn original_column(&self, line: u64, column: u64) -> u64 {
        let mut shift: i64 = 0;
        for e in self.edits.iter().filter(|e| e.line == line) {
            if column < e.new_col {
                break;
            }
            if column < e.new_col + e.new_len {
                return e.orig_col;
            }
            shift = (e.orig_col + e.orig_len) as i64 - (e.new_col + e.new_len) as i64;
        }
        (column as i64 + shift).max(1) as u64
    }

    /// Replaces every value that came from the environment with `***`.
    pub fn redact(&self, message: &str) -> String {
        self.secrets.redact(message)
    }

    /// Whether any value came from the environment.
    pub fn has_secrets(&self) -> bool {
        !self.secrets.is_empty()
    }

    /// The values that came from the environment, to redact later messages (the runtime
    /// redacts a pipeline's errors with them).
    pub fn secrets(&self) -> &Secrets {
        &self.secrets
    }

    /// Rewrites a configuration error of the interpolated text so that it points at the
    /// original column and reveals no secret; other errors get their message redacted.
    pub fn fix_error(&self, err: Error) -> Error {
        match err {
            Error::Config { location, message } => Error::Config {
                location: location.map(|l| Location {
                    column: self.original_column(l.line, l.column),
                    ..l
                }),
                message: self.redact(&message),
            },
            other => self.secrets.redact_error(other),
        }
    }
}

/// Values interpolated from the environment, redacted from messages as `***`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Secrets(Vec<String>);

impl Secrets {
    /// Secrets from a list of values (empty ones are ignored).
    pub fn new(values: impl IntoIterator<Item = String>) -> Self {
        let mut v: Vec<String> = values.into_iter().filter(|s| !s.is_empty()).collect();
        v.sort_by_key(|s| std::cmp::Reverse(s.len()));
        v.dedup();
        Secrets(v)
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `message` with every secret replaced by `***`.
    ///
    /// Short values (under 4 characters) are replaced only where they stand alone as a
    /// word, so that a secret like `1` does not turn every digit of a message into `***`,
    /// while still never appearing as a token of its own.
    pub fn redact(&self, message: &str) -> String {
        let mut out = message.to_string();
        for s in &self.0 {
            if s.chars().count() >= 4 {
                out = out.replace(s.as_str(), "***");
            } else {
                out = replace_word(&out, s);
            }
        }
        out
    }

    /// An error rewritten so that no secret shows (unchanged when there are none).
    pub fn redact_error(&self, err: Error) -> Error {
        if self.is_empty() {
            return err;
        }
        match err {
            Error::Config { location, message } => Error::Config {
                location,
                message: self.redact(&message),
            },
            other => {
                let text = error_chain(&other);
                let redacted = self.redact(&text);
                if redacted == text {
                    other
                } else {
                    Error::Redacted {
                        kind: other.kind(),
                        retriable: other.is_retriable(),
                        text: redacted,
                    }
                }
            }
        }
    }
}

fn replace_word(text: &str, word: &str) -> String {
    if word.is_empty() {
        return text.to_string();
    }
    let is_word = |c: char| c.is_alphanumeric() || c == '_';
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut prev: Option<char> = None;
    while let Some(pos) = rest.find(word) {
        let before = rest[..pos].chars().last().or(prev);
        let after = rest[pos + word.len()..].chars().next();
        let standalone = !before.is_some_and(is_word) && !after.is_some_and(is_word);
        out.push_str(&rest[..pos]);
        out.push_str(if standalone { "***" } else { word });
        prev = word.chars().last();
        rest = &rest[pos + word.len()..];
    }
    out.push_str(rest);
    out
}

/// Interpolates `text` from the process environment. `file` names the file in errors.
pub fn interpolate(text: &str, file: &str) -> Result<Interpolated> {
    interpolate_with(text, file, |name| std::env::var(name).ok())
}

/// Where the scanner is in the YAML text: what a quote, `#` or backslash means there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ctx {
    Plain,
    Double,
    Single,
    Comment,
}

const UNTERMINATED: &str =
    "unterminated '${': write ${NAME} or ${NAME:-default} (or $${ for a literal '${')";

/// Interpolates `text` with variables from `lookup` (tests and embedders pass their own).
pub fn interpolate_with(
    text: &str,
    file: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Interpolated> {
    Scanner {
        chars: text.chars().collect(),
        file,
        lookup,
        out: String::with_capacity(text.len()),
        secrets: Vec::new(),
        edits: Vec::new(),
        i: 0,
        line: 1,
        col: 1,
        new_col: 1,
        ctx: Ctx::Plain,
        last_sig: None,
    }
    .run()
}

/// One pass over a pipeline file, copying it and replacing `${…}` references, while keeping
/// track of positions (for error locations and [`Edit`]s) and of the YAML context (a
/// substituted value is escaped for the quotes it lands in).
struct Scanner<'a, F> {
    chars: Vec<char>,
    file: &'a str,
    lookup: F,
    out: String,
    secrets: Vec<String>,
    edits: Vec<Edit>,
    /// Index into `chars`.
    i: usize,
    line: u64,
    /// Column in the original text.
    col: u64,
    /// Column in the interpolated text.
    new_col: u64,
    ctx: Ctx,
    /// The last non-blank character of the current line outside quotes, to tell a quote that
    /// opens a scalar (`key: "x"`) from an apostrophe inside a plain one (`it's`).
    last_sig: Option<char>,
}

impl<F: Fn(&str) -> Option<String>> Scanner<'_, F> {
    fn run(mut self) -> Result<Interpolated> {
        while self.i < self.chars.len() {
            if self.ctx != Ctx::Comment && self.at("$${") {
                self.literal_dollar_brace();
            } else if self.ctx != Ctx::Comment && self.at("${") {
                self.substitute()?;
            } else {
                self.copy_with_context();
            }
        }
        Ok(Interpolated {
            text: self.out,
            secrets: Secrets::new(self.secrets),
            edits: self.edits,
        })
    }

    /// Whether the text at the cursor starts with `s`.
    fn at(&self, s: &str) -> bool {
        s.chars()
            .enumerate()
            .all(|(k, c)| self.chars.get(self.i + k) == Some(&c))
    }

    fn error_at(&self, column: u64, message: impl Into<String>) -> Error {
        Error::Config {
            location: Some(Location {
                file: self.file.to_string(),
                line: self.line,
                column,
            }),
            message: message.into(),
        }
    }

    /// Writes `replacement` for `orig_len` characters of the original, recording the edit.
    fn replace(&mut self, orig_len: u64, replacement: &str) {
        let new_len = replacement.chars().count() as u64;
        self.out.push_str(replacement);
        self.edits.push(Edit {
            line: self.line,
            orig_col: self.col,
            orig_len,
            new_col: self.new_col,
            new_len,
        });
        self.i += orig_len as usize;
        self.col += orig_len;
        self.new_col += new_len;
    }

    /// `$${` → a literal `${`.
    fn literal_dollar_brace(&mut self) {
        self.replace(3, "${");
        self.last_sig = Some('{');
    }

    /// `${NAME}` or `${NAME:-default}` → its value, escaped for the context it lands in.
    fn substitute(&mut self) -> Result<()> {
        let start_col = self.col;
        let close = self
            .chars
            .get(self.i + 2..)
            .and_then(|rest| rest.iter().position(|&ch| ch == '}' || ch == '\n'))
            .map(|p| self.i + 2 + p)
            .filter(|&c| self.chars[c] == '}')
            .ok_or_else(|| self.error_at(start_col, UNTERMINATED))?;
        let inner: String = self.chars[self.i + 2..close].iter().collect();
        let value = self.resolve(&inner, start_col)?;
        self.replace((close + 1 - self.i) as u64, &value);
        if self.ctx == Ctx::Plain {
            self.last_sig = Some('x');
        }
        Ok(())
    }

    /// The value of a reference's inside (`NAME` or `NAME:-default`); a value from the
    /// environment is remembered as a secret.
    fn resolve(&mut self, inner: &str, column: u64) -> Result<String> {
        let (name, default) = match inner.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (inner, None),
        };
        if !valid_name(name) {
            return Err(self.error_at(
                column,
                format!(
                    "invalid variable reference '${{{inner}}}': write ${{NAME}} or ${{NAME:-default}}, NAME being letters, digits and '_'"
                ),
            ));
        }
        let env = (self.lookup)(name).filter(|v| !(default.is_some() && v.is_empty()));
        match (env, default) {
            (Some(v), _) => {
                if !v.is_empty() && !self.secrets.contains(&v) {
                    self.secrets.push(v.clone());
                }
                escape_for(self.ctx, &v).map_err(|why| {
                    self.error_at(column, format!("environment variable '{name}' {why}"))
                })
            }
            (None, Some(d)) => Ok(d.to_string()),
            (None, None) => Err(self.error_at(
                column,
                format!(
                    "environment variable '{name}' is not set (set it, or give a default: ${{{name}:-default}})"
                ),
            )),
        }
    }

    /// Copies one character (two for an escape or a doubled quote) and updates the YAML
    /// context it leaves the scanner in.
    fn copy_with_context(&mut self) {
        let c = self.chars[self.i];
        match self.ctx {
            Ctx::Comment => {
                if c == '\n' {
                    self.ctx = Ctx::Plain;
                }
            }
            Ctx::Double => {
                if c == '\\' {
                    // Copy the escaped character too, so `\"` does not close the string.
                    self.copy(c);
                    if let Some(&n) = self.chars.get(self.i) {
                        self.copy(n);
                    }
                    return;
                } else if c == '"' {
                    self.ctx = Ctx::Plain;
                    self.last_sig = Some('"');
                }
            }
            Ctx::Single => {
                if c == '\'' {
                    if self.chars.get(self.i + 1) == Some(&'\'') {
                        self.copy(c);
                        self.copy(c);
                        return;
                    }
                    self.ctx = Ctx::Plain;
                    self.last_sig = Some('\'');
                }
            }
            Ctx::Plain => {
                if c == '#' && (self.i == 0 || self.chars[self.i - 1].is_whitespace()) {
                    self.ctx = Ctx::Comment;
                } else if (c == '"' || c == '\'')
                    && matches!(
                        self.last_sig,
                        None | Some(':' | '-' | '[' | '{' | ',' | '?')
                    )
                {
                    self.ctx = if c == '"' { Ctx::Double } else { Ctx::Single };
                } else if !c.is_whitespace() {
                    self.last_sig = Some(c);
                }
            }
        }
        self.copy(c);
    }

    /// Copies `c` (the character at the cursor) unchanged and moves past it.
    fn copy(&mut self, c: char) {
        self.out.push(c);
        self.i += 1;
        if c == '\n' {
            self.line += 1;
            self.col = 1;
            self.new_col = 1;
            self.last_sig = None;
        } else {
            self.col += 1;
            self.new_col += 1;
        }
    }
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

/// Escapes a value for the YAML context it lands in, so the scalar's content is exactly the
/// value. Errors say why the value cannot go there.
fn escape_for(ctx: Ctx, v: &str) -> std::result::Result<String, &'static str> {
    match ctx {
        Ctx::Double => {
            let mut s = String::with_capacity(v.len());
            for c in v.chars() {
                match c {
                    '\\' => s.push_str("\\\\"),
                    '"' => s.push_str("\\\""),
                    '\n' => s.push_str("\\n"),
                    '\r' => s.push_str("\\r"),
                    '\t' => s.push_str("\\t"),
                    c => s.push(c),
                }
            }
            Ok(s)
        }
        Ctx::Single => {
            if v.contains(['\n', '\r']) {
                return Err("contains a line break: use it inside double quotes (\"${…}\")");
            }
            Ok(v.replace('\'', "''"))
        }
        Ctx::Plain | Ctx::Comment => {
            if v.contains(['\n', '\r']) {
                return Err("contains a line break: use it inside double quotes (\"${…}\")");
            }
            Ok(v.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("kafka.internal:9092".into()),
            "PASSWORD" => Some("hunter2-secret".into()),
            "QUOTE" => Some("a\"b\\c".into()),
            "EMPTY" => Some(String::new()),
            "ML" => Some("line1\nline2".into()),
            "APOS" => Some("it's".into()),
            _ => None,
        }
    }

    #[test]
    fn replaces_defaults_and_escapes() {
        let t = "a: ${HOST}\nb: ${NOPE:-dflt}\nc: $${HOST}\nd: \"${QUOTE}\"\ne: ${EMPTY:-x}\nf: '${APOS}'\n";
        let r = interpolate_with(t, "f.yaml", env).unwrap();
        assert_eq!(
            r.text,
            "a: kafka.internal:9092\nb: dflt\nc: ${HOST}\nd: \"a\\\"b\\\\c\"\ne: x\nf: 'it''s'\n"
        );
        // The escaped values parse back to exactly the variable's value.
        #[derive(serde::Deserialize)]
        struct V {
            d: String,
            f: String,
        }
        #[derive(serde::Deserialize)]
        #[allow(dead_code)]
        struct All {
            a: String,
            b: String,
            c: String,
            #[serde(flatten)]
            v: V,
            e: String,
        }
        let all: All = serde_saphyr::from_str(&r.text).unwrap();
        assert_eq!(all.v.d, "a\"b\\c");
        assert_eq!(all.v.f, "it's");
        assert_eq!(all.c, "${HOST}");
    }

    #[test]
    fn unset_variable_names_variable_and_position() {
        let t = "name: x\nsource:\n  brokers: [\"${BROKERS}\"]\n";
        let e = interpolate_with(t, "p.yaml", env).unwrap_err().to_string();
        assert!(e.starts_with("p.yaml:3:14: "), "{e}");
        assert!(e.contains("'BROKERS' is not set"), "{e}");
    }

    #[test]
    fn comments_are_not_interpolated() {
        let t = "a: 1 # uses ${UNSET}\n# ${ALSO_UNSET}\nb: x#${HOST}\n";
        let r = interpolate_with(t, "f", env).unwrap();
        assert_eq!(
            r.text,
            "a: 1 # uses ${UNSET}\n# ${ALSO_UNSET}\nb: x#kafka.internal:9092\n"
        );
    }

    #[test]
    fn line_breaks_only_inside_double_quotes() {
        assert!(interpolate_with("a: \"${ML}\"\n", "f", env).is_ok());
        let e = interpolate_with("a: ${ML}\n", "f", env)
            .unwrap_err()
            .to_string();
        assert!(e.contains("'ML' contains a line break"), "{e}");
    }

    #[test]
    fn columns_map_back_and_secrets_are_redacted() {
        let t = "pw: ${PASSWORD} x: ${NOPE:-1}\n";
        let r = interpolate_with(t, "f", env).unwrap();
        assert_eq!(r.text, "pw: hunter2-secret x: 1\n");
        // `x` is at column 20 interpolated, 17+... in the original: "pw: ${PASSWORD} x"
        let new_x = r.text.find(" x:").unwrap() as u64 + 2;
        let orig_x = t.find(" x:").unwrap() as u64 + 2;
        assert_eq!(r.original_column(1, new_x), orig_x);
        // Inside the value: the `$`.
        assert_eq!(r.original_column(1, 8), 5);
        assert_eq!(r.original_column(1, 2), 2);
        assert_eq!(
            r.redact("invalid value: string \"hunter2-secret\", expected u32"),
            "invalid value: string \"***\", expected u32"
        );
        // Defaults are not secrets.
        assert_eq!(r.redact("1"), "1");
    }

    #[test]
    fn short_secrets_redacted_as_words_only() {
        let r = interpolate_with("a: ${V}\n", "f", |_| Some("ab".into())).unwrap();
        assert_eq!(
            r.redact("got ab, expected table"),
            "got ***, expected table"
        );
    }

    #[test]
    fn invalid_references_are_errors() {
        let e = interpolate_with("a: ${1X}\n", "f", env)
            .unwrap_err()
            .to_string();
        assert!(e.contains("f:1:4: invalid variable reference"), "{e}");
        let e = interpolate_with("a: ${X\n", "f", env)
            .unwrap_err()
            .to_string();
        assert!(e.contains("unterminated"), "{e}");
    }
}
