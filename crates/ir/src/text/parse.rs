//! The parser of the text form: [`parse`] (verified) and [`parse_unverified`].

use super::{F32_NAN_BITS, F64_NAN_BITS};
use crate::array::{Array, Data};
use crate::attr::{AttrError, AttrKind, AttrRole, AttrSpec, AttrValue};
use crate::attr::{F64Bits, RegionId, SliceAxis};
use crate::dim::Dim;
use crate::dtype::DType;
use crate::graph::{Graph, Loc, Node, NodeId, Region};
use crate::op::Op;
use crate::shape::Shape;
use crate::verify::{VerifyErrorKind, verify};
use std::collections::HashMap;
use std::fmt::Write as _;

/// The largest node id the parser accepts. Ids with gaps are recreated by adding placeholder
/// nodes, so the bound caps the memory a hostile text can make the parser allocate.
pub const MAX_NODE_ID: u32 = (1 << 20) - 1;

/// A syntax or verification error in graph text, at a 1-based line and column (in chars).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}:{column}: {message}")]
pub struct ParseError {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, counted in characters.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

/// Parses graph text and verifies the result (every node's stated type must be the one
/// inference gives, and the rest of [`verify`]'s rules must hold). A verifier error is
/// reported at the line of the node it concerns, naming the node.
pub fn parse(text: &str) -> Result<Graph, ParseError> {
    let (g, lines) = parse_lines(text)?;
    match verify(&g) {
        Ok(()) => Ok(g),
        Err(errors) => {
            let first = errors
                .iter()
                .min_by_key(|e| lines.get(&e.node).map_or(usize::MAX, |l| l.line))
                .cloned();
            let Some(first) = first else {
                return Ok(g);
            };
            let (line, column) = lines.get(&first.node).map_or((1, 1), |l| match first.kind {
                VerifyErrorKind::Type => (l.line, l.type_col),
                _ => (l.line, l.op_col),
            });
            let more = errors.len() - 1;
            let mut message = first.to_string();
            if more > 0 {
                let _ = write!(message, " (and {more} more verifier error{})", plural(more));
            }
            Err(ParseError {
                line,
                column,
                message,
            })
        }
    }
}

/// Parses graph text without verifying it: the stated types are taken as they are. Use it
/// to load a graph whose verifier errors you want to show (see
/// [`crate::verify::format_with_errors`]); use [`parse`] for anything you will compile.
pub fn parse_unverified(text: &str) -> Result<Graph, ParseError> {
    parse_lines(text).map(|(g, _)| g)
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// Where a node was defined in the text.
#[derive(Debug, Clone, Copy)]
struct LineInfo {
    line: usize,
    op_col: usize,
    type_col: usize,
}

/// One parsed node line, before the graph is built.
#[derive(Debug)]
struct NodeLine {
    id: NodeId,
    info: LineInfo,
    id_col: usize,
    operands: Vec<(NodeId, usize)>,
    node: Node,
}

fn parse_lines(text: &str) -> Result<(Graph, HashMap<NodeId, LineInfo>), ParseError> {
    let lines: Vec<&str> = text.lines().collect();
    let mut pos = 0;
    parse_block(&lines, &mut pos, 0)
}

/// A region header `rK (PARAMS) -> (RESULTS) {`.
struct RegionHeader {
    index: u32,
    col: usize,
    params: Vec<NodeId>,
    results: Vec<NodeId>,
}

/// Parses lines from `*pos` up to the `}` closing the block (at `depth` > 0) or the end
/// (at depth 0): node lines, then region blocks numbered `r0, r1, ...` in order.
fn parse_block(
    lines: &[&str],
    pos: &mut usize,
    depth: usize,
) -> Result<(Graph, HashMap<NodeId, LineInfo>), ParseError> {
    let opened = pos.saturating_sub(1) + 1;
    let mut nodes: Vec<NodeLine> = Vec::new();
    let mut regions: Vec<Region> = Vec::new();
    let mut closed = depth == 0;
    while let Some(line) = lines.get(*pos) {
        let number = *pos + 1;
        *pos += 1;
        let mut c = Cursor::new(line, number);
        if c.eat('}') {
            if depth == 0 || !c.at_end() {
                return c.err_at(c.col(), "unexpected `}`");
            }
            closed = true;
            break;
        }
        if let Some(h) = c.region_header()? {
            if h.index as usize != regions.len() {
                return c.err_at(
                    h.col,
                    format!("expected region r{}, found r{}", regions.len(), h.index),
                );
            }
            if depth >= crate::verify::MAX_REGION_DEPTH {
                return c.err_at(h.col, "regions nest too deep");
            }
            let (graph, _) = parse_block(lines, pos, depth + 1)?;
            regions.push(Region {
                graph,
                params: h.params,
                results: h.results,
            });
            continue;
        }
        if !regions.is_empty() && !c.at_end() {
            return c.err_at(c.col(), "node lines must come before the regions");
        }
        if let Some(n) = c.node_line()? {
            nodes.push(n);
        }
    }
    if !closed {
        return Err(ParseError {
            line: opened,
            column: 1,
            message: "region is not closed by `}`".into(),
        });
    }
    let (mut g, infos) = build(nodes)?;
    for r in regions {
        g.add_region(r);
    }
    Ok((g, infos))
}

/// The graph of parsed node lines, ids recreated exactly.
fn build(mut nodes: Vec<NodeLine>) -> Result<(Graph, HashMap<NodeId, LineInfo>), ParseError> {
    let mut infos: HashMap<NodeId, LineInfo> = HashMap::with_capacity(nodes.len());
    for n in &nodes {
        if let Some(prev) = infos.insert(n.id, n.info) {
            return Err(ParseError {
                line: n.info.line,
                column: n.id_col,
                message: format!("{} is already defined on line {}", n.id, prev.line),
            });
        }
    }
    for n in &nodes {
        for &(o, col) in &n.operands {
            if !infos.contains_key(&o) {
                return Err(ParseError {
                    line: n.info.line,
                    column: col,
                    message: format!("operand {o} of {} is not defined", n.id),
                });
            }
        }
    }
    let max_id = nodes.iter().map(|n| n.id.0).max();
    let mut g = Graph::new();
    let Some(max_id) = max_id else {
        return Ok((g, infos));
    };
    // Recreate the ids exactly: add nodes in id order with fillers in the gaps (a fresh
    // graph hands out ids 0, 1, 2, ...), then drop the fillers.
    nodes.sort_by_key(|n| n.id);
    let mut edges: Vec<(NodeId, Vec<NodeId>)> = Vec::with_capacity(nodes.len());
    let mut fillers = Vec::with_capacity(max_id as usize + 1 - nodes.len());
    for n in nodes {
        while g.len() < n.id.0 as usize {
            fillers.push(g.add_unchecked(placeholder(), &[]));
        }
        g.add_unchecked(n.node, &[]);
        edges.push((n.id, n.operands.into_iter().map(|(o, _)| o).collect()));
    }
    for f in fillers {
        g.remove(f);
    }
    for (user, operands) in edges {
        for (pos, o) in operands.into_iter().enumerate() {
            g.set_operand(user, pos as u32, o);
        }
    }
    Ok((g, infos))
}

fn placeholder() -> Node {
    Node {
        op: Op::MatMul,
        dtype: DType::F32,
        shape: Shape::scalar(),
        loc: None,
    }
}

/// An op whose attributes may come from the stated type, waiting for that type.
enum Draft {
    Done(Op),
    /// The op's name and its attribute values in schema order; `None` for a
    /// [`AttrRole::Result`] attribute left to the stated type.
    Attrs(&'static str, Vec<(AttrKind, Option<AttrValue>)>),
}

impl Draft {
    fn finish(self, dtype: DType, shape: &Shape) -> Result<Op, AttrError> {
        match self {
            Draft::Done(op) => Ok(op),
            Draft::Attrs(name, values) => {
                let values = values
                    .into_iter()
                    .filter_map(|(kind, v)| v.or_else(|| AttrValue::of_result(kind, dtype, shape)))
                    .collect();
                Op::from_attrs(name, values)
            }
        }
    }
}

type PResult<T> = Result<T, ParseError>;

/// A cursor over one line of text.
struct Cursor {
    chars: Vec<char>,
    pos: usize,
    line: usize,
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

fn node_id_of(word: &str) -> Option<NodeId> {
    let digits = word.strip_prefix('n')?;
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u32>().ok().map(NodeId)
}

impl Cursor {
    fn new(line: &str, number: usize) -> Cursor {
        Cursor {
            chars: line.chars().collect(),
            pos: 0,
            line: number,
        }
    }

    fn col(&self) -> usize {
        self.pos + 1
    }

    fn err_at<T>(&self, column: usize, message: impl Into<String>) -> PResult<T> {
        Err(ParseError {
            line: self.line,
            column,
            message: message.into(),
        })
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }

    /// After whitespace: true at the end of the line or at a comment.
    fn at_end(&mut self) -> bool {
        self.skip_ws();
        matches!(self.peek(), None | Some(';'))
    }

    /// A description of what is next, for error messages.
    fn found(&self) -> String {
        match self.peek() {
            None | Some(';') => "end of line".to_string(),
            Some(c) => format!("`{c}`"),
        }
    }

    fn eat(&mut self, c: char) -> bool {
        self.skip_ws();
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: char, what: &str) -> PResult<()> {
        if self.eat(c) {
            Ok(())
        } else {
            self.err_at(
                self.col(),
                format!("expected {what}, found {}", self.found()),
            )
        }
    }

    fn peek_ident(&mut self) -> Option<String> {
        self.skip_ws();
        if !self.peek().is_some_and(is_ident_start) {
            return None;
        }
        let end = (self.pos..self.chars.len())
            .find(|&i| !is_ident_char(self.chars[i]))
            .unwrap_or(self.chars.len());
        Some(self.chars[self.pos..end].iter().collect())
    }

    fn ident(&mut self, what: &str) -> PResult<(String, usize)> {
        let col = {
            self.skip_ws();
            self.col()
        };
        match self.peek_ident() {
            Some(s) => {
                self.pos += s.chars().count();
                Ok((s, col))
            }
            None => self.err_at(col, format!("expected {what}, found {}", self.found())),
        }
    }

    fn node_ref(&mut self, what: &str) -> PResult<(NodeId, usize)> {
        let (word, col) = self.ident(what)?;
        match node_id_of(&word) {
            Some(id) if id.0 <= MAX_NODE_ID => Ok((id, col)),
            Some(_) => self.err_at(
                col,
                format!("node id `{word}` is larger than n{MAX_NODE_ID}"),
            ),
            None => self.err_at(col, format!("expected {what} such as `n3`, found `{word}`")),
        }
    }

    /// `key=` with the fixed key name.
    fn key(&mut self, key: &str) -> PResult<()> {
        self.skip_ws();
        let col = self.col();
        match self.peek_ident() {
            Some(k) if k == key => {
                self.pos += k.chars().count();
                self.expect('=', &format!("`=` after `{key}`"))
            }
            _ => self.err_at(col, format!("expected `{key}=`, found {}", self.found())),
        }
    }

    /// True (and consumes `key=`) if the next attribute is the optional `key`.
    fn optional_key(&mut self, key: &str) -> PResult<bool> {
        if self.peek_ident().as_deref() == Some(key) {
            self.key(key)?;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    fn uint<T: std::str::FromStr>(&mut self, what: &str) -> PResult<T> {
        self.skip_ws();
        let col = self.col();
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
        }
        if start == self.pos {
            return self.err_at(col, format!("expected {what}, found {}", self.found()));
        }
        let s: String = self.chars[start..self.pos].iter().collect();
        match s.parse::<T>() {
            Ok(v) => Ok(v),
            Err(_) => self.err_at(col, format!("{what} `{s}` is out of range")),
        }
    }

    fn boolean(&mut self) -> PResult<bool> {
        let (w, col) = self.ident("`true` or `false`")?;
        match w.as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => self.err_at(col, format!("expected `true` or `false`, found `{w}`")),
        }
    }

    /// `[item, item, ...]`, possibly empty.
    fn list<T>(
        &mut self,
        what: &str,
        mut item: impl FnMut(&mut Cursor) -> PResult<T>,
    ) -> PResult<Vec<T>> {
        self.expect('[', &format!("`[` starting {what}"))?;
        let mut out = Vec::new();
        if self.eat(']') {
            return Ok(out);
        }
        loop {
            out.push(item(self)?);
            if self.eat(']') {
                return Ok(out);
            }
            self.expect(',', &format!("`,` or `]` in {what}"))?;
        }
    }

    fn uint_list<T: std::str::FromStr>(&mut self, what: &str) -> PResult<Vec<T>> {
        self.list(what, |c| c.uint("a non-negative integer"))
    }

    fn pair(&mut self) -> PResult<(u64, u64)> {
        self.expect('(', "`(` starting a `(before, after)` pair")?;
        let a = self.uint("a non-negative integer")?;
        self.expect(',', "`,` in a `(before, after)` pair")?;
        let b = self.uint("a non-negative integer")?;
        self.expect(')', "`)` closing a `(before, after)` pair")?;
        Ok((a, b))
    }

    fn pair_list(&mut self, what: &str) -> PResult<Vec<(u64, u64)>> {
        self.list(what, Cursor::pair)
    }

    fn two(&mut self, key: &str) -> PResult<[u64; 2]> {
        let col = {
            self.skip_ws();
            self.col()
        };
        let v: Vec<u64> = self.uint_list(&format!("`{key}`"))?;
        match <[u64; 2]>::try_from(v) {
            Ok(a) => Ok(a),
            Err(v) => self.err_at(
                col,
                format!("`{key}` needs 2 entries (h, w), got {}", v.len()),
            ),
        }
    }

    fn string(&mut self) -> PResult<String> {
        self.skip_ws();
        let col = self.col();
        if self.peek() != Some('"') {
            return self.err_at(
                col,
                format!("expected a quoted string, found {}", self.found()),
            );
        }
        self.pos += 1;
        let mut out = String::new();
        loop {
            let Some(c) = self.peek() else {
                return self.err_at(col, "unterminated string");
            };
            self.pos += 1;
            match c {
                '"' => return Ok(out),
                '\\' => {
                    let esc_col = self.col() - 1;
                    let Some(e) = self.peek() else {
                        return self.err_at(col, "unterminated string");
                    };
                    self.pos += 1;
                    match e {
                        '"' => out.push('"'),
                        '\\' => out.push('\\'),
                        'n' => out.push('\n'),
                        'r' => out.push('\r'),
                        't' => out.push('\t'),
                        '0' => out.push('\0'),
                        'u' => {
                            if self.peek() != Some('{') {
                                return self.err_at(esc_col, "expected `\\u{HEX}`");
                            }
                            self.pos += 1;
                            let start = self.pos;
                            while self.peek().is_some_and(|c| c.is_ascii_hexdigit()) {
                                self.pos += 1;
                            }
                            let hex: String = self.chars[start..self.pos].iter().collect();
                            if self.peek() != Some('}') {
                                return self.err_at(esc_col, "expected `\\u{HEX}`");
                            }
                            self.pos += 1;
                            match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                                Some(ch) => out.push(ch),
                                None => {
                                    return self.err_at(
                                        esc_col,
                                        format!("`\\u{{{hex}}}` is not a character"),
                                    );
                                }
                            }
                        }
                        other => {
                            return self.err_at(esc_col, format!("unknown escape `\\{other}`"));
                        }
                    }
                }
                c => out.push(c),
            }
        }
    }

    fn dtype(&mut self) -> PResult<DType> {
        let (w, col) = self.ident("a dtype")?;
        match w.parse::<DType>() {
            Ok(d) => Ok(d),
            Err(e) => self.err_at(col, e.to_string()),
        }
    }

    /// `[d0, d1, ...]` where each dim is a [`Dim`] expression.
    fn shape(&mut self) -> PResult<Shape> {
        self.expect('[', "`[` starting a shape")?;
        let mut dims = Vec::new();
        if self.eat(']') {
            return Ok(Shape(dims));
        }
        loop {
            self.skip_ws();
            let col = self.col();
            let start = self.pos;
            while self
                .peek()
                .is_some_and(|c| c != ',' && c != ']' && c != ';')
            {
                self.pos += 1;
            }
            let text: String = self.chars[start..self.pos].iter().collect();
            let text = text.trim();
            if text.is_empty() {
                return self.err_at(col, format!("expected a dimension, found {}", self.found()));
            }
            if !dim_in_range(text) {
                return self.err_at(col, format!("dimension `{text}` is out of range"));
            }
            match text.parse::<Dim>() {
                Ok(d) => dims.push(d),
                Err(_) => return self.err_at(col, format!("invalid dimension `{text}`")),
            }
            if self.eat(']') {
                return Ok(Shape(dims));
            }
            self.expect(',', "`,` or `]` in a shape")?;
        }
    }

    /// `DTYPE[SHAPE]`.
    fn ty(&mut self) -> PResult<(DType, Shape)> {
        let d = self.dtype()?;
        if self.peek() != Some('[') {
            return self.err_at(
                self.col(),
                format!("expected `[` right after the dtype, found {}", self.found()),
            );
        }
        Ok((d, self.shape()?))
    }

    /// A scalar literal: a number, `true`/`false`, `inf`, `nan` or `nan:0xBITS`.
    fn scalar_word(&mut self) -> PResult<(String, usize)> {
        self.skip_ws();
        let col = self.col();
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '-' | '_'))
        {
            self.pos += 1;
        }
        let mut w: String = self.chars[start..self.pos].iter().collect();
        if w.is_empty() {
            return self.err_at(col, format!("expected a number, found {}", self.found()));
        }
        if w == "nan" && self.peek() == Some(':') {
            self.pos += 1;
            w.push(':');
            while self.peek().is_some_and(|c| c.is_ascii_alphanumeric()) {
                w.push(self.chars[self.pos]);
                self.pos += 1;
            }
        }
        Ok((w, col))
    }

    fn f32_value(&mut self) -> PResult<f32> {
        let (w, col) = self.scalar_word()?;
        match parse_float(&w, F32_NAN_BITS as u64, 32) {
            Some(Float::Bits(b)) => Ok(f32::from_bits(b as u32)),
            Some(Float::Text) => match w.parse::<f32>() {
                Ok(v) => Ok(v),
                Err(_) => self.err_at(col, format!("invalid f32 literal `{w}`")),
            },
            None => self.err_at(col, format!("invalid f32 literal `{w}`")),
        }
    }

    fn f64_value(&mut self) -> PResult<f64> {
        let (w, col) = self.scalar_word()?;
        match parse_float(&w, F64_NAN_BITS, 64) {
            Some(Float::Bits(b)) => Ok(f64::from_bits(b)),
            Some(Float::Text) => match w.parse::<f64>() {
                Ok(v) => Ok(v),
                Err(_) => self.err_at(col, format!("invalid f64 literal `{w}`")),
            },
            None => self.err_at(col, format!("invalid f64 literal `{w}`")),
        }
    }

    fn int_value<T: std::str::FromStr>(&mut self, dtype: DType) -> PResult<T> {
        let (w, col) = self.scalar_word()?;
        let digits = w.strip_prefix('-').unwrap_or(&w);
        let ok = !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit());
        match w.parse::<T>() {
            Ok(v) if ok => Ok(v),
            _ => self.err_at(col, format!("invalid {dtype} literal `{w}`")),
        }
    }

