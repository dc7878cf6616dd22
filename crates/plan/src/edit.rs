//! Targeted edits of block-style YAML: find a scalar by its keys and replace, add or
//! remove single lines, leaving every other byte (comments, blank lines, quoting, key
//! order) as it was. Each edit is checked by parsing the result and comparing it with
//! the intended document; a layout this editor does not understand is an error, never
//! a silent rewrite.

use std::collections::BTreeMap;

use serde_json::Value;

/// The `images:` entry fields that `ferry promote` copies, in the order new lines get them.
pub const IMAGE_FIELDS: [&str; 3] = ["newName", "newTag", "digest"];

/// Why a file cannot be read or edited.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    /// The file is not valid YAML.
    #[error("invalid YAML: {0}")]
    Parse(String),
    /// What is needed is not in the file.
    #[error("{0}")]
    Missing(String),
    /// The file uses a layout this editor does not edit (flow style, multi-line values…).
    #[error("line {line}: {message}; edit it by hand")]
    Unsupported {
        /// 1-based line number.
        line: usize,
        /// What is unusual.
        message: String,
    },
    /// The edited text does not parse to the intended document.
    #[error("the edit would change more than intended (unusual layout); edit it by hand")]
    Verify,
}

/// One Kustomize `images:` entry: its name and the fields it sets, as written (raw
/// tokens, quotes included, so a copy keeps the exact YAML type).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    /// The image name, unquoted.
    pub name: String,
    /// The name token as written.
    pub name_token: String,
    /// `newName` / `newTag` / `digest` → token.
    pub fields: BTreeMap<String, String>,
}

impl Image {
    /// The reference the entry selects, for messages: `newName:newTag@digest` with
    /// absent parts left out, e.g. `0.2.1`, `registry/app:0.2.1`, `sha256:…`.
    pub fn describe(&self) -> String {
        describe(&self.fields)
    }
}

fn describe(fields: &BTreeMap<String, String>) -> String {
    let get = |k: &str| fields.get(k).map(|t| unquote(t));
    let mut out = get("newName").unwrap_or_default();
    if let Some(tag) = get("newTag") {
        if !out.is_empty() {
            out.push(':');
        }
        out.push_str(&tag);
    }
    if let Some(digest) = get("digest") {
        if !out.is_empty() {
            out.push('@');
        }
        out.push_str(&digest);
    }
    if out.is_empty() {
        "(as in the base)".into()
    } else {
        out
    }
}

/// One changed value: what an image (or values key) was set to and is set to now.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Change {
    /// Image name, or the values key.
    pub image: String,
    /// The old value (`(none)` when the target did not set it).
    pub from: String,
    /// The new value.
    pub to: String,
}

/// An edited file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Edit {
    /// The new text (equal to the old when nothing changed).
    pub text: String,
    /// What changed; empty when the target already matched.
    pub changes: Vec<Change>,
}

/// The `images:` entries of a `kustomization.yaml`; an image listed twice is an error
/// (which entry to copy would be a guess).
pub fn read_images(text: &str) -> Result<Vec<Image>, EditError> {
    parse_yaml(text)?;
    let doc = Doc::new(text);
    let Some(block) = doc.images_block()? else {
        return Ok(Vec::new());
    };
    let mut images: Vec<Image> = Vec::with_capacity(block.items.len());
    for item in &block.items {
        let image = item.image(&doc)?;
        if images.iter().any(|i| i.name == image.name) {
            return Err(
                doc.unsupported(item.start, format!("image {} is listed twice", image.name))
            );
        }
        images.push(image);
    }
    Ok(images)
}

