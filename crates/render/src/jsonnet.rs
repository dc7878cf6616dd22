//! The Jsonnet renderer, in-process.
//!
//! The evaluator is [`rsjsonnet_lang`]: a pure-Rust implementation with stable releases
//! (0.5), no unsafe code, few dependencies and regular maintenance, checked against the
//! reference implementation's test suite. The `jrsonnet-evaluator` family was the other
//! candidate; its current line has been a pre-release (`0.5.0-pre*`) for years and its last
//! stable release (0.4) is years old.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};

use ferry_model::{JsonnetOptions, Manifest, Origin};
use rsjsonnet_lang::arena::Arena;
use rsjsonnet_lang::interner::InternedStr;
use rsjsonnet_lang::lexer::LexError;
use rsjsonnet_lang::parser::{ActualToken, ParseError};
use rsjsonnet_lang::program::{
    AnalyzeError, Callbacks, EvalError, EvalErrorKind, EvalStackTraceItem, ImportError, LoadError,
    NativeError, Program, Thunk, Value,
};
use rsjsonnet_lang::span::{SourceId, SpanContext, SpanId};
use serde_json::Value as Json;

use crate::parse::push_manifests;
use crate::process::Tools;
use crate::{RenderError, RenderRequest, Renderer, inside_root, parse_documents};

/// How many evaluations given up after the timeout may still be running (the evaluator
/// cannot be interrupted) before new Jsonnet renders are refused: this bounds the CPU a
/// runaway program, retried by the agent, can take.
pub const MAX_ABANDONED: usize = 2;

/// Evaluations given up after the timeout and still running.
static ABANDONED: AtomicUsize = AtomicUsize::new(0);

/// States of an evaluation thread.
const RUNNING: u8 = 0;
const DONE: u8 = 1;
const GIVEN_UP: u8 = 2;

/// Renders a directory the way an Argo CD directory app without `recurse` does: every
/// top-level `*.jsonnet` file is an entry point, and every top-level `*.yaml`, `*.yml`
/// and `*.json` file is read as plain manifests, all in order of file name.
/// `*.libsonnet` files and subdirectories are only read through `import`, `importstr`
/// and `importbin`.
///
/// An entry point may evaluate to an object, an array or nested arrays of objects, or a
/// `List` (any `kind: *List` with `items`); all become separate objects. One that
/// evaluates to a function is called with the app's top-level arguments. Imports resolve
/// against the importing file's directory, then each of `jsonnet.libs`, and must stay
/// inside the working copy. Evaluation runs on its own thread under [`Tools::timeout`]
/// (a run past it is abandoned, not stopped: the evaluator cannot be interrupted; while
/// [`MAX_ABANDONED`] such runs are still going, new renders are refused) and the JSON
/// output of all entry points under [`Tools::max_output`].
#[derive(Clone, Debug)]
pub struct Jsonnet {
    tools: Tools,
}

impl Jsonnet {
    /// A Jsonnet renderer under the limits of `tools`.
    pub fn new(tools: Tools) -> Self {
        Self { tools }
    }
}

/// Whether `dir` has a top-level `*.jsonnet` file (what makes auto-detection pick Jsonnet).
pub(crate) fn has_entry_point(dir: &Path) -> bool {
    fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| is_entry_point(&e.path()) && e.path().is_file())
    })
}

fn is_entry_point(path: &Path) -> bool {
    path.extension().is_some_and(|ext| ext == "jsonnet")
        && !path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'))
}