    fn bool_value(&mut self) -> PResult<bool> {
        let (w, col) = self.scalar_word()?;
        match w.as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => self.err_at(
                col,
                format!("invalid bool literal `{w}` (expected `true` or `false`)"),
            ),
        }
    }

    fn data(&mut self, dtype: DType) -> PResult<Data> {
        const WHAT: &str = "the constant's elements";
        Ok(match dtype {
            DType::F32 => Data::F32(self.list(WHAT, Cursor::f32_value)?),
            DType::F64 => Data::F64(self.list(WHAT, Cursor::f64_value)?),
            DType::I32 => Data::I32(self.list(WHAT, |c| c.int_value(dtype))?),
            DType::I64 => Data::I64(self.list(WHAT, |c| c.int_value(dtype))?),
            DType::U32 => Data::U32(self.list(WHAT, |c| c.int_value(dtype))?),
            DType::Bool => Data::Bool(self.list(WHAT, Cursor::bool_value)?),
        })
    }

    fn constant(&mut self) -> PResult<Array> {
        self.skip_ws();
        let ty_col = self.col();
        let (dtype, shape) = self.ty()?;
        let Some(dims) = shape.as_known() else {
            return self.err_at(ty_col, format!("constant shape {shape} must be concrete"));
        };
        self.skip_ws();
        let data_col = self.col();
        let data = self.data(dtype)?;
        match Array::new(&dims, data) {
            Ok(a) => Ok(a),
            Err(e) => self.err_at(data_col, format!("constant {dtype}{shape}: {e}")),
        }
    }

    fn slice_axis(&mut self) -> PResult<SliceAxis> {
        self.skip_ws();
        let col = self.col();
        if self.peek() == Some(':') {
            self.pos += 1;
            self.skip_ws();
            if !matches!(self.peek(), Some(',' | ']')) {
                return self.err_at(
                    col,
                    "a slice entry is `start:stop`, `start:stop:step` or `:` for the whole axis",
                );
            }
            return Ok(SliceAxis {
                start: 0,
                stop: u64::MAX,
                step: 1,
            });
        }
        let start = self.uint("a slice start")?;
        self.expect(':', "`:` between slice start and stop")?;
        let stop = self.uint("a slice stop")?;
        let step = if self.eat(':') {
            self.uint("a slice step")?
        } else {
            1
        };
        Ok(SliceAxis { start, stop, step })
    }

    /// The attributes of op `name`, positioned after its operands, as its schema declares
    /// them ([`Op::attr_schema`]); a constant's type and elements.
    fn attrs(&mut self, name: &str, col: usize) -> PResult<Draft> {
        if name == "const" {
            return Ok(Draft::Done(Op::Constant(self.constant()?)));
        }
        let Some((name, schema)) = Op::attr_schema(name) else {
            return self.err_at(col, format!("unknown op `{name}`"));
        };
        let mut values = Vec::with_capacity(schema.len());
        for spec in schema {
            let value = match spec.role {
                AttrRole::Positional => Some(self.attr_value(spec)?),
                AttrRole::Keyed => {
                    self.key(spec.key)?;
                    Some(self.attr_value(spec)?)
                }
                AttrRole::Result => {
                    if self.optional_key(spec.key)? {
                        Some(self.attr_value(spec)?)
                    } else {
                        None
                    }
                }
            };
            values.push((spec.kind, value));
        }
        Ok(Draft::Attrs(name, values))
    }

    /// One attribute value, spelled by its kind.
    fn attr_value(&mut self, spec: &AttrSpec) -> PResult<AttrValue> {
        let key = spec.key;
        let what = format!("`{key}`");
        Ok(match spec.kind {
            AttrKind::Axis => AttrValue::Axis(self.uint("an axis")?),
            AttrKind::Count => AttrValue::Count(self.uint(key)?),
            AttrKind::Size => AttrValue::Size(self.uint("a non-negative integer")?),
            AttrKind::Factor => AttrValue::Factor(self.uint("a non-negative integer")?),
            AttrKind::Axes => AttrValue::Axes(self.uint_list(&what)?),
            AttrKind::Sizes => AttrValue::Sizes(self.uint_list(&what)?),
            AttrKind::Pairs => AttrValue::Pairs(self.pair_list(&what)?),
            AttrKind::Hw => AttrValue::Hw(self.two(key)?),
            AttrKind::Bool => AttrValue::Bool(self.boolean()?),
            AttrKind::Float => AttrValue::Float(F64Bits::new(self.f64_value()?)),
            AttrKind::DType => AttrValue::DType(self.dtype()?),
            AttrKind::Shape => AttrValue::Shape(self.shape()?),
            AttrKind::Type => {
                let (dtype, shape) = self.ty()?;
                AttrValue::Type(dtype, shape)
            }
            AttrKind::Dim => {
                self.skip_ws();
                let col = self.col();
                let dims = self.shape()?;
                let [dim] = &dims.0[..] else {
                    return self.err_at(col, format!("`{key}` takes one dimension, such as `[T]`"));
                };
                AttrValue::Dim(dim.clone())
            }
            AttrKind::Name => AttrValue::Name(self.string()?),
            AttrKind::Region => {
                let (word, col) = self.ident("a region id")?;
                match word.strip_prefix('r').and_then(|d| d.parse::<u32>().ok()) {
                    Some(k) if word[1..].chars().all(|ch| ch.is_ascii_digit()) => {
                        AttrValue::Region(RegionId(k))
                    }
                    _ => {
                        return self.err_at(
                            col,
                            format!("expected a region id such as `r0`, found `{word}`"),
                        );
                    }
                }
            }
            AttrKind::Slices => AttrValue::Slices(self.list(&what, Cursor::slice_axis)?),
        })
    }

    /// `@ FILE:LINE:COLUMN`, FILE plain or quoted.
    fn loc(&mut self) -> PResult<Loc> {
        self.skip_ws();
        let col = self.col();
        let (file, rest_col, rest) = if self.peek() == Some('"') {
            let file = self.string()?;
            let rest_col = self.col();
            let rest: String = self.chars[self.pos..]
                .iter()
                .take_while(|&&c| c != ';')
                .collect();
            self.pos += rest.chars().count();
            let Some(rest) = rest.trim_end().strip_prefix(':') else {
                return self.err_at(rest_col, "expected `:LINE:COLUMN` after the file name");
            };
            (file, rest_col + 1, rest.to_string())
        } else {
            let text: String = self.chars[self.pos..]
                .iter()
                .take_while(|&&c| c != ';')
                .collect();
            self.pos += text.chars().count();
            let text = text.trim_end();
            let mut parts = text.rsplitn(3, ':');
            let (c, l, f) = (parts.next(), parts.next(), parts.next());
            match (f, l, c) {
                (Some(f), Some(l), Some(c)) if !f.is_empty() => (
                    f.to_string(),
                    col + f.chars().count() + 1,
                    format!("{l}:{c}"),
                ),
                _ => return self.err_at(col, "expected a location `FILE:LINE:COLUMN` after `@`"),
            }
        };
        let bad = || format!("expected `LINE:COLUMN` numbers after `{file}:`");
        let Some((l, c)) = rest.split_once(':') else {
            return self.err_at(rest_col, bad());
        };
        let digits = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
        match (digits(l) && digits(c), l.parse::<u32>(), c.parse::<u32>()) {
            (true, Ok(line), Ok(column)) => Ok(Loc { file, line, column }),
            _ => self.err_at(rest_col, bad()),
        }
    }

    /// A region header line `rK (n0, n1) -> (n5) {`, or `None` (nothing consumed) if the
    /// line does not start with a region name.
    fn region_header(&mut self) -> PResult<Option<RegionHeader>> {
        let Some(word) = self.peek_ident() else {
            return Ok(None);
        };
        let Some(digits) = word.strip_prefix('r') else {
            return Ok(None);
        };
        if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
            return Ok(None);
        }
        let col = self.col();
        let Ok(index) = digits.parse::<u32>() else {
            return self.err_at(col, format!("region id `{word}` is too large"));
        };
        self.pos += word.chars().count();
        let ids = |c: &mut Cursor, what: &str| -> PResult<Vec<NodeId>> {
            c.expect('(', &format!("`(` before the {what}"))?;
            let mut out = Vec::new();
            if !c.eat(')') {
                loop {
                    out.push(c.node_ref(what)?.0);
                    if c.eat(')') {
                        break;
                    }
                    c.expect(',', "`,` or `)`")?;
                }
            }
            Ok(out)
        };
        let params = ids(self, "region parameters")?;
        self.expect('-', "`->` after the parameters")?;
        self.expect('>', "`->` after the parameters")?;
        let results = ids(self, "region results")?;
        self.expect('{', "`{` opening the region")?;
        if !self.at_end() {
            return self.err_at(
                self.col(),
                format!("unexpected {} after `{{`", self.found()),
            );
        }
        Ok(Some(RegionHeader {
            index,
            col,
            params,
            results,
        }))
    }

    /// One line: `None` for a blank or comment-only line.
    fn node_line(&mut self) -> PResult<Option<NodeLine>> {
        if self.at_end() {
            return Ok(None);
        }
        let (id, id_col) = self.node_ref("a node id")?;
        self.expect('=', &format!("`=` after {id}"))?;
        let (name, op_col) = self.ident("an op name")?;
        let mut operands = Vec::new();
        if self.peek_ident().as_deref().and_then(node_id_of).is_some() {
            loop {
                operands.push(self.node_ref("an operand")?);
                if !self.eat(',') {
                    break;
                }
            }
        }
        let draft = self.attrs(&name, op_col)?;
        if !self.eat(':') {
            return self.err_at(
                self.col(),
                format!("expected `:` and the node's type, found {}", self.found()),
            );
        }
        self.skip_ws();
        let type_col = self.col();
        let (dtype, shape) = self.ty()?;
        let loc = if self.eat('@') {
            Some(self.loc()?)
        } else {
            None
        };
        if !self.at_end() {
            return self.err_at(
                self.col(),
                format!("unexpected {} after the node", self.found()),
            );
        }
        let op = match draft.finish(dtype, &shape) {
            Ok(op) => op,
            Err(e) => return self.err_at(op_col, e.to_string()),
        };
        Ok(Some(NodeLine {
            id,
            info: LineInfo {
                line: self.line,
                op_col,
                type_col,
            },
            id_col,
            operands,
            node: Node {
                op,
                dtype,
                shape,
                loc,
            },
        }))
    }
}