/// Makes the `images:` entries of the kustomization `to` select what `images` (read from
/// another kustomization) select: for each image, `newName`, `newTag` and `digest` are
/// set as in `images` and removed where `images` has none. Entries missing in `to` are
/// appended (and an `images:` list when there is none). Other entries, other keys,
/// comments and formatting stay as they were.
pub fn set_images(to: &str, images: &[Image]) -> Result<Edit, EditError> {
    let old = parse_yaml(to)?;
    let mut doc = Doc::new(to);
    let block = doc.images_block()?;
    let mut ops: Vec<Op> = Vec::new();
    let mut changes = Vec::new();
    let mut appended: Vec<String> = Vec::new();
    let (seq_indent, key_indent) = match &block {
        Some(b) => match b.items.first() {
            Some(first) => (first.dash_col, first.key_indent),
            None => (b.indent + 2, b.indent + 4),
        },
        None => (2, 4),
    };
    for image in images {
        let item = block.as_ref().and_then(|b| {
            b.items
                .iter()
                .find(|i| i.name(&doc).as_deref() == Some(&image.name))
        });
        let current = match item {
            Some(item) => item.image(&doc)?.fields,
            None => BTreeMap::new(),
        };
        if current == image.fields || (item.is_some() && same_values(&current, &image.fields)) {
            continue;
        }
        changes.push(Change {
            image: image.name.clone(),
            from: if item.is_some() {
                describe(&current)
            } else {
                "(none)".into()
            },
            to: image.describe(),
        });
        let Some(item) = item else {
            appended.push(format!(
                "{}- name: {}",
                " ".repeat(seq_indent),
                image.name_token
            ));
            for field in IMAGE_FIELDS {
                if let Some(token) = image.fields.get(field) {
                    appended.push(format!("{}{field}: {token}", " ".repeat(key_indent)));
                }
            }
            continue;
        };
        let mut added = Vec::new();
        for field in IMAGE_FIELDS {
            let line = item.field(field);
            match (line, image.fields.get(field)) {
                (Some(line), Some(token)) => {
                    let span = doc.scalar_span(line)?;
                    if doc.lines[line][span.0..span.1] != *token {
                        ops.push(Op::Replace(line, span, token.clone()));
                    }
                }
                (Some(line), None) => {
                    if line == item.start {
                        return Err(doc.unsupported(
                            line,
                            format!(
                                "{field} is on the entry's first line and would have to be removed"
                            ),
                        ));
                    }
                    doc.scalar_span(line)?;
                    ops.push(Op::Delete(line));
                }
                (None, Some(token)) => {
                    added.push(format!("{}{field}: {token}", " ".repeat(item.key_indent)))
                }
                (None, None) => {}
            }
        }
        if !added.is_empty() {
            ops.push(Op::Insert(item.end + 1, added));
        }
    }
    if !appended.is_empty() {
        match &block {
            Some(b) => {
                if b.empty_flow {
                    ops.push(Op::Replace(b.line, doc.flow_span(b.line), String::new()));
                }
                ops.push(Op::Insert(b.end + 1, appended));
            }
            None => {
                let mut lines = vec!["images:".to_string()];
                lines.extend(appended);
                ops.push(Op::Insert(doc.lines.len(), lines));
            }
        }
    }
    if changes.is_empty() {
        return Ok(Edit {
            text: to.to_string(),
            changes,
        });
    }
    doc.apply(ops);
    let text = doc.text();
    // The intended document: the old one with each image's fields as in `images`.
    let mut expected = old;
    if !expected.is_object() {
        expected = Value::Object(Default::default());
    }
    let list = expected
        .as_object_mut()
        .expect("an object")
        .entry("images")
        .or_insert(Value::Array(Vec::new()));
    if list.is_null() {
        *list = Value::Array(Vec::new());
    }
    let list = list.as_array_mut().ok_or(EditError::Verify)?;
    for image in images {
        let name = Value::String(image.name.clone());
        let entry = match list.iter_mut().position(|e| e.get("name") == Some(&name)) {
            Some(i) => &mut list[i],
            None => {
                list.push(serde_json::json!({ "name": name }));
                list.last_mut().expect("just pushed")
            }
        };
        let entry = entry.as_object_mut().ok_or(EditError::Verify)?;
        for field in IMAGE_FIELDS {
            match image.fields.get(field) {
                Some(token) => {
                    entry.insert(field.into(), scalar(token)?);
                }
                None => {
                    entry.remove(field);
                }
            }
        }
    }
    if parse_yaml(&text)? != expected {
        return Err(EditError::Verify);
    }
    Ok(Edit { text, changes })
}