impl Renderer for Jsonnet {
    fn name(&self) -> &'static str {
        "jsonnet"
    }

    fn render(&self, req: &RenderRequest) -> Result<Vec<Manifest>, RenderError> {
        let dir = inside_root(req.dir, req.root)?;
        let root = inside_root(req.root, req.root)?;
        let options = req.spec.jsonnet.clone().unwrap_or_default();
        let libs = options
            .libs
            .iter()
            .map(|lib| inside_root(&root.join(lib), &root))
            .collect::<Result<Vec<_>, _>>()?;
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| RenderError::Io { path, source }
        };
        let mut files = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io(&dir))? {
            let path = entry.map_err(io(&dir))?.path();
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
            if path.is_file() && name.as_ref().is_some_and(|n| !n.starts_with('.')) {
                files.push(path);
            }
        }
        files.sort();

        let mut manifests = Vec::new();
        let mut entry_points = Vec::new();
        for path in files {
            let name = relative(&path, &dir, &root);
            let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
            if ext == "jsonnet" {
                entry_points.push((inside_root(&path, &root)?, name));
                continue;
            }
            if !matches!(ext, "yaml" | "yml" | "json") {
                continue;
            }
            inside_root(&path, &root)?;
            let bytes = fs::read(&path).map_err(io(&path))?;
            let text = String::from_utf8(bytes)
                .map_err(|_| RenderError::NotUtf8 { file: name.clone() })?;
            manifests.extend(parse_documents(&text, &name)?);
        }

        let job = Job {
            dir,
            root,
            libs,
            options,
            entry_points,
            max_output: self.tools.max_output,
        };
        let abandoned = ABANDONED.load(Ordering::SeqCst);
        if abandoned >= MAX_ABANDONED {
            return Err(RenderError::Jsonnet {
                location: req.dir.display().to_string(),
                message: format!(
                    "{abandoned} earlier evaluations that timed out are still running; \
                     not starting another until they end"
                ),
            });
        }
        let state = Arc::new(AtomicU8::new(RUNNING));
        let (tx, rx) = mpsc::channel();
        let thread_state = state.clone();
        std::thread::Builder::new()
            .name("jsonnet".into())
            .spawn(move || {
                let _ = tx.send(job.run());
                if thread_state.swap(DONE, Ordering::SeqCst) == GIVEN_UP {
                    ABANDONED.fetch_sub(1, Ordering::SeqCst);
                }
            })
            .map_err(|source| RenderError::Io {
                path: req.dir.to_path_buf(),
                source,
            })?;
        let outputs = match rx.recv_timeout(self.tools.timeout) {
            Ok(outputs) => outputs?,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                ABANDONED.fetch_add(1, Ordering::SeqCst);
                let given_up =
                    state.compare_exchange(RUNNING, GIVEN_UP, Ordering::SeqCst, Ordering::SeqCst);
                if given_up.is_err() {
                    ABANDONED.fetch_sub(1, Ordering::SeqCst);
                }
                return Err(RenderError::EvalTimeout {
                    tool: "jsonnet",
                    timeout: self.tools.timeout,
                });
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(RenderError::Jsonnet {
                    location: req.dir.display().to_string(),
                    message: "the evaluator stopped unexpectedly (it panicked)".into(),
                });
            }
        };
        for (file, value) in outputs {
            let mut doc = 0;
            flatten(value, &file, &mut doc, &mut manifests)?;
        }
        Ok(manifests)
    }
}

/// Appends the objects of an entry point's value; each object (or `List`) gets the next
/// document index.
fn flatten(
    value: Json,
    file: &str,
    doc: &mut usize,
    out: &mut Vec<Manifest>,
) -> Result<(), RenderError> {
    match value {
        Json::Array(items) => items
            .into_iter()
            .try_for_each(|item| flatten(item, file, doc, out)),
        value => {
            let origin = Origin {
                file: file.to_string(),
                doc: *doc,
            };
            *doc += 1;
            push_manifests(value, &origin, out)
        }
    }
}

/// `path` relative to the app directory when inside it, else relative to the working copy.
fn relative(path: &Path, dir: &Path, root: &Path) -> String {
    path.strip_prefix(dir)
        .or_else(|_| path.strip_prefix(root))
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}

/// Everything the evaluation thread owns.
struct Job {
    dir: PathBuf,
    root: PathBuf,
    libs: Vec<PathBuf>,
    options: JsonnetOptions,
    entry_points: Vec<(PathBuf, String)>,
    max_output: usize,
}

