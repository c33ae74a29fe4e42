//! Checks of the files in `deploy/`: the flags and `TESSERA_*` variables they pass to
//! `tessera serve` must exist, and their YAML must be well formed. There is no Docker or
//! Kubernetes where the tests run, so these files are checked as text against the real binary
//! (`tests/deploy_files.rs`) rather than run.
//!
//! Pure functions over text; the test reads the files and runs `tessera ... --help`.
//!
//! Flags are found by a shell-like reading of every line, comments included (a comment that
//! shows a command must show a real one): a `\` at a line's end continues it, `;`, `|` and `&`
//! end a command, and the words after `tessera serve` (the binary named `tessera`, by path,
//! `$tessera` or `${tessera}`) up to the end of that command are serve flags. Words after
//! `tessera cert` are cert flags. Any other `--flag` (a YAML list item, a shell array, another
//! program's flag) must be a flag of `tessera serve`, of `tessera cert`, or one of
//! [`FOREIGN_FLAGS`].

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Result, anyhow, bail};
use serde_json::Value;

/// Flags of other programs that the deploy files and their comments use (cargo, docker,
/// kubectl, useradd, curl, ...). A flag of `tessera serve` needs no entry here.
pub const FOREIGN_FLAGS: &[&str] = &[
    "--release",
    "--bin",
    "--locked",
    "--mount",
    "--from",
    "--system",
    "--uid",
    "--home-dir",
    "--no-create-home",
    "--shell",
    "--from-file",
    "--max-time",
    "--rm",
    "--user-group",
    "--interval",
    "--timeout",
    "--start-period",
    "--retries",
    "--from-literal",
    "--home",
    "--now",
];

/// Variables of the harness and scripts, never read by the node.
pub const TOOL_VARS: &[&str] = &["TESSERA_BIN"];

/// Which command a flag is passed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FlagContext {
    Serve,
    Cert,
    /// Not after `tessera serve` or `tessera cert` on the same command line.
    Other,
}

/// A `--flag` found in a file, at a 1-based line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagUse {
    pub line: usize,
    pub flag: String,
    pub context: FlagContext,
}

/// Every long flag (`--name`) named in a `--help` text.
pub fn help_flags(help: &str) -> BTreeSet<String> {
    help.split(|c: char| c.is_whitespace() || c == ',' || c == '[' || c == '<' || c == '=')
        .filter_map(long_flag)
        .collect()
}

/// Every `[env: NAME...]` of a clap `--help` text.
pub fn help_env_names(help: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = help;
    while let Some(at) = rest.find("[env: ") {
        rest = &rest[at + "[env: ".len()..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            out.insert(name);
        }
    }
    out
}

/// Every `env = "NAME"` of a clap derive source (node/src/config.rs).
pub fn source_env_names(src: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = src;
    while let Some(at) = rest.find("env = \"") {
        rest = &rest[at + "env = \"".len()..];
        if let Some(end) = rest.find('"') {
            out.insert(rest[..end].to_owned());
            rest = &rest[end..];
        }
    }
    out
}

/// The field names of `struct ConfigFile { .. }` in node/src/config.rs: the keys a config file
/// may have.
pub fn config_file_keys(src: &str) -> Result<BTreeSet<String>> {
    let start = src
        .find("struct ConfigFile {")
        .ok_or_else(|| anyhow!("no `struct ConfigFile {{` in the config source"))?;
    let body = &src[start..];
    let end = body
        .find("\n}")
        .ok_or_else(|| anyhow!("`struct ConfigFile` does not end"))?;
    let keys: BTreeSet<String> = body[..end]
        .lines()
        .skip(1)
        .map(str::trim)
        .filter(|l| !l.starts_with("//") && !l.starts_with('#'))
        .filter_map(|l| l.split_once(':'))
        .map(|(name, _)| name.trim().trim_start_matches("pub ").to_owned())
        .filter(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        .collect();
    if keys.is_empty() {
        bail!("`struct ConfigFile` has no fields");
    }
    Ok(keys)
}

/// Every `TESSERA_*` name in `text`, with its 1-based line.
pub fn tessera_vars(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let bytes = line.as_bytes();
        let mut at = 0;
        while let Some(off) = line[at..].find("TESSERA_") {
            let start = at + off;
            let before_ok = start == 0 || {
                let b = bytes[start - 1];
                !(b.is_ascii_alphanumeric() || b == b'_')
            };
            let end = line[start..]
                .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
                .map_or(line.len(), |e| start + e);
            if before_ok && end > start + "TESSERA_".len() {
                out.push((i + 1, line[start..end].to_owned()));
            }
            at = end.max(start + 1);
        }
    }
    out
}