/// The largest total exponent a term of a parsed dim may have.
const MAX_DIM_DEGREE: u32 = 256;

/// True if evaluating the dim expression the way [`Dim`]'s `FromStr` does keeps every
/// coefficient within `i64` and every term's degree within [`MAX_DIM_DEGREE`], so parsing
/// hostile text cannot overflow or spin. Malformed text passes (the dim parser rejects it).
fn dim_in_range(text: &str) -> bool {
    let s: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let body = s.strip_prefix('-').unwrap_or(&s);
    let mut total: u128 = 0;
    for term in body.split(['+', '-']) {
        let mut coefficient: u64 = 1;
        let mut degree: u32 = 0;
        for factor in term.split('*') {
            let (base, exp) = match factor.split_once('^') {
                Some((b, e)) => match e.parse::<u32>() {
                    Ok(e) => (b, e),
                    Err(_) => return true,
                },
                None => (factor, 1),
            };
            degree = degree.saturating_add(exp);
            if degree > MAX_DIM_DEGREE {
                return false;
            }
            if let Ok(b) = base.parse::<u64>() {
                for _ in 0..exp {
                    match coefficient.checked_mul(b) {
                        Some(c) if c <= i64::MAX as u64 => coefficient = c,
                        _ => return false,
                    }
                }
            }
        }
        total += u128::from(coefficient);
    }
    total <= i64::MAX as u128
}