impl Job {
    /// Evaluates every entry point; returns each one's file name and value.
    fn run(self) -> Result<Vec<(String, Json)>, RenderError> {
        let arena = Arena::new();
        let mut program = Program::new(&arena);
        let mut session = Session {
            dir: self.dir.clone(),
            root: self.root.clone(),
            libs: self.libs.clone(),
            sources: HashMap::new(),
            loaded: HashMap::new(),
            failure: None,
        };
        for (name, value) in &self.options.ext_vars {
            let thunk = program.value_to_thunk(&Value::string(value));
            program.add_ext_var(program.intern_str(name), &thunk);
        }
        let mut size = 0;
        let mut outputs = Vec::new();
        for (path, name) in &self.entry_points {
            let thunk = session.load(&mut program, path)?;
            let mut value = program
                .eval_value(&thunk, &mut session)
                .map_err(|e| session.eval_error(&program, &e, name))?;
            if value.is_function() {
                let tlas: Vec<(InternedStr<'_>, Thunk<'_>)> = self
                    .options
                    .tlas
                    .iter()
                    .map(|(k, v)| {
                        (
                            program.intern_str(k),
                            program.value_to_thunk(&Value::string(v)),
                        )
                    })
                    .collect();
                let func = program.value_to_thunk(&value);
                value = program
                    .eval_call(&func, &[], &tlas, &mut session)
                    .map_err(|e| session.eval_error(&program, &e, name))?;
            }
            let json = program
                .manifest_json(&value, false)
                .map_err(|e| session.eval_error(&program, &e, name))?;
            size += json.len();
            if size > self.max_output {
                return Err(RenderError::OutputTooLarge {
                    tool: "jsonnet",
                    limit: self.max_output,
                });
            }
            let value = serde_json::from_str(&json).map_err(|e| RenderError::Jsonnet {
                location: name.clone(),
                message: format!("output is not JSON: {e}"),
            })?;
            outputs.push((name.clone(), value));
        }
        Ok(outputs)
    }
}

/// A loaded source file: its name in messages and its text (for line numbers).
struct Source {
    name: String,
    path: PathBuf,
    text: Vec<u8>,
}

/// Loads files and resolves imports, confined to the working copy.
struct Session<'p> {
    dir: PathBuf,
    root: PathBuf,
    libs: Vec<PathBuf>,
    sources: HashMap<SourceId, Source>,
    loaded: HashMap<PathBuf, Thunk<'p>>,
    /// Why the last import failed (the evaluator only learns that it did).
    failure: Option<RenderError>,
}