/// The token (as written) of the scalar at the dotted `key` of a values file.
pub fn read_value(text: &str, key: &str) -> Result<String, EditError> {
    parse_yaml(text)?;
    let doc = Doc::new(text);
    match doc.find_path(key)? {
        Found::Line(line) => {
            let span = doc.scalar_span(line)?;
            Ok(doc.lines[line][span.0..span.1].to_string())
        }
        Found::Partial { .. } => Err(EditError::Missing(format!("no key {key}"))),
    }
}

/// Sets the dotted `key` of the values file `to` to `token` (as read by [`read_value`]),
/// adding the key (and missing parent mappings) when absent.
pub fn set_value(to: &str, key: &str, token: &str) -> Result<Edit, EditError> {
    let old = parse_yaml(to)?;
    let mut doc = Doc::new(to);
    let segments: Vec<&str> = key.split('.').collect();
    let (op, from) = match doc.find_path(key)? {
        Found::Line(line) => {
            let span = doc.scalar_span(line)?;
            let current = &doc.lines[line][span.0..span.1];
            if current == token
                || (unquote(current) == unquote(token) && scalar(current)? == scalar(token)?)
            {
                return Ok(Edit {
                    text: to.to_string(),
                    changes: Vec::new(),
                });
            }
            let from = unquote(current);
            (Op::Replace(line, span, token.to_string()), from)
        }
        Found::Partial {
            depth,
            after,
            indent,
        } => {
            let lines = segments[depth..]
                .iter()
                .enumerate()
                .map(|(i, seg)| {
                    let pad = " ".repeat(indent + 2 * i);
                    if depth + i + 1 == segments.len() {
                        format!("{pad}{seg}: {token}")
                    } else {
                        format!("{pad}{seg}:")
                    }
                })
                .collect();
            (Op::Insert(after, lines), "(none)".to_string())
        }
    };
    doc.apply(vec![op]);
    let text = doc.text();
    let mut expected = old;
    let mut at = &mut expected;
    for seg in &segments {
        if !at.is_object() {
            *at = Value::Object(Default::default());
        }
        at = at
            .as_object_mut()
            .expect("an object")
            .entry(seg.to_string())
            .or_insert(Value::Null);
    }
    *at = scalar(token)?;
    if parse_yaml(&text)? != expected {
        return Err(EditError::Verify);
    }
    Ok(Edit {
        text,
        changes: vec![Change {
            image: key.to_string(),
            from,
            to: unquote(token),
        }],
    })
}

/// Whether two field maps mean the same values (tokens may differ in quoting only).
fn same_values(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) -> bool {
    a.len() == b.len()
        && a.iter().all(|(k, t)| {
            b.get(k)
                .is_some_and(|u| unquote(t) == unquote(u) && scalar(t).ok() == scalar(u).ok())
        })
}

fn parse_yaml(text: &str) -> Result<Value, EditError> {
    if text.trim().is_empty() {
        return Ok(Value::Null);
    }
    serde_saphyr::from_str(text).map_err(|e| {
        EditError::Parse(
            e.to_string()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" "),
        )
    })
}

/// A scalar token's value as YAML reads it.
fn scalar(token: &str) -> Result<Value, EditError> {
    serde_saphyr::from_str(token).map_err(|e| EditError::Parse(e.to_string()))
}

/// A scalar token without its quotes (escapes of double-quoted tokens resolved).
fn unquote(token: &str) -> String {
    if token.len() >= 2 && token.starts_with('"') && token.ends_with('"') {
        serde_saphyr::from_str::<String>(token)
            .unwrap_or_else(|_| token[1..token.len() - 1].to_string())
    } else if token.len() >= 2 && token.starts_with('\'') && token.ends_with('\'') {
        token[1..token.len() - 1].replace("''", "'")
    } else {
        token.to_string()
    }
}

/// An edit of the line list; indices refer to the lines before any edit.
enum Op {
    /// Replace the byte span of a line.
    Replace(usize, (usize, usize), String),
    /// Remove a line.
    Delete(usize),
    /// Insert lines before this index.
    Insert(usize, Vec<String>),
}

/// Where a dotted key is.
enum Found {
    /// The line holding the last key.
    Line(usize),
    /// The first `depth` keys exist; the rest would be inserted before line `after` at
    /// `indent`.
    Partial {
        depth: usize,
        after: usize,
        indent: usize,
    },
}