/// Every `--flag` in `text` and the command it goes to (see the module doc).
pub fn flag_uses(text: &str) -> Vec<FlagUse> {
    let mut out = Vec::new();
    for (line, logical) in logical_lines(text) {
        let mut context = FlagContext::Other;
        let mut prev_was_tessera = false;
        for word in words(&logical) {
            if word == ";" {
                context = FlagContext::Other;
                prev_was_tessera = false;
                continue;
            }
            if prev_was_tessera {
                prev_was_tessera = false;
                match word.as_str() {
                    "serve" => {
                        context = FlagContext::Serve;
                        continue;
                    }
                    "cert" => {
                        context = FlagContext::Cert;
                        continue;
                    }
                    _ => {}
                }
            }
            if let Some(flag) = long_flag(&word) {
                out.push(FlagUse {
                    line,
                    flag,
                    context,
                });
            } else if names_tessera(&word) {
                prev_was_tessera = true;
            }
        }
    }
    out
}

/// Lines joined where one ends with `\`, each with the 1-based number of its first line.
fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut cur: Option<(usize, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        let trimmed = raw.trim_end();
        let (body, continues) = match trimmed.strip_suffix('\\') {
            Some(b) => (b, true),
            None => (trimmed, false),
        };
        let entry = cur.get_or_insert_with(|| (i + 1, String::new()));
        entry.1.push(' ');
        entry.1.push_str(body);
        if !continues && let Some(done) = cur.take() {
            out.push(done);
        }
    }
    if let Some(done) = cur {
        out.push(done);
    }
    out
}

/// The words of a logical line: split on blanks, quotes (backquotes too: Markdown), brackets
/// and commas; `;`, `|` and `&`
/// become the word `;` (end of a command).
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for c in line.chars() {
        match c {
            ';' | '|' | '&' => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                out.push(";".to_owned());
            }
            c if c.is_whitespace() || "\"'`[](){},".contains(c) => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Whether a word runs the tessera binary: `tessera`, `/path/tessera`, `$tessera`,
/// `${tessera}`, or a systemd `ExecStart=/path/tessera`.
fn names_tessera(word: &str) -> bool {
    if word.starts_with('-') {
        return false;
    }
    let w = word.rsplit('=').next().unwrap_or(word);
    let w = w.trim_start_matches('$').trim_start_matches('{');
    let w = w.trim_end_matches('}');
    w.rsplit('/').next() == Some("tessera")
}

/// `--name` of a word `--name` or `--name=value`, if it is a long flag.
fn long_flag(word: &str) -> Option<String> {
    let rest = word.strip_prefix("--")?;
    let name = rest.split('=').next().unwrap_or(rest);
    let mut chars = name.chars();
    let first = chars.next()?;
    if !first.is_ascii_lowercase()
        || !chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return None;
    }
    Some(format!("--{name}"))
}

/// Top-level keys and table names of a TOML text (`key = ..` before any table, `[table]`), with
/// their lines; keys inside tables are the table's business.
pub fn toml_top_keys(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut in_table = false;
    for (i, line) in text.lines().enumerate() {
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        if let Some(t) = l.strip_prefix('[') {
            in_table = true;
            let name = t.trim_start_matches('[').split(']').next().unwrap_or("");
            out.push((i + 1, name.trim().to_owned()));
        } else if !in_table && let Some((k, _)) = l.split_once('=') {
            out.push((i + 1, k.trim().trim_matches('"').to_owned()));
        }
    }
    out
}