impl<'p> Session<'p> {
    /// Parses `path` (canonical) into a thunk, once per file.
    fn load(&mut self, program: &mut Program<'p>, path: &Path) -> Result<Thunk<'p>, RenderError> {
        if let Some(thunk) = self.loaded.get(path) {
            return Ok(thunk.clone());
        }
        let text = fs::read(path).map_err(|source| RenderError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let name = relative(path, &self.dir, &self.root);
        let (ctx, id) = program.span_manager_mut().insert_source_context(text.len());
        let loaded = program.load_source(ctx, &text, true, &name);
        self.sources.insert(
            id,
            Source {
                name: name.clone(),
                path: path.to_path_buf(),
                text,
            },
        );
        let thunk = loaded.map_err(|e| {
            let (span, message) = load_message(&e);
            RenderError::Jsonnet {
                location: self.locate(program, Some(span), &[], &name),
                message,
            }
        })?;
        self.loaded.insert(path.to_path_buf(), thunk.clone());
        Ok(thunk)
    }

    /// `file:line:column` of the first span in a file of the app (the error's own span,
    /// else the innermost such frame of the stack trace), else `fallback`.
    fn locate(
        &self,
        program: &Program<'p>,
        span: Option<SpanId>,
        stack: &[EvalStackTraceItem],
        fallback: &str,
    ) -> String {
        let frames = stack.iter().rev().filter_map(frame_span);
        for span in span.into_iter().chain(frames) {
            let (ctx, start, _) = program.span_manager().get_span(span);
            let SpanContext::Source(id) = program.span_manager().get_context(ctx);
            if let Some(source) = self.sources.get(id) {
                let before = &source.text[..start.min(source.text.len())];
                let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
                let column = before.iter().rev().take_while(|&&b| b != b'\n').count() + 1;
                return format!("{}:{line}:{column}", source.name);
            }
        }
        fallback.to_string()
    }

    fn eval_error(&mut self, program: &Program<'p>, error: &EvalError, file: &str) -> RenderError {
        if let Some(failure) = self.failure.take() {
            return failure;
        }
        let (span, message) = eval_message(&error.kind);
        RenderError::Jsonnet {
            location: self.locate(program, span, &error.stack_trace, file),
            message,
        }
    }

    /// Finds the file an import names: relative to the importing file, then in each lib
    /// directory. A file found outside the working copy is an error.
    fn resolve(
        &self,
        program: &Program<'p>,
        from: SpanId,
        import: &str,
    ) -> Result<PathBuf, RenderError> {
        let (ctx, _, _) = program.span_manager().get_span(from);
        let SpanContext::Source(id) = program.span_manager().get_context(ctx);
        let importer = self.sources.get(id);
        let base = importer.and_then(|s| s.path.parent()).unwrap_or(&self.dir);
        let location = self.locate(program, Some(from), &[], "jsonnet");
        let candidates = std::iter::once(base).chain(self.libs.iter().map(PathBuf::as_path));
        for candidate in candidates.map(|dir| dir.join(import)) {
            if !candidate.is_file() {
                continue;
            }
            return match candidate.canonicalize() {
                Ok(path) if path.starts_with(&self.root) => Ok(path),
                Ok(_) => Err(RenderError::ImportOutsideRoot {
                    location,
                    import: import.to_string(),
                }),
                Err(source) => Err(RenderError::Io {
                    path: candidate,
                    source,
                }),
            };
        }
        Err(RenderError::Jsonnet {
            location,
            message: format!("import {import:?} not found"),
        })
    }

    fn read_import(
        &mut self,
        program: &Program<'p>,
        from: SpanId,
        import: &str,
    ) -> Result<Vec<u8>, ImportError> {
        let bytes = self
            .resolve(program, from, import)
            .and_then(|path| fs::read(&path).map_err(|source| RenderError::Io { path, source }));
        bytes.map_err(|e| self.fail(e))
    }

    fn fail(&mut self, error: RenderError) -> ImportError {
        self.failure.get_or_insert(error);
        ImportError
    }
}

impl<'p> Callbacks<'p> for Session<'p> {
    fn import(
        &mut self,
        program: &mut Program<'p>,
        from: SpanId,
        path: &str,
    ) -> Result<Thunk<'p>, ImportError> {
        let loaded = self
            .resolve(program, from, path)
            .and_then(|file| self.load(program, &file));
        loaded.map_err(|e| self.fail(e))
    }

    fn import_str(
        &mut self,
        program: &mut Program<'p>,
        from: SpanId,
        path: &str,
    ) -> Result<String, ImportError> {
        let bytes = self.read_import(program, from, path)?;
        String::from_utf8(bytes).map_err(|_| {
            let location = self.locate(program, Some(from), &[], "jsonnet");
            self.fail(RenderError::NotUtf8 {
                file: format!("{location}: importstr {path:?}"),
            })
        })
    }

    fn import_bin(
        &mut self,
        program: &mut Program<'p>,
        from: SpanId,
        path: &str,
    ) -> Result<Vec<u8>, ImportError> {
        self.read_import(program, from, path)
    }

    fn trace(&mut self, program: &mut Program<'p>, message: &str, stack: &[EvalStackTraceItem]) {
        let location = self.locate(program, None, stack, "jsonnet");
        tracing::info!(%location, message, "std.trace");
    }

    fn native_call(
        &mut self,
        _: &mut Program<'p>,
        _: InternedStr<'p>,
        _: &[Value<'p>],
    ) -> Result<Value<'p>, NativeError> {
        // No native functions are registered, so `std.native` never returns one to call.
        Err(NativeError)
    }
}

fn frame_span(item: &EvalStackTraceItem) -> Option<SpanId> {
    match *item {
        EvalStackTraceItem::Expr { span }
        | EvalStackTraceItem::Variable { span, .. }
        | EvalStackTraceItem::Import { span } => Some(span),
        EvalStackTraceItem::Call { span, .. }
        | EvalStackTraceItem::ArrayItem { span, .. }
        | EvalStackTraceItem::ObjectField { span, .. } => span,
        _ => None,
    }
}