/// A parsed line: `[indent][- ]key: value  # comment`.
#[derive(Debug)]
struct Line<'a> {
    /// Column of the first non-space character.
    indent: usize,
    /// The column of `-` when the line starts a sequence item.
    dash: Option<usize>,
    /// Column of the key (after `- `).
    key_col: usize,
    /// The key, if the line has one.
    key: Option<&'a str>,
    /// The byte span of the value after `key:`, if any (comment excluded).
    value: Option<(usize, usize)>,
}

/// The `images:` list.
struct Block {
    /// The `images:` line.
    line: usize,
    /// Its indent.
    indent: usize,
    /// The last line belonging to the list (content, not trailing comments).
    end: usize,
    /// `images: []`.
    empty_flow: bool,
    items: Vec<Item>,
}

/// One sequence item of the `images:` list.
struct Item {
    /// The `- ` line.
    start: usize,
    /// The last content line of the item.
    end: usize,
    dash_col: usize,
    key_indent: usize,
    /// key → line.
    fields: Vec<(String, usize)>,
}

impl Item {
    fn field(&self, key: &str) -> Option<usize> {
        self.fields.iter().find(|(k, _)| k == key).map(|(_, l)| *l)
    }

    fn name(&self, doc: &Doc) -> Option<String> {
        let line = self.field("name")?;
        let (a, b) = doc.scalar_span(line).ok()?;
        Some(unquote(&doc.lines[line][a..b]))
    }

    fn image(&self, doc: &Doc) -> Result<Image, EditError> {
        let line = self
            .field("name")
            .ok_or_else(|| doc.unsupported(self.start, "an images entry without a name".into()))?;
        let (a, b) = doc.scalar_span(line)?;
        let name_token = doc.lines[line][a..b].to_string();
        let mut fields = BTreeMap::new();
        for field in IMAGE_FIELDS {
            if let Some(line) = self.field(field) {
                let (a, b) = doc.scalar_span(line)?;
                fields.insert(field.to_string(), doc.lines[line][a..b].to_string());
            }
        }
        Ok(Image {
            name: unquote(&name_token),
            name_token,
            fields,
        })
    }
}

/// A document as lines (without line ends).
struct Doc {
    lines: Vec<String>,
    eol: &'static str,
    final_eol: bool,
}

impl Doc {
    fn new(text: &str) -> Self {
        let eol = if text.contains("\r\n") { "\r\n" } else { "\n" };
        let final_eol = text.ends_with('\n');
        let mut lines: Vec<String> = text
            .split('\n')
            .map(|l| l.strip_suffix('\r').unwrap_or(l).to_string())
            .collect();
        if final_eol || text.is_empty() {
            lines.pop();
        }
        Self {
            lines,
            eol,
            final_eol,
        }
    }

    fn text(&self) -> String {
        let mut text = self.lines.join(self.eol);
        if self.final_eol || !self.lines.is_empty() {
            text.push_str(self.eol);
        }
        text
    }

    fn unsupported(&self, line: usize, message: String) -> EditError {
        EditError::Unsupported {
            line: line + 1,
            message,
        }
    }

    /// Applies edits from the bottom up, so indices stay valid; at one index the line's
    /// own edit comes before an insert in front of it.
    fn apply(&mut self, mut ops: Vec<Op>) {
        let index = |op: &Op| match op {
            Op::Replace(l, ..) | Op::Delete(l) => (*l, 1),
            Op::Insert(l, _) => (*l, 0),
        };
        ops.sort_by_key(|op| std::cmp::Reverse(index(op)));
        for op in ops {
            match op {
                Op::Replace(l, (a, b), text) => self.lines[l].replace_range(a..b, &text),
                Op::Delete(l) => {
                    self.lines.remove(l);
                }
                Op::Insert(l, lines) => {
                    let at = l.min(self.lines.len());
                    self.lines.splice(at..at, lines);
                }
            }
        }
    }

    /// Whether a line has content (not blank, not only a comment, not a document marker).
    fn content(&self, i: usize) -> bool {
        let t = self.lines[i].trim_start();
        !(t.is_empty() || t.starts_with('#') || self.lines[i] == "---")
    }