/// A small YAML reader for the subset the deploy files use: block mappings and sequences,
/// plain and quoted scalars, one-line flow sequences and mappings, `|` block scalars, comments
/// and `---` documents. Every scalar is a string. Anything else (tabs in indentation, anchors,
/// aliases, tags, duplicate keys, bad indentation, unclosed quotes or brackets) is an error,
/// so the files stay in the subset that this check can read.
pub mod yaml {
    use super::*;

    /// The documents of a YAML stream; empty documents are left out.
    pub fn parse_documents(text: &str) -> Result<Vec<Value>> {
        let mut docs = Vec::new();
        let mut cur: Vec<(usize, String)> = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line == "---" || line.starts_with("--- ") || line.starts_with("---\t") {
                docs.push(std::mem::take(&mut cur));
                continue;
            }
            cur.push((i + 1, line.to_owned()));
        }
        docs.push(cur);
        let mut out = Vec::new();
        for lines in docs {
            let mut p = Parser { lines, pos: 0 };
            p.skip_blank();
            if p.pos >= p.lines.len() {
                continue;
            }
            let v = p.node(0)?;
            p.skip_blank();
            if let Some((n, l)) = p.lines.get(p.pos) {
                bail!("line {n}: unexpected content {:?}", l.trim());
            }
            out.push(v);
        }
        Ok(out)
    }

    struct Parser {
        /// (1-based line number, text); the text of a sequence item's line is rewritten so
        /// that its content reads as a block at the item's column.
        lines: Vec<(usize, String)>,
        pos: usize,
    }

    fn indent_of(n: usize, line: &str) -> Result<usize> {
        let ind = line.len() - line.trim_start_matches(' ').len();
        if line[ind..].starts_with('\t') {
            bail!("line {n}: tab in indentation");
        }
        Ok(ind)
    }

    fn is_blank(line: &str) -> bool {
        let t = line.trim();
        t.is_empty() || t.starts_with('#')
    }

    fn is_seq_item(content: &str) -> bool {
        content == "-" || content.starts_with("- ")
    }

    impl Parser {
        fn skip_blank(&mut self) {
            while self.pos < self.lines.len() && is_blank(&self.lines[self.pos].1) {
                self.pos += 1;
            }
        }

        /// The next non-blank line: (line number, indent, content).
        fn peek(&mut self) -> Result<Option<(usize, usize, String)>> {
            self.skip_blank();
            match self.lines.get(self.pos) {
                None => Ok(None),
                Some((n, l)) => {
                    let ind = indent_of(*n, l)?;
                    Ok(Some((*n, ind, l[ind..].to_owned())))
                }
            }
        }

        fn node(&mut self, min_indent: usize) -> Result<Value> {
            let Some((n, ind, content)) = self.peek()? else {
                return Ok(Value::Null);
            };
            if ind < min_indent {
                return Ok(Value::Null);
            }
            if is_seq_item(&content) {
                self.seq(ind)
            } else if split_key(n, &content)?.is_some() {
                self.map(ind)
            } else {
                self.pos += 1;
                let v = inline_value(n, &content)?;
                if let Some((n2, ind2, _)) = self.peek()?
                    && ind2 > min_indent
                    && ind2 >= ind
                {
                    bail!("line {n2}: multi-line plain scalars are outside the subset");
                }
                Ok(v)
            }
        }

        fn seq(&mut self, ind: usize) -> Result<Value> {
            let mut items = Vec::new();
            while let Some((n, i, content)) = self.peek()? {
                if i < ind || !is_seq_item(&content) {
                    if i > ind {
                        bail!("line {n}: bad indentation in a sequence");
                    }
                    break;
                }
                if i > ind {
                    bail!("line {n}: bad indentation in a sequence");
                }
                let rest = content[1..].trim_start_matches(' ');
                if is_blank(rest) {
                    self.pos += 1;
                    items.push(self.node(ind + 1)?);
                } else if rest.starts_with('|') || rest.starts_with('>') {
                    self.pos += 1;
                    items.push(self.block_scalar(n, ind, strip_comment(rest))?);
                } else {
                    // "- key: v" or "- - x": read the rest as a block at its own column
                    let col = ind + (content.len() - rest.len());
                    self.lines[self.pos].1 = format!("{}{rest}", " ".repeat(col));
                    items.push(self.node(col)?);
                }
            }
            Ok(Value::Array(items))
        }

        fn map(&mut self, ind: usize) -> Result<Value> {
            let mut obj = serde_json::Map::new();
            while let Some((n, i, content)) = self.peek()? {
                if i < ind {
                    break;
                }
                if i > ind {
                    bail!("line {n}: bad indentation (expected {ind} spaces, got {i})");
                }
                if is_seq_item(&content) {
                    break;
                }
                let Some((key, rest)) = split_key(n, &content)? else {
                    bail!("line {n}: expected `key: value`, got {content:?}");
                };
                if obj.contains_key(&key) {
                    bail!("line {n}: duplicate key {key:?}");
                }
                self.pos += 1;
                let rest = strip_comment(rest);
                let value = if rest.is_empty() {
                    match self.peek()? {
                        Some((_, i2, c2)) if i2 > ind => {
                            let _ = c2;
                            self.node(i2)?
                        }
                        // a sequence may sit at its key's own indentation
                        Some((_, i2, c2)) if i2 == ind && is_seq_item(&c2) => self.seq(ind)?,
                        _ => Value::Null,
                    }
                } else if rest.starts_with('|') || rest.starts_with('>') {
                    self.block_scalar(n, ind, rest)?
                } else if rest.starts_with('&') || rest.starts_with('*') || rest.starts_with('!') {
                    bail!("line {n}: anchors, aliases and tags are outside the subset");
                } else {
                    inline_value(n, rest)?
                };
                obj.insert(key, value);
            }
            Ok(Value::Object(obj))
        }

        fn block_scalar(&mut self, n: usize, parent: usize, header: &str) -> Result<Value> {
            let keep_last_newline = !header.contains('-');
            if header.len() > 2 || (header.len() == 2 && !header.ends_with('-')) {
                bail!("line {n}: block scalar header {header:?} is outside the subset");
            }
            let mut block: Option<usize> = None;
            let mut text = String::new();
            let mut pending_blank = 0;
            while let Some((ln, line)) = self.lines.get(self.pos) {
                if line.trim().is_empty() {
                    pending_blank += 1;
                    self.pos += 1;
                    continue;
                }
                let ind = indent_of(*ln, line)?;
                if ind <= parent {
                    break;
                }
                let b = *block.get_or_insert(ind);
                if ind < b {
                    bail!("line {ln}: block scalar line less indented than its first line");
                }
                for _ in 0..pending_blank {
                    text.push('\n');
                }
                pending_blank = 0;
                text.push_str(&line[b..]);
                text.push('\n');
                self.pos += 1;
            }
            if !keep_last_newline {
                while text.ends_with('\n') {
                    text.pop();
                }
            }
            Ok(Value::String(text))
        }
    }

    /// `key: rest` of a mapping line (key unquoted), or None when the line is not one.
    fn split_key(n: usize, content: &str) -> Result<Option<(String, &str)>> {
        let (key, rest) = if content.starts_with('"') || content.starts_with('\'') {
            let (k, used) = quoted(n, content)?;
            let after = &content[used..];
            match after.strip_prefix(':') {
                Some(r) if r.is_empty() || r.starts_with(' ') => (k, r),
                _ => return Ok(None),
            }
        } else {
            if content.starts_with('[') || content.starts_with('{') {
                return Ok(None);
            }
            let mut found = None;
            for (i, c) in content.char_indices() {
                if c == '#' && (i == 0 || content[..i].ends_with(' ')) {
                    break;
                }
                if c == ':' {
                    let after = &content[i + 1..];
                    if after.is_empty() || after.starts_with(' ') {
                        found = Some((content[..i].trim_end().to_owned(), after));
                        break;
                    }
                }
            }
            match found {
                Some(f) => f,
                None => return Ok(None),
            }
        };
        if key.is_empty() {
            bail!("line {n}: empty key");
        }
        Ok(Some((key, rest.trim_start())))
    }

    /// The text before a ` #` comment (outside quotes), trimmed.
    fn strip_comment(s: &str) -> &str {
        let mut quote: Option<char> = None;
        for (i, c) in s.char_indices() {
            match quote {
                Some(q) if c == q => quote = None,
                Some(_) => {}
                None if c == '"' || c == '\'' => quote = Some(c),
                None if c == '#' && (i == 0 || s[..i].ends_with(' ')) => return s[..i].trim(),
                None => {}
            }
        }
        s.trim()
    }

    /// A one-line value: quoted, flow collection or plain scalar, nothing after it but a comment.
    fn inline_value(n: usize, s: &str) -> Result<Value> {
        let s = strip_comment(s);
        let (v, used) = flow(n, s)?;
        let tail = s[used..].trim();
        if !tail.is_empty() {
            bail!("line {n}: unexpected {tail:?} after a value");
        }
        Ok(v)
    }

    /// A value at the start of `s` and how many bytes it used. In flow context (inside `[]` or
    /// `{}`) plain scalars end at `,`, `]` or `}`.
    fn flow(n: usize, s: &str) -> Result<(Value, usize)> {
        flow_in(n, s, false)
    }

    fn flow_in(n: usize, s: &str, nested: bool) -> Result<(Value, usize)> {
        let lead = s.len() - s.trim_start().len();
        let t = &s[lead..];
        if t.starts_with('"') || t.starts_with('\'') {
            let (q, used) = quoted(n, t)?;
            return Ok((Value::String(q), lead + used));
        }
        if let Some(body) = t.strip_prefix('[') {
            let mut items = Vec::new();
            let mut at = 0;
            loop {
                let rest = &body[at..];
                let r = rest.trim_start();
                at += rest.len() - r.len();
                if let Some(after) = r.strip_prefix(']') {
                    let _ = after;
                    return Ok((Value::Array(items), lead + 1 + at + 1));
                }
                if r.is_empty() {
                    bail!("line {n}: unclosed [ (flow sequences must fit on one line)");
                }
                let (v, used) = flow_in(n, r, true)?;
                items.push(v);
                at += used;
                let r2 = body[at..].trim_start();
                at = body.len() - r2.len();
                if let Some(r3) = r2.strip_prefix(',') {
                    let _ = r3;
                    at += 1;
                } else if !r2.starts_with(']') {
                    bail!("line {n}: expected , or ] in a flow sequence, got {r2:?}");
                }
            }
        }
        if let Some(body) = t.strip_prefix('{') {
            let mut obj = serde_json::Map::new();
            let mut at = 0;
            loop {
                let rest = &body[at..];
                let r = rest.trim_start();
                at += rest.len() - r.len();
                if r.starts_with('}') {
                    return Ok((Value::Object(obj), lead + 1 + at + 1));
                }
                if r.is_empty() {
                    bail!("line {n}: unclosed {{ (flow mappings must fit on one line)");
                }
                let Some(colon) = r.find(':') else {
                    bail!("line {n}: expected key: value in a flow mapping");
                };
                let key = r[..colon].trim().trim_matches('"').to_owned();
                at += colon + 1;
                let (v, used) = flow_in(n, &body[at..], true)?;
                if obj.insert(key.clone(), v).is_some() {
                    bail!("line {n}: duplicate key {key:?}");
                }
                at += used;
                let r2 = body[at..].trim_start();
                at = body.len() - r2.len();
                if r2.starts_with(',') {
                    at += 1;
                } else if !r2.starts_with('}') {
                    bail!("line {n}: expected , or }} in a flow mapping, got {r2:?}");
                }
            }
        }
        if t.starts_with('&') || t.starts_with('*') || t.starts_with('!') {
            bail!("line {n}: anchors, aliases and tags are outside the subset");
        }
        let end = if nested {
            t.find([',', ']', '}']).unwrap_or(t.len())
        } else {
            t.len()
        };
        Ok((Value::String(t[..end].trim().to_owned()), lead + end))
    }

    /// A quoted scalar at the start of `s` and the bytes it used.
    fn quoted(n: usize, s: &str) -> Result<(String, usize)> {
        let mut chars = s.char_indices();
        let Some((_, q)) = chars.next() else {
            bail!("line {n}: expected a quoted string");
        };
        let mut out = String::new();
        while let Some((i, c)) = chars.next() {
            if c == q {
                if q == '\'' && s[i + 1..].starts_with('\'') {
                    out.push('\'');
                    chars.next();
                    continue;
                }
                return Ok((out, i + 1));
            }
            if c == '\\' && q == '"' {
                match chars.next() {
                    Some((_, 'n')) => out.push('\n'),
                    Some((_, 't')) => out.push('\t'),
                    Some((_, e @ ('"' | '\\' | '/'))) => out.push(e),
                    Some((_, e)) => bail!("line {n}: escape \\{e} is outside the subset"),
                    None => break,
                }
                continue;
            }
            out.push(c);
        }
        bail!("line {n}: unclosed quote (quoted strings must fit on one line)")
    }
}