fn load_message(error: &LoadError) -> (SpanId, String) {
    match error {
        LoadError::Lex(e) => lex_message(e),
        LoadError::Parse(ParseError::Expected { span, instead, .. }) => {
            let token = match instead {
                ActualToken::EndOfFile => "end of file".to_string(),
                ActualToken::Simple(kind) => format!("token {kind:?}"),
                ActualToken::OtherOp(op) => format!("operator {op:?}"),
                ActualToken::Ident(name) => format!("identifier {name:?}"),
                ActualToken::Number => "number".into(),
                ActualToken::String => "string".into(),
                ActualToken::TextBlock => "text block".into(),
            };
            (*span, format!("syntax error: unexpected {token}"))
        }
        LoadError::Analyze(e) => analyze_message(e),
    }
}

fn lex_message(error: &LexError) -> (SpanId, String) {
    use LexError as E;
    let (span, message) = match error {
        E::InvalidChar { span, chr } => (span, format!("invalid character {chr:?}")),
        E::InvalidUtf8 { span, .. } => (span, "invalid UTF-8".into()),
        E::UnfinishedMultilineComment { span } => (span, "unfinished comment".into()),
        E::LeadingZeroInNumber { span } => (span, "leading zero in number".into()),
        E::MissingFracDigits { span } => (span, "missing digits after `.`".into()),
        E::MissingExpDigits { span } => (span, "missing exponent digits".into()),
        E::MissingDigitAfterUnderscore { span } => (span, "missing digit after `_`".into()),
        E::ExpOverflow { span } => (span, "exponent overflow".into()),
        E::InvalidEscapeInString { span, chr } => (span, format!("invalid escape \\{chr}")),
        E::IncompleteUnicodeEscape { span } => (span, "incomplete \\u escape".into()),
        E::InvalidUtf16EscapeSequence { span, .. } => (span, "invalid \\u escape".into()),
        E::UnfinishedString { span } => (span, "unfinished string".into()),
        E::MissingLineBreakAfterTextBlockStart { span }
        | E::MissingWhitespaceTextBlockStart { span }
        | E::InvalidTextBlockTermination { span } => (span, "malformed text block".into()),
    };
    (*span, format!("syntax error: {message}"))
}

fn analyze_message(error: &AnalyzeError) -> (SpanId, String) {
    use AnalyzeError as E;
    let (span, message) = match error {
        E::UnknownVariable { span, name } => (span, format!("unknown variable {name:?}")),
        E::SelfOutsideObject { self_span: span } => (span, "`self` outside an object".into()),
        E::SuperOutsideObject { super_span: span } => (span, "`super` outside an object".into()),
        E::DollarOutsideObject { dollar_span: span } => (span, "`$` outside an object".into()),
        E::RepeatedLocalName {
            repeated_span: span,
            name,
            ..
        } => (span, format!("local {name:?} is defined twice")),
        E::RepeatedFieldName {
            repeated_span: span,
            name,
            ..
        } => (span, format!("field {name:?} is defined twice")),
        E::RepeatedParamName {
            repeated_span: span,
            name,
            ..
        } => (span, format!("parameter {name:?} is defined twice")),
        E::PositionalArgAfterNamed { arg_span: span } => {
            (span, "positional argument after a named one".into())
        }
        E::TextBlockAsImportPath { span } | E::ComputedImportPath { span } => {
            (span, "an import path must be a string literal".into())
        }
    };
    (*span, message)
}