    fn parse(&self, i: usize) -> Line<'_> {
        let line = &self.lines[i];
        let indent = line.len() - line.trim_start_matches(' ').len();
        let mut col = indent;
        let mut dash = None;
        let rest = &line[col..];
        if rest == "-" || rest.starts_with("- ") {
            dash = Some(col);
            col += 1;
            col += line[col..].len() - line[col..].trim_start_matches(' ').len();
        }
        let rest = &line[col..];
        let mut parsed = Line {
            indent,
            dash,
            key_col: col,
            key: None,
            value: None,
        };
        if rest.starts_with(['"', '\'', '{', '[', '#', '&', '*', '!', '|', '>']) || rest.is_empty()
        {
            return parsed;
        }
        let bytes = rest.as_bytes();
        let Some(colon) = (0..bytes.len())
            .find(|&j| bytes[j] == b':' && (j + 1 == bytes.len() || bytes[j + 1] == b' '))
        else {
            return parsed;
        };
        parsed.key = Some(rest[..colon].trim_end());
        let after = col + colon + 1;
        // YAML separates tokens with spaces and tabs only: U+3000 or U+00A0 is content.
        let value_start =
            after + line[after..].len() - line[after..].trim_start_matches([' ', '\t']).len();
        if value_start >= line.len() || line[value_start..].starts_with('#') {
            return parsed;
        }
        let end = token_end(line, value_start);
        parsed.value = Some((value_start, end));
        parsed
    }

    /// The span of a one-line scalar value on `line`, or an error naming why not.
    fn scalar_span(&self, line: usize) -> Result<(usize, usize), EditError> {
        let parsed = self.parse(line);
        let Some((a, b)) = parsed.value else {
            return Err(self.unsupported(line, "expected a value on this line".into()));
        };
        let token = &self.lines[line][a..b];
        if token.starts_with(['{', '[', '|', '>', '&', '*', '!']) {
            return Err(self.unsupported(
                line,
                format!("value {token:?} is not a plain or quoted scalar"),
            ));
        }
        // A plain scalar continued on the next line.
        if let Some(next) = (line + 1..self.lines.len()).find(|&j| self.content(j))
            && self.parse(next).indent > parsed.key_col
            && self.parse(next).key.is_none()
            && self.parse(next).dash.is_none()
        {
            return Err(self.unsupported(line, "multi-line value".into()));
        }
        Ok((a, b))
    }

    fn flow_span(&self, line: usize) -> (usize, usize) {
        let parsed = self.parse(line);
        let (a, b) = parsed
            .value
            .unwrap_or((self.lines[line].len(), self.lines[line].len()));
        // Keep no trailing space before a comment: drop the space after the colon too.
        (a.saturating_sub(1).max(parsed.key_col), b)
    }

    /// The indent of top-level keys: that of the first content line.
    fn top_indent(&self) -> usize {
        (0..self.lines.len())
            .find(|&i| self.content(i))
            .map_or(0, |i| self.parse(i).indent)
    }

    /// The last line of the block under the key on line `start` at `indent`: the lines
    /// after it until the next content line indented at most `indent` (a `- ` item at
    /// exactly `indent` belongs to the block when `dash_at_parent`). Trailing comments
    /// and blank lines are not counted.
    fn block_end(&self, start: usize, indent: usize, dash_at_parent: bool) -> usize {
        let mut end = start;
        for i in start + 1..self.lines.len() {
            if !self.content(i) {
                continue;
            }
            let p = self.parse(i);
            let inside =
                p.indent > indent || (dash_at_parent && p.indent == indent && p.dash.is_some());
            if !inside {
                break;
            }
            end = i;
        }
        end
    }

    /// Finds a key at `indent` (not a sequence item) among lines `from..=to`.
    fn find_key(&self, from: usize, to: usize, indent: usize, key: &str) -> Option<usize> {
        (from..=to.min(self.lines.len().saturating_sub(1))).find(|&i| {
            if !self.content(i) {
                return false;
            }
            let p = self.parse(i);
            p.indent == indent && p.dash.is_none() && p.key == Some(key)
        })
    }

    fn images_block(&self) -> Result<Option<Block>, EditError> {
        let indent = self.top_indent();
        if self.lines.is_empty() {
            return Ok(None);
        }
        let Some(line) = self.find_key(0, self.lines.len() - 1, indent, "images") else {
            return Ok(None);
        };
        let parsed = self.parse(line);
        let mut empty_flow = false;
        if let Some((a, b)) = parsed.value {
            let token = &self.lines[line][a..b];
            if token == "[]" {
                empty_flow = true;
            } else if token != "~" && token != "null" {
                return Err(self.unsupported(line, format!("images: {token} is not a block list")));
            }
        }
        let end = self.block_end(line, indent, true);
        let mut items: Vec<Item> = Vec::new();
        let mut seq_col: Option<usize> = None;
        for i in line + 1..=end {
            if !self.content(i) {
                continue;
            }
            let p = self.parse(i);
            let starts_item = p.dash.is_some() && seq_col.is_none_or(|c| p.dash == Some(c));
            if starts_item {
                let dash_col = p.dash.expect("a dash");
                seq_col = Some(dash_col);
                if p.key.is_none() && self.lines[i][p.key_col..].trim() != "" {
                    return Err(self.unsupported(i, "an images entry in flow style".into()));
                }
                let key_indent = match p.key {
                    Some(_) => p.key_col,
                    None => (i + 1..=end)
                        .find(|&j| self.content(j))
                        .map_or(dash_col + 2, |j| self.parse(j).indent),
                };
                let mut item = Item {
                    start: i,
                    end: i,
                    dash_col,
                    key_indent,
                    fields: Vec::new(),
                };
                if let Some(key) = p.key {
                    item.fields.push((key.to_string(), i));
                }
                items.push(item);
                continue;
            }
            let Some(item) = items.last_mut() else {
                return Err(self.unsupported(i, "unexpected line in the images list".into()));
            };
            item.end = i;
            if p.indent == item.key_indent && p.dash.is_none() {
                match p.key {
                    Some(key) => item.fields.push((key.to_string(), i)),
                    None => {
                        return Err(
                            self.unsupported(i, "unexpected line in an images entry".into())
                        );
                    }
                }
            }
        }
        Ok(Some(Block {
            line,
            indent,
            end,
            empty_flow,
            items,
        }))
    }

    /// Follows a dotted key through block mappings.
    fn find_path(&self, key: &str) -> Result<Found, EditError> {
        let segments: Vec<&str> = key.split('.').collect();
        let mut from = 0;
        let mut to = self.lines.len().saturating_sub(1);
        let mut indent = self.top_indent();
        // Where children of the current mapping would be inserted.
        let mut after = self.lines.len();
        for (depth, seg) in segments.iter().enumerate() {
            let found = if self.lines.is_empty() || from > to {
                None
            } else {
                self.find_key(from, to, indent, seg)
            };
            let Some(line) = found else {
                return Ok(Found::Partial {
                    depth,
                    after,
                    indent,
                });
            };
            if depth + 1 == segments.len() {
                return Ok(Found::Line(line));
            }
            if self.parse(line).value.is_some() {
                return Err(self.unsupported(line, format!("{seg} is not a block mapping")));
            }
            let end = self.block_end(line, indent, false);
            after = end + 1;
            let child = (line + 1..=end).find(|&i| self.content(i));
            from = line + 1;
            to = end;
            indent = match child {
                Some(i) => self.parse(i).indent,
                None => indent + 2,
            };
        }
        unreachable!("the loop returns at the last segment")
    }
}