/// How to read a float literal.
enum Float {
    /// These exact bits.
    Bits(u64),
    /// Decimal text for `str::parse`.
    Text,
}

/// Classifies a float literal for a float of `width` bits whose canonical NaN is `nan_bits`.
fn parse_float(w: &str, nan_bits: u64, width: u32) -> Option<Float> {
    let sign = 1u64 << (width - 1);
    let inf = if width == 32 {
        u64::from(f32::INFINITY.to_bits())
    } else {
        f64::INFINITY.to_bits()
    };
    match w {
        "nan" => return Some(Float::Bits(nan_bits)),
        "-nan" => return Some(Float::Bits(nan_bits | sign)),
        "inf" => return Some(Float::Bits(inf)),
        "-inf" => return Some(Float::Bits(inf | sign)),
        _ => {}
    }
    if let Some(hex) = w.strip_prefix("nan:0x") {
        let digits = (width / 4) as usize;
        if hex.len() != digits {
            return None;
        }
        let bits = u64::from_str_radix(hex, 16).ok()?;
        let exp_mask = inf;
        let is_nan = bits & exp_mask == exp_mask && bits & !(exp_mask | sign) != 0;
        return is_nan.then_some(Float::Bits(bits));
    }
    let body = w.strip_prefix(['-', '+']).unwrap_or(w);
    let decimal = body.starts_with(|c: char| c.is_ascii_digit())
        && body
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'));
    decimal.then_some(Float::Text)
}