fn eval_message(kind: &EvalErrorKind) -> (Option<SpanId>, String) {
    use EvalErrorKind as K;
    let at = |span: &SpanId, message: String| (Some(*span), message);
    let near = |span: &Option<SpanId>, message: String| (*span, message);
    match kind {
        K::StackOverflow => (None, "stack overflow".into()),
        K::InfiniteRecursion => (None, "infinite recursion".into()),
        K::InvalidIndexedType { span, got_type } => {
            at(span, format!("cannot index a {}", got_type_name(*got_type)))
        }
        K::InvalidSlicedType { span, got_type } => {
            at(span, format!("cannot slice a {}", got_type_name(*got_type)))
        }
        K::SliceIndexOrStepIsNotNumber { span, .. }
        | K::StringIndexIsNotNumber { span, .. }
        | K::ArrayIndexIsNotNumber { span, .. } => at(span, "index is not a number".into()),
        K::NumericIndexIsNotValid { span, index } => at(span, format!("invalid index {index}")),
        K::NumericIndexOutOfRange {
            span,
            index,
            length,
        } => at(
            span,
            format!("index {index} out of range (length {length})"),
        ),
        K::ObjectIndexIsNotString { span, .. } | K::FieldNameIsNotString { span, .. } => {
            at(span, "field name is not a string".into())
        }
        K::RepeatedFieldName { span, name } => at(span, format!("field {name:?} is defined twice")),
        K::UnknownObjectField { span, field_name } => {
            at(span, format!("field {field_name:?} does not exist"))
        }
        K::FieldOfNonObject { span } => at(span, "field access on a non-object".into()),
        K::SuperWithoutSuperObject { span } => at(span, "`super` without a super object".into()),
        K::ForSpecValueIsNotArray { span, got_type } => at(
            span,
            format!("`for` over a {}, not an array", got_type_name(*got_type)),
        ),
        K::CondIsNotBool { span, got_type } => at(
            span,
            format!("condition is a {}, not a boolean", got_type_name(*got_type)),
        ),
        K::CalleeIsNotFunction { span, got_type } => near(
            span,
            format!("calling a {}, not a function", got_type_name(*got_type)),
        ),
        K::TooManyCallArgs { span, num_params } => {
            near(span, format!("too many arguments ({num_params} expected)"))
        }
        K::UnknownCallParam { span, param_name } => {
            near(span, format!("unknown parameter {param_name:?}"))
        }
        K::RepeatedCallParam { span, param_name } => {
            near(span, format!("parameter {param_name:?} given twice"))
        }
        K::CallParamNotBound { span, param_name } => near(
            span,
            format!("parameter {param_name:?} has no value (a missing top-level argument?)"),
        ),
        K::NativeCallFailed => (None, "native function failed".into()),
        K::InvalidUnaryOpType { span, op, rhs_type } => at(
            span,
            format!("operator {op:?} on a {}", got_type_name(*rhs_type)),
        ),
        K::InvalidBinaryOpTypes {
            span,
            op,
            lhs_type,
            rhs_type,
        } => near(
            span,
            format!(
                "operator {op:?} on a {} and a {}",
                got_type_name(*lhs_type),
                got_type_name(*rhs_type)
            ),
        ),
        K::NumberNotBitwiseSafe { span } => near(span, "number is not bitwise-safe".into()),
        K::NumberOverflow { span } => near(span, "number overflow".into()),
        K::NumberNan { span } => near(span, "not a number (NaN)".into()),
        K::DivByZero { span } => near(span, "division by zero".into()),
        K::ShiftByNegative { span } => near(span, "shift by a negative number".into()),
        K::InvalidStdFuncArgType {
            func_name,
            arg_index,
            got_type,
            ..
        } => (
            None,
            format!(
                "std.{func_name}: argument {} has the wrong type ({})",
                arg_index + 1,
                got_type_name(*got_type)
            ),
        ),
        K::AssertFailed { span, message } => at(
            span,
            format!(
                "assertion failed{}",
                message
                    .as_ref()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            ),
        ),
        K::AssertEqualFailed { lhs, rhs } => (None, format!("assertion failed: {lhs} != {rhs}")),
        K::ExplicitError { span, message } => at(span, format!("error: {message}")),
        K::ImportFailed { span, path } => at(span, format!("cannot import {path:?}")),
        K::UnknownExtVar { name } => (
            None,
            format!("external variable {name:?} is not defined (set it in jsonnet.extVars)"),
        ),
        K::ManifestFunction => (None, "a function cannot be turned into JSON".into()),
        K::CompareNullInequality
        | K::CompareBooleanInequality
        | K::CompareObjectInequality
        | K::CompareFunctions
        | K::CompareDifferentTypesInequality { .. }
        | K::PrimitiveEqualsNonPrimitive { .. } => (None, "invalid comparison".into()),
        K::Other { span, message } => near(span, message.clone()),
    }
}

fn got_type_name(t: rsjsonnet_lang::program::EvalErrorValueType) -> String {
    format!("{t:?}").to_lowercase()
}