/// `value` at a `/`-separated path of mapping keys, or an error naming the path.
pub fn at<'a>(value: &'a Value, path: &str) -> Result<&'a Value> {
    let mut v = value;
    for key in path.split('/') {
        v = v
            .get(key)
            .ok_or_else(|| anyhow!("no `{key}` (looking for {path})"))?;
    }
    Ok(v)
}

/// `environment:` of a compose service as a map (the map form; the list form is refused so
/// the check can read values).
pub fn compose_env(service: &Value) -> Result<BTreeMap<String, String>> {
    let env = service
        .get("environment")
        .ok_or_else(|| anyhow!("no environment"))?;
    let Some(obj) = env.as_object() else {
        bail!("environment must be a mapping (NAME: value), not {env}");
    };
    obj.iter()
        .map(|(k, v)| match v {
            Value::String(s) => Ok((k.clone(), s.clone())),
            other => Err(anyhow!("environment {k}: not a scalar: {other}")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::yaml::parse_documents;
    use super::*;
    use serde_json::json;

    #[test]
    fn flags_are_tied_to_the_command_they_follow() {
        let text = "\
# start: tessera serve --node-id 1 --bootstrap
ExecStart=/usr/local/bin/tessera serve --config /etc/t.toml \\
  --data-dir=/var/lib/tessera
\"$tessera\" cert node --ca-dir ca --out n1 --name n1 && \"$tessera\" serve --join x &
cargo build --release -p tessera-node --bin tessera
role=(--join \"127.0.0.1:1\")
ENTRYPOINT [\"tessera\", \"serve\", \"--log\", \"info\"]
";
        use FlagContext::*;
        let got: Vec<(usize, String, FlagContext)> = flag_uses(text)
            .into_iter()
            .map(|u| (u.line, u.flag, u.context))
            .collect();
        let want: Vec<(usize, String, FlagContext)> = [
            (1, "--node-id", Serve),
            (1, "--bootstrap", Serve),
            (2, "--config", Serve),
            (2, "--data-dir", Serve),
            (4, "--ca-dir", Cert),
            (4, "--out", Cert),
            (4, "--name", Cert),
            (4, "--join", Serve),
            (5, "--release", Other),
            (5, "--bin", Other),
            (6, "--join", Other),
            (7, "--log", Serve),
        ]
        .into_iter()
        .map(|(l, f, c)| (l, f.to_owned(), c))
        .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn env_names_from_help_source_and_text() {
        let help = "  --node-id <NODE_ID>\n      id [env: TESSERA_NODE_ID=]\n  --api-key <K> [env: TESSERA_API_KEY]\n";
        assert_eq!(
            help_env_names(help),
            BTreeSet::from(["TESSERA_NODE_ID".to_owned(), "TESSERA_API_KEY".to_owned()])
        );
        assert_eq!(
            help_flags(help),
            BTreeSet::from(["--node-id".to_owned(), "--api-key".to_owned()])
        );
        let src = "#[arg(long, env = \"TESSERA_A\")]\n#[arg(long = \"x\", env = \"TESSERA_B\", hide_env_values = true)]";
        assert_eq!(
            source_env_names(src),
            BTreeSet::from(["TESSERA_A".to_owned(), "TESSERA_B".to_owned()])
        );
        let vars = tessera_vars("X=$TESSERA_BIN; NOT_TESSERA_X TESSERA_ ${TESSERA_HTTP_ADDR:-a}");
        assert_eq!(
            vars,
            vec![
                (1, "TESSERA_BIN".to_owned()),
                (1, "TESSERA_HTTP_ADDR".to_owned())
            ]
        );
    }

    #[test]
    fn config_file_keys_are_the_struct_fields() {
        let src = "struct Other { a: u8 }\n#[derive(Deserialize)]\nstruct ConfigFile {\n    /// doc: not a field\n    version: Option<u32>,\n    http_addr: Option<SocketAddr>,\n    roles: Option<BTreeMap<String, String>>,\n}\n";
        let keys = config_file_keys(src).expect("keys");
        assert_eq!(
            keys,
            BTreeSet::from(["version", "http_addr", "roles"].map(String::from))
        );
        assert!(config_file_keys("struct X {}").is_err());
    }

    #[test]
    fn toml_top_keys_and_tables() {
        let t =
            "version = 1\n# c = 2\nhttp_addr = \"0.0.0.0:6333\"\n[quota]\nweight = 1\n[roles]\n";
        assert_eq!(
            toml_top_keys(t),
            vec![
                (1, "version".to_owned()),
                (3, "http_addr".to_owned()),
                (4, "quota".to_owned()),
                (6, "roles".to_owned()),
            ]
        );
    }

    #[test]
    fn yaml_subset_reads_compose_and_k8s_shapes() {
        let text = r#"
# comment
services:
  tessera-1:
    image: "tessera:dev"   # trailing comment
    command: ["--log", 'info,x=y', "a: b"]
    environment:
      TESSERA_NODE_ID: "1"
      TESSERA_URL: http://x:1/
    ports:
      - "127.0.0.1:6333:6333"
    empty: {}
    entrypoint: ["/bin/sh", "-c"]
    script:
      - |
        echo $$n
          indented
      - next
---
kind: ConfigMap
data:
  start.sh: |
    #!/bin/sh
    set -eu

    exec tessera serve
  other: x
list:
- name: a
  value: b
- - nested
"#;
        let docs = parse_documents(text).expect("parses");
        assert_eq!(docs.len(), 2);
        assert_eq!(
            docs[0],
            json!({"services": {"tessera-1": {
                "image": "tessera:dev",
                "command": ["--log", "info,x=y", "a: b"],
                "environment": {"TESSERA_NODE_ID": "1", "TESSERA_URL": "http://x:1/"},
                "ports": ["127.0.0.1:6333:6333"],
                "empty": {},
                "entrypoint": ["/bin/sh", "-c"],
                "script": ["echo $$n\n  indented\n", "next"],
            }}})
        );
        assert_eq!(
            docs[1]["data"]["start.sh"],
            "#!/bin/sh\nset -eu\n\nexec tessera serve\n"
        );
        assert_eq!(docs[1]["data"]["other"], "x");
        assert_eq!(
            docs[1]["list"],
            json!([{"name": "a", "value": "b"}, ["nested"]])
        );
        let env = compose_env(&docs[0]["services"]["tessera-1"]).expect("env");
        assert_eq!(env["TESSERA_NODE_ID"], "1");
        assert_eq!(
            at(&docs[1], "data/other").expect("path"),
            &Value::String("x".into())
        );
        assert!(at(&docs[1], "data/none").is_err());
    }

    #[test]
    fn yaml_outside_the_subset_or_malformed_is_refused() {
        for bad in [
            "a:\n\tb: 1\n",
            "a: 1\na: 2\n",
            "a:\n  b: 1\n   c: 2\n",
            "a: [1, 2\n",
            "a: \"open\n",
            "a: &anchor x\n",
            "a: *alias\n",
            "a: 1\n  b: 2\n",
            "- a\n  - b\n",
            "a: \"x\" y\n",
        ] {
            assert!(parse_documents(bad).is_err(), "{bad:?} must be refused");
        }
    }
}