/// The end of the scalar token starting at `start`: the closing quote, or (plain) the
/// text before a ` #` comment, trailing spaces excluded.
fn token_end(line: &str, start: usize) -> usize {
    let bytes = line.as_bytes();
    match bytes[start] {
        b'"' => {
            let mut j = start + 1;
            while j < bytes.len() {
                match bytes[j] {
                    b'\\' => j += 2,
                    b'"' => return j + 1,
                    _ => j += 1,
                }
            }
            line.len()
        }
        b'\'' => {
            let mut j = start + 1;
            while j < bytes.len() {
                if bytes[j] == b'\'' {
                    if bytes.get(j + 1) == Some(&b'\'') {
                        j += 2;
                        continue;
                    }
                    return j + 1;
                }
                j += 1;
            }
            line.len()
        }
        _ => {
            let rest = &line[start..];
            let end = rest
                .find(" #")
                .or_else(|| rest.find("\t#"))
                .unwrap_or(rest.len());
            start + rest[..end].trim_end_matches([' ', '\t']).len()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAGING: &str = "\
# staging overlay
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - ../base
images:
  - name: registry.example/llm-app
    newTag: 0.2.1 # built by CI
  - name: \"registry.example/sidecar\"
    newName: mirror.example/sidecar
    digest: sha256:abc
";

    const PRODUCTION: &str = "\
# production overlay: pinned tags only.
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - ../base

images:
  # the app itself
  - name: registry.example/llm-app
    newTag: \"0.2.0\"   # promoted from staging
  - name: registry.example/sidecar
    newTag: '1.0'
    # keep the mirror
    newName: mirror.example/sidecar

replicas:
  - name: llm-app
    count: 3
";

    #[test]
    fn reads_images_as_written() {
        let images = read_images(STAGING).unwrap();
        assert_eq!(images.len(), 2);
        assert_eq!(images[0].name, "registry.example/llm-app");
        assert_eq!(images[0].fields["newTag"], "0.2.1");
        assert_eq!(images[1].name, "registry.example/sidecar");
        assert_eq!(images[1].name_token, "\"registry.example/sidecar\"");
        assert_eq!(images[1].describe(), "mirror.example/sidecar@sha256:abc");
        assert!(read_images("kind: Kustomization\n").unwrap().is_empty());
    }

    #[test]
    fn copies_tags_keeping_comments_and_layout() {
        let edit = set_images(PRODUCTION, &read_images(STAGING).unwrap()).unwrap();
        assert_eq!(
            edit.text,
            "\
# production overlay: pinned tags only.
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - ../base

images:
  # the app itself
  - name: registry.example/llm-app
    newTag: 0.2.1   # promoted from staging
  - name: registry.example/sidecar
    # keep the mirror
    newName: mirror.example/sidecar
    digest: sha256:abc

replicas:
  - name: llm-app
    count: 3
"
        );
        assert_eq!(
            edit.changes,
            [
                Change {
                    image: "registry.example/llm-app".into(),
                    from: "0.2.0".into(),
                    to: "0.2.1".into()
                },
                Change {
                    image: "registry.example/sidecar".into(),
                    from: "mirror.example/sidecar:1.0".into(),
                    to: "mirror.example/sidecar@sha256:abc".into()
                },
            ]
        );
        // Promoting again changes nothing.
        let again = set_images(&edit.text, &read_images(STAGING).unwrap()).unwrap();
        assert!(again.changes.is_empty());
        assert_eq!(again.text, edit.text);
    }

    #[test]
    fn quoting_alone_is_no_change() {
        let to = "images:\n- name: a\n  newTag: \"0.2.1\"\n";
        let from = "images:\n- name: a\n  newTag: 0.2.1\n";
        let edit = set_images(to, &read_images(from).unwrap()).unwrap();
        assert!(edit.changes.is_empty(), "{edit:?}");
        // But a number is not a string: 1.0 and "1.0" differ for YAML.
        let edit = set_images(
            "images:\n- name: a\n  newTag: \"1.0\"\n",
            &read_images("images:\n- name: a\n  newTag: 1.0\n").unwrap(),
        )
        .unwrap();
        assert_eq!(edit.text, "images:\n- name: a\n  newTag: 1.0\n");
    }

    #[test]
    fn adds_missing_entries_and_lists() {
        let images = read_images(STAGING).unwrap();
        let edit = set_images("kind: Kustomization # k\nresources: [../base]", &images).unwrap();
        assert_eq!(
            edit.text,
            "kind: Kustomization # k\nresources: [../base]\nimages:\n  - name: registry.example/llm-app\n    newTag: 0.2.1\n  - name: \"registry.example/sidecar\"\n    newName: mirror.example/sidecar\n    digest: sha256:abc\n"
        );
        assert_eq!(edit.changes[0].from, "(none)");
        let edit = set_images(
            "images: []  # none yet\nkind: Kustomization\n",
            &images[..1],
        )
        .unwrap();
        assert_eq!(
            edit.text,
            "images:  # none yet\n  - name: registry.example/llm-app\n    newTag: 0.2.1\nkind: Kustomization\n"
        );
        // A dash-first entry with the name on the next line; CRLF line ends are kept.
        let to = "images:\r\n-\r\n  name: registry.example/llm-app\r\n  newTag: 0.1.0\r\n";
        let edit = set_images(to, &images[..1]).unwrap();
        assert_eq!(
            edit.text,
            "images:\r\n-\r\n  name: registry.example/llm-app\r\n  newTag: 0.2.1\r\n"
        );
    }

    #[test]
    fn unusual_layouts_are_refused() {
        let images = read_images(STAGING).unwrap();
        let err = set_images(
            "images: [{name: registry.example/llm-app, newTag: 1}]\n",
            &images,
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("line 1: images: [{name"), "{err}");
        let err = set_images("images:\n  - {name: registry.example/llm-app}\n", &images)
            .unwrap_err()
            .to_string();
        assert!(err.contains("flow style"), "{err}");
        let err = set_images(
            "images:\n  - name: registry.example/llm-app\n    newTag: &t 1\n",
            &images,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("line 3"), "{err}");
        assert!(matches!(
            set_images("a: [", &images),
            Err(EditError::Parse(_))
        ));
    }

    #[test]
    fn an_image_listed_twice_is_refused() {
        // Found by fuzzing: with both entries copied, a second promote changed the file
        // again (the first entry's fields removed, the second's set) and failed to verify.
        let from = "images:\n- name: a\n- name: a\n  newTag: 0.2.1\n";
        let err = read_images(from).unwrap_err().to_string();
        assert_eq!(err, "line 3: image a is listed twice; edit it by hand");
    }

    #[test]
    fn only_spaces_and_tabs_separate_tokens() {
        // Found writing the promote_edit fuzz target (which panics on it): U+3000 after
        // `images:` made the value token `[]`, and removing it cut inside the character.
        let images = read_images("images:\n- name: a\n  newTag: 1\n").unwrap();
        let err = set_images("images: \u{3000}[]\n", &images).unwrap_err();
        assert!(err.to_string().contains("is not a block list"), "{err}");
        // A value ending in U+00A0 is read with it, as YAML reads it.
        assert_eq!(read_value("tag: 1\u{a0}\n", "tag").unwrap(), "1\u{a0}");
    }

    const VALUES_FROM: &str = "image:\n  repository: registry.example/llm-app\n  tag: \"0.2.1\"\n";

    #[test]
    fn copies_a_helm_value() {
        let token = read_value(VALUES_FROM, "image.tag").unwrap();
        assert_eq!(token, "\"0.2.1\"");
        let to = "# production values\nreplicas: 3\nimage:\n  # pinned\n  tag: 0.2.0  # prod\n  repository: registry.example/llm-app\nresources: {}\n";
        let edit = set_value(to, "image.tag", &token).unwrap();
        assert_eq!(
            edit.text,
            "# production values\nreplicas: 3\nimage:\n  # pinned\n  tag: \"0.2.1\"  # prod\n  repository: registry.example/llm-app\nresources: {}\n"
        );
        assert_eq!(
            edit.changes,
            [Change {
                image: "image.tag".into(),
                from: "0.2.0".into(),
                to: "0.2.1".into()
            }]
        );
        assert!(
            set_value(&edit.text, "image.tag", &token)
                .unwrap()
                .changes
                .is_empty()
        );
    }

    #[test]
    fn adds_a_missing_helm_key() {
        let edit = set_value(
            "image:\n    repository: r\nreplicas: 1\n",
            "image.tag",
            "0.2.1",
        )
        .unwrap();
        assert_eq!(
            edit.text,
            "image:\n    repository: r\n    tag: 0.2.1\nreplicas: 1\n"
        );
        let edit = set_value("replicas: 1\n", "image.tag", "0.2.1").unwrap();
        assert_eq!(edit.text, "replicas: 1\nimage:\n  tag: 0.2.1\n");
        assert_eq!(edit.changes[0].from, "(none)");
        let err = set_value("image: registry/app:1\n", "image.tag", "2").unwrap_err();
        assert!(
            err.to_string().contains("image is not a block mapping"),
            "{err}"
        );
        let err = read_value("replicas: 1\n", "image.tag").unwrap_err();
        assert_eq!(err.to_string(), "no key image.tag");
    }
}
