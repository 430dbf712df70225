//! The parser for the text form written by the printer. It checks syntax and id order only;
//! everything semantic (types, bounds, buffer roles) is the verifier's job, so an ill-formed
//! program can be parsed and then reported in full.

use crate::debug::{CheckKind, CheckSite};
use crate::ids::{BufferId, KernelId, LoopVar, RedVar, ValueId, parse_prefixed};
use crate::index::{Guard, IndexExpr};
use crate::poly::Poly;
use crate::program::{
    Body, Buffer, BufferKind, Conv2dGeometry, Conv2dKernel, Expr, Kernel, Load, LoadMode,
    LoopKernel, MatmulKernel, Program, Store, Symbol,
};
use crate::scalar::Scalar;
use crate::schedule::{IfStep, LoopStep, MAX_SCHEDULE_DEPTH, Step, WhileStep};
use kiln_ir::{Array, BinaryOp, DType, Data, Dim, ReduceOp, UnaryOp};
use std::str::FromStr;

/// A syntax error with its position (1-based line and column).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct ParseError {
    /// Line of the offending token.
    pub line: usize,
    /// Column of the offending token.
    pub column: usize,
    /// What was expected or found.
    pub message: String,
}

/// The reductions in printed order.
const REDUCE_OPS: [ReduceOp; 4] = [ReduceOp::Sum, ReduceOp::Max, ReduceOp::Min, ReduceOp::Prod];

const PUNCT: [&str; 19] = [
    "<=", ">=", "&&", "<", ">", "=", "[", "]", "{", "}", "(", ")", ",", "+", "-", "*", "/", "%",
    "^",
];

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Ident(String),
    Num(String),
    Str(String),
    Punct(&'static str),
    Eof,
}

impl Tok {
    fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => format!("`{s}`"),
            Tok::Num(s) => format!("number `{s}`"),
            Tok::Str(s) => format!("string {}", crate::print::quote(s)),
            Tok::Punct(p) => format!("`{p}`"),
            Tok::Eof => "end of input".to_string(),
        }
    }
}

#[derive(Clone, Debug)]
struct Token {
    tok: Tok,
    line: usize,
    column: usize,
}

fn lex(text: &str) -> Result<Vec<Token>, ParseError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let (mut i, mut line, mut col) = (0usize, 1usize, 1usize);
    let err = |line, column, message: String| ParseError {
        line,
        column,
        message,
    };
    while i < chars.len() {
        let c = chars[i];
        let (tl, tc) = (line, col);
        let advance = |n: usize, i: &mut usize, col: &mut usize| {
            *i += n;
            *col += n;
        };
        if c == '\n' {
            i += 1;
            line += 1;
            col = 1;
        } else if c.is_whitespace() {
            advance(1, &mut i, &mut col);
        } else if c == ';' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            col += i - start;
            out.push(Token {
                tok: Tok::Ident(chars[start..i].iter().collect()),
                line: tl,
                column: tc,
            });
        } else if c.is_ascii_digit() {
            let start = i;
            if c == '0' && chars.get(i + 1) == Some(&'x') {
                i += 2;
                while i < chars.len() && chars[i].is_ascii_hexdigit() {
                    i += 1;
                }
            } else {
                while i < chars.len() && chars[i].is_ascii_digit() {
                    i += 1;
                }
                if chars.get(i) == Some(&'.') && chars.get(i + 1).is_some_and(char::is_ascii_digit)
                {
                    i += 1;
                    while i < chars.len() && chars[i].is_ascii_digit() {
                        i += 1;
                    }
                }
                if matches!(chars.get(i), Some('e' | 'E')) {
                    let digit_at = if matches!(chars.get(i + 1), Some('+' | '-')) {
                        i + 2
                    } else {
                        i + 1
                    };
                    if chars.get(digit_at).is_some_and(char::is_ascii_digit) {
                        i = digit_at;
                        while i < chars.len() && chars[i].is_ascii_digit() {
                            i += 1;
                        }
                    }
                }
            }
            col += i - start;
            out.push(Token {
                tok: Tok::Num(chars[start..i].iter().collect()),
                line: tl,
                column: tc,
            });
        } else if c == '"' {
            i += 1;
            col += 1;
            let mut s = String::new();
            loop {
                let Some(&ch) = chars.get(i) else {
                    return Err(err(tl, tc, "unterminated string".into()));
                };
                i += 1;
                col += 1;
                match ch {
                    '"' => break,
                    '\n' => return Err(err(tl, tc, "newline in string".into())),
                    '\\' => {
                        let Some(&e) = chars.get(i) else {
                            return Err(err(tl, tc, "unterminated string".into()));
                        };
                        i += 1;
                        col += 1;
                        match e {
                            '"' => s.push('"'),
                            '\\' => s.push('\\'),
                            'n' => s.push('\n'),
                            't' => s.push('\t'),
                            'r' => s.push('\r'),
                            'u' if chars.get(i) == Some(&'{') => {
                                let close = chars[i..]
                                    .iter()
                                    .position(|&c| c == '}')
                                    .ok_or_else(|| err(line, col, "bad \\u escape".into()))?;
                                let hex: String = chars[i + 1..i + close].iter().collect();
                                let ch = u32::from_str_radix(&hex, 16)
                                    .ok()
                                    .and_then(char::from_u32)
                                    .ok_or_else(|| {
                                        err(line, col, format!("bad \\u escape `{hex}`"))
                                    })?;
                                s.push(ch);
                                i += close + 1;
                                col += close + 1;
                            }
                            other => {
                                return Err(err(line, col, format!("unknown escape `\\{other}`")));
                            }
                        }
                    }
                    ch => s.push(ch),
                }
            }
            out.push(Token {
                tok: Tok::Str(s),
                line: tl,
                column: tc,
            });
        } else {
            let rest: String = chars[i..chars.len().min(i + 2)].iter().collect();
            let p = PUNCT
                .iter()
                .find(|p| rest.starts_with(**p))
                .ok_or_else(|| err(tl, tc, format!("unexpected character `{c}`")))?;
            advance(p.len(), &mut i, &mut col);
            out.push(Token {
                tok: Tok::Punct(p),
                line: tl,
                column: tc,
            });
        }
    }
    out.push(Token {
        tok: Tok::Eof,
        line,
        column: col,
    });
    Ok(out)
}

struct Parser {
    toks: Vec<Token>,
    pos: usize,
}

type PResult<T> = Result<T, ParseError>;

impl Parser {
    fn peek(&self) -> &Token {
        let last = self.toks.len().saturating_sub(1);
        &self.toks[self.pos.min(last)]
    }

    fn err_at<T>(&self, t: &Token, message: impl Into<String>) -> PResult<T> {
        Err(ParseError {
            line: t.line,
            column: t.column,
            message: message.into(),
        })
    }

    fn expected<T>(&self, what: &str) -> PResult<T> {
        let t = self.peek().clone();
        self.err_at(&t, format!("expected {what}, found {}", t.tok.describe()))
    }

    fn at_punct(&self, p: &str) -> bool {
        matches!(&self.peek().tok, Tok::Punct(q) if *q == p)
    }

    fn at_ident(&self, kw: &str) -> bool {
        matches!(&self.peek().tok, Tok::Ident(s) if s == kw)
    }

    fn eat_punct(&mut self, p: &str) -> bool {
        let hit = self.at_punct(p);
        if hit {
            self.pos += 1;
        }
        hit
    }

    fn eat_ident(&mut self, kw: &str) -> bool {
        let hit = self.at_ident(kw);
        if hit {
            self.pos += 1;
        }
        hit
    }

    fn punct(&mut self, p: &str) -> PResult<()> {
        if self.eat_punct(p) {
            Ok(())
        } else {
            self.expected(&format!("`{p}`"))
        }
    }

    fn keyword(&mut self, kw: &str) -> PResult<()> {
        if self.eat_ident(kw) {
            Ok(())
        } else {
            self.expected(&format!("`{kw}`"))
        }
    }

    fn ident(&mut self, what: &str) -> PResult<String> {
        match &self.peek().tok {
            Tok::Ident(s) => {
                let s = s.clone();
                self.pos += 1;
                Ok(s)
            }
            _ => self.expected(what),
        }
    }

    fn string(&mut self) -> PResult<String> {
        match &self.peek().tok {
            Tok::Str(s) => {
                let s = s.clone();
                self.pos += 1;
                Ok(s)
            }
            _ => self.expected("a quoted name"),
        }
    }

    fn uint(&mut self) -> PResult<u64> {
        let t = self.peek().clone();
        match &t.tok {
            Tok::Num(s) => {
                self.pos += 1;
                s.parse::<u64>()
                    .or_else(|_| self.err_at(&t, format!("`{s}` is not a non-negative integer")))
            }
            _ => self.expected("an integer"),
        }
    }

    fn prefixed(&mut self, prefix: char, what: &str) -> PResult<u32> {
        let t = self.peek().clone();
        if let Tok::Ident(s) = &t.tok
            && let Some(n) = parse_prefixed(s, prefix)
        {
            self.pos += 1;
            return Ok(n);
        }
        self.expected(what)
    }

    fn value_id(&mut self) -> PResult<ValueId> {
        self.prefixed('v', "a value id like `v0`").map(ValueId)
    }

    fn buffer_id(&mut self) -> PResult<BufferId> {
        self.prefixed('b', "a buffer id like `b0`").map(BufferId)
    }

    fn dtype(&mut self) -> PResult<DType> {
        let t = self.peek().clone();
        let name = self.ident("a dtype")?;
        DType::from_str(&name).or_else(|e| self.err_at(&t, e.to_string()))
    }

    // ---- dims ------------------------------------------------------------------------

    fn dim_factor(&mut self) -> PResult<Poly> {
        let t = self.peek().clone();
        let base = match &t.tok {
            Tok::Num(s) => {
                self.pos += 1;
                let n = s
                    .parse::<i128>()
                    .or_else(|_| self.err_at(&t, format!("`{s}` is not an integer")))?;
                Poly::constant(n)
            }
            Tok::Ident(s) => {
                self.pos += 1;
                Poly::sym(s)
            }
            _ => return self.expected("a dimension (integer or symbol)"),
        };
        if self.eat_punct("^") {
            let et = self.peek().clone();
            let e = self.uint()?;
            let mut out = Poly::constant(1);
            for _ in 0..e.min(65) {
                out = out
                    .mul(&base)
                    .or_else(|e| self.err_at(&et, e.to_string()))?;
            }
            return Ok(out);
        }
        Ok(base)
    }

    fn dim_poly(&mut self) -> PResult<Poly> {
        let t = self.peek().clone();
        let lift = |r: Result<Poly, crate::poly::PolyError>, p: &Parser| {
            r.or_else(|e| p.err_at(&t, e.to_string()))
        };
        let mut sign = if self.eat_punct("-") { -1 } else { 1 };
        let mut total = Poly::zero();
        loop {
            let mut term = Poly::constant(sign);
            loop {
                let f = self.dim_factor()?;
                term = lift(term.mul(&f), self)?;
                if !self.eat_punct("*") {
                    break;
                }
            }
            total = lift(total.add(&term), self)?;
            if self.eat_punct("+") {
                sign = 1;
            } else if self.eat_punct("-") {
                sign = -1;
            } else {
                return Ok(total);
            }
        }
    }

    fn dim(&mut self) -> PResult<Dim> {
        let t = self.peek().clone();
        let p = self.dim_poly()?;
        p.to_dim().or_else(|e| self.err_at(&t, e.to_string()))
    }

    fn dim_list(&mut self) -> PResult<Vec<Dim>> {
        self.punct("[")?;
        let mut out = Vec::new();
        if self.eat_punct("]") {
            return Ok(out);
        }
        loop {
            out.push(self.dim()?);
            if self.eat_punct("]") {
                return Ok(out);
            }
            self.punct(",")?;
        }
    }

    fn uint_list(&mut self) -> PResult<Vec<u64>> {
        self.punct("[")?;
        let mut out = Vec::new();
        if self.eat_punct("]") {
            return Ok(out);
        }
        loop {
            out.push(self.uint()?);
            if self.eat_punct("]") {
                return Ok(out);
            }
            self.punct(",")?;
        }
    }

    fn pair(&mut self) -> PResult<[u64; 2]> {
        let t = self.peek().clone();
        let list = self.uint_list()?;
        match list[..] {
            [a, b] => Ok([a, b]),
            _ => self.err_at(&t, format!("expected two sizes, found {}", list.len())),
        }
    }

    // ---- index expressions -----------------------------------------------------------

    fn index(&mut self) -> PResult<IndexExpr> {
        let mut e = self.index_term()?;
        loop {
            if self.eat_punct("+") {
                e = e + self.index_term()?;
            } else if self.eat_punct("-") {
                e = e - self.index_term()?;
            } else {
                return Ok(e);
            }
        }
    }

    fn index_term(&mut self) -> PResult<IndexExpr> {
        let mut e = self.index_atom()?;
        loop {
            if self.eat_punct("*") {
                e = e * self.index_atom()?;
            } else if self.eat_punct("/") {
                e = IndexExpr::Div(Box::new(e), self.dim_atom()?);
            } else if self.eat_punct("%") {
                e = IndexExpr::Mod(Box::new(e), self.dim_atom()?);
            } else {
                return Ok(e);
            }
        }
    }

    fn index_atom(&mut self) -> PResult<IndexExpr> {
        let t = self.peek().clone();
        match &t.tok {
            Tok::Ident(s) => {
                self.pos += 1;
                Ok(if let Some(k) = parse_prefixed(s, 'i') {
                    IndexExpr::Var(LoopVar(k))
                } else if let Some(k) = parse_prefixed(s, 'r') {
                    IndexExpr::Red(RedVar(k))
                } else if let Some(k) = parse_prefixed(s, 'v') {
                    IndexExpr::Value(ValueId(k))
                } else {
                    IndexExpr::Dim(Dim::sym(s))
                })
            }
            Tok::Num(_) => {
                let n = self.uint()?;
                if n > i64::MAX as u64 {
                    return self.err_at(&t, "integer too large");
                }
                Ok(IndexExpr::Dim(Dim::known(n)))
            }
            Tok::Punct("(") => {
                self.pos += 1;
                let e = self.index()?;
                self.punct(")")?;
                Ok(e)
            }
            Tok::Punct("{") => {
                self.pos += 1;
                let d = self.dim()?;
                self.punct("}")?;
                Ok(IndexExpr::Dim(d))
            }
            _ => self.expected("an index expression"),
        }
    }

    fn dim_atom(&mut self) -> PResult<Dim> {
        let t = self.peek().clone();
        match &t.tok {
            Tok::Num(_) => {
                let n = self.uint()?;
                if n > i64::MAX as u64 {
                    return self.err_at(&t, "integer too large");
                }
                Ok(Dim::known(n))
            }
            Tok::Ident(s) => {
                self.pos += 1;
                Ok(Dim::sym(s))
            }
            Tok::Punct("{") => {
                self.pos += 1;
                let d = self.dim()?;
                self.punct("}")?;
                Ok(d)
            }
            _ => self.expected("a divisor (integer, symbol or `{dim}`)"),
        }
    }

    // ---- scalars ---------------------------------------------------------------------

    fn scalar(&mut self, dtype: DType) -> PResult<Scalar> {
        let neg = self.eat_punct("-");
        let t = self.peek().clone();
        let bad =
            |p: &Parser, what: &str| p.err_at(&t, format!("{what} is not a valid {dtype} value"));
        match &t.tok {
            Tok::Ident(s) if s == "inf" && dtype.is_float() => {
                self.pos += 1;
                let v = if neg {
                    f64::NEG_INFINITY
                } else {
                    f64::INFINITY
                };
                Ok(Scalar::from_f64(dtype, v))
            }
            Tok::Ident(s) if s == "nan" && dtype.is_float() && !neg => {
                self.pos += 1;
                if !self.eat_punct("(") {
                    return Ok(Scalar::from_f64(dtype, f64::NAN));
                }
                let ht = self.peek().clone();
                let Tok::Num(h) = &ht.tok else {
                    return self.expected("a hexadecimal bit pattern");
                };
                self.pos += 1;
                let hex = h.strip_prefix("0x").unwrap_or(h);
                let v = match dtype {
                    DType::F32 => u32::from_str_radix(hex, 16)
                        .ok()
                        .map(|b| Scalar::F32(f32::from_bits(b)))
                        .filter(|s| s.to_f64().is_nan()),
                    _ => u64::from_str_radix(hex, 16)
                        .ok()
                        .map(|b| Scalar::F64(f64::from_bits(b)))
                        .filter(|s| s.to_f64().is_nan()),
                };
                let v = match v {
                    Some(v) => v,
                    None => {
                        return self
                            .err_at(&ht, format!("`{h}` is not a NaN bit pattern of {dtype}"));
                    }
                };
                self.punct(")")?;
                Ok(v)
            }
            Tok::Ident(s) if (s == "true" || s == "false") && dtype == DType::Bool && !neg => {
                self.pos += 1;
                Ok(Scalar::Bool(s == "true"))
            }
            Tok::Num(s) => {
                self.pos += 1;
                let text = if neg { format!("-{s}") } else { s.clone() };
                let parsed = match dtype {
                    DType::F32 => text.parse::<f32>().ok().map(Scalar::F32),
                    DType::F64 => text.parse::<f64>().ok().map(Scalar::F64),
                    DType::I32 => text.parse::<i32>().ok().map(Scalar::I32),
                    DType::I64 => text.parse::<i64>().ok().map(Scalar::I64),
                    DType::U32 => text.parse::<u32>().ok().map(Scalar::U32),
                    DType::Bool => None,
                };
                parsed.map_or_else(|| bad(self, &format!("`{text}`")), Ok)
            }
            other => {
                let d = other.describe();
                bad(self, &d)
            }
        }
    }

    fn typed_scalar(&mut self) -> PResult<Scalar> {
        let dtype = self.dtype()?;
        self.punct("(")?;
        let s = self.scalar(dtype)?;
        self.punct(")")?;
        Ok(s)
    }

    // ---- bodies ----------------------------------------------------------------------

    fn guard(&mut self) -> PResult<Guard> {
        let lo = self.index()?;
        self.punct("<=")?;
        let expr = self.index()?;
        self.punct("<")?;
        let hi = self.index()?;
        Ok(Guard { lo, expr, hi })
    }

    fn expr(&mut self) -> PResult<Expr> {
        let t = self.peek().clone();
        let name = self.ident("an expression")?;
        let unary = UnaryOp::ALL.into_iter().find(|u| u.name() == name);
        let binary = BinaryOp::ALL.into_iter().find(|b| b.name() == name);
        let reduce = REDUCE_OPS.into_iter().find(|r| r.name() == name);
        Ok(match name.as_str() {
            "load" => {
                let checked = self.eat_ident("checked");
                let buffer = self.buffer_id()?;
                self.punct("[")?;
                let index = self.index()?;
                self.punct("]")?;
                let mode = if checked {
                    LoadMode::Checked
                } else if self.eat_ident("if") {
                    let mut guards = vec![self.guard()?];
                    while self.eat_punct("&&") {
                        guards.push(self.guard()?);
                    }
                    self.keyword("else")?;
                    let fill = self.typed_scalar()?;
                    LoadMode::Masked { guards, fill }
                } else {
                    LoadMode::Plain
                };
                Expr::Load(Load {
                    buffer,
                    index,
                    mode,
                })
            }
            "acc" => Expr::Acc,
            "cast" | "index" => {
                self.punct("<")?;
                let dtype = self.dtype()?;
                self.punct(">")?;
                self.punct("(")?;
                let e = if name == "cast" {
                    Expr::Cast(dtype, self.value_id()?)
                } else {
                    Expr::Index {
                        dtype,
                        index: self.index()?,
                    }
                };
                self.punct(")")?;
                e
            }
            "select" => {
                self.punct("(")?;
                let c = self.value_id()?;
                self.punct(",")?;
                let a = self.value_id()?;
                self.punct(",")?;
                let b = self.value_id()?;
                self.punct(")")?;
                Expr::Select(c, a, b)
            }
            _ if DType::from_str(&name).is_ok() => {
                self.pos -= 1;
                Expr::Const(self.typed_scalar()?)
            }
            _ if unary.is_none() && binary.is_none() && reduce.is_none() => {
                return self.err_at(&t, format!("unknown operation `{name}`"));
            }
            _ => {
                self.punct("(")?;
                let a = self.value_id()?;
                let e = if let Some(op) = unary {
                    Expr::Unary(op, a)
                } else if let Some(op) = binary {
                    self.punct(",")?;
                    Expr::Binary(op, a, self.value_id()?)
                } else if let Some(op) = reduce {
                    self.punct(")")?;
                    self.keyword("init")?;
                    let init = self.typed_scalar()?;
                    return Ok(Expr::Reduce { op, value: a, init });
                } else {
                    return self.err_at(&t, format!("unknown operation `{name}`"));
                };
                self.punct(")")?;
                e
            }
        })
    }

    /// Statements up to and including the closing `}`.
    fn body(&mut self) -> PResult<Body> {
        self.punct("{")?;
        let mut body = Body::new();
        loop {
            let t = self.peek().clone();
            if self.eat_punct("}") {
                return Ok(body);
            }
            if self.eat_ident("store") {
                let buffer = self.buffer_id()?;
                self.punct("[")?;
                let index = self.index()?;
                self.punct("]")?;
                self.punct("=")?;
                let value = self.value_id()?;
                body.stores.push(Store {
                    buffer,
                    index,
                    value,
                });
            } else if self.eat_ident("yield") {
                if body.result.is_some() {
                    return self.err_at(&t, "a body yields at most once");
                }
                body.result = Some(self.value_id()?);
            } else if self.eat_ident("check") {
                body.checks.push(self.check_site()?);
            } else if let Tok::Ident(s) = &t.tok
                && let Some(n) = parse_prefixed(s, 'v')
            {
                if n as usize != body.values.len() {
                    return self.err_at(
                        &t,
                        format!(
                            "expected v{} (values are numbered in order), found {s}",
                            body.values.len()
                        ),
                    );
                }
                self.pos += 1;
                self.punct("=")?;
                let e = self.expr()?;
                body.values.push(e);
            } else {
                return self.expected("`vN = ...`, `store`, `yield`, `check` or `}`");
            }
        }
    }

    /// A debug-table entry after `check`: `index n15 "gather" at "src/main.rs" 23 16
    /// "an index is out of range"` (the `at` part optional).
    fn check_site(&mut self) -> PResult<CheckSite> {
        let t = self.peek().clone();
        let kind = self.ident("`index` or `divide`")?;
        let Some(kind) = CheckKind::from_name(&kind) else {
            return self.err_at(&t, format!("unknown check kind `{kind}`"));
        };
        let node = self.prefixed('n', "a node id like `n15`")?;
        let op = self.string()?;
        let loc = if self.eat_ident("at") {
            let file = self.string()?;
            let t = self.peek().clone();
            let line = u32::try_from(self.uint()?);
            let column = u32::try_from(self.uint()?);
            match (line, column) {
                (Ok(line), Ok(column)) => Some(kiln_ir::Loc { file, line, column }),
                _ => return self.err_at(&t, "a line or column does not fit 32 bits"),
            }
        } else {
            None
        };
        let message = self.string()?;
        Ok(CheckSite {
            kind,
            node,
            op,
            loc,
            message,
        })
    }

    fn block(&mut self, name: &str) -> PResult<Body> {
        self.keyword(name)?;
        self.body()
    }

    // ---- top level -------------------------------------------------------------------

    fn symbol(&mut self) -> PResult<Symbol> {
        let name = self.ident("a symbol name")?;
        self.punct(">=")?;
        let min = self.uint()?;
        let max = if self.eat_punct(",") {
            self.punct("<=")?;
            Some(self.uint()?)
        } else {
            None
        };
        Ok(Symbol { name, min, max })
    }

    fn buffer(&mut self) -> PResult<Buffer> {
        let t = self.peek().clone();
        let kw = self.ident("a buffer kind (input, output, state, scratch, const)")?;
        let named = |p: &mut Parser| p.string();
        let kind = match kw.as_str() {
            "input" => Some(BufferKind::Input(named(self)?)),
            "output" => Some(BufferKind::Output(named(self)?)),
            "state" => Some(BufferKind::State(named(self)?)),
            "scratch" => Some(BufferKind::Scratch),
            "const" => None,
            other => return self.err_at(&t, format!("unknown buffer kind `{other}`")),
        };
        let dtype = self.dtype()?;
        self.punct("[")?;
        let size = self.dim()?;
        self.punct("]")?;
        let kind = match kind {
            Some(k) => k,
            None => {
                let shape_at = self.peek().clone();
                let shape: Option<Vec<usize>> = if self.eat_ident("shape") {
                    let list = self.uint_list()?;
                    let shape = list
                        .into_iter()
                        .map(usize::try_from)
                        .collect::<Result<Vec<_>, _>>();
                    Some(shape.or_else(|_| self.err_at(&shape_at, "shape too large"))?)
                } else {
                    None
                };
                self.punct("[")?;
                let mut values = Vec::new();
                if !self.eat_punct("]") {
                    loop {
                        values.push(self.scalar(dtype)?);
                        if self.eat_punct("]") {
                            break;
                        }
                        self.punct(",")?;
                    }
                }
                let shape = shape.unwrap_or_else(|| vec![values.len()]);
                let array = array_of(dtype, &shape, &values)
                    .or_else(|e| self.err_at(&shape_at, e.to_string()))?;
                BufferKind::Constant(array)
            }
        };
        Ok(Buffer { dtype, size, kind })
    }

    fn kernel(&mut self) -> PResult<Kernel> {
        let t = self.peek().clone();
        let kw = self.ident("a kernel kind (loop, matmul, conv2d)")?;
        match kw.as_str() {
            "loop" => {
                let domain = self.dim_list()?;
                let reduce = if self.eat_ident("reduce") {
                    self.dim_list()?
                } else {
                    Vec::new()
                };
                let body = self.body()?;
                Ok(Kernel::Loop(LoopKernel {
                    domain,
                    reduce,
                    body,
                }))
            }
            "matmul" => {
                let batch = if self.eat_ident("batch") {
                    self.dim_list()?
                } else {
                    Vec::new()
                };
                self.keyword("m")?;
                let m = self.dim()?;
                self.keyword("k")?;
                let k = self.dim()?;
                self.keyword("n")?;
                let n = self.dim()?;
                self.punct("{")?;
                let a = self.block("a")?;
                let b = self.block("b")?;
                let epilogue = self.block("epilogue")?;
                self.punct("}")?;
                Ok(Kernel::Matmul(MatmulKernel {
                    batch,
                    m,
                    k,
                    n,
                    a,
                    b,
                    epilogue,
                }))
            }
            "conv2d" => {
                let mut sizes = Vec::new();
                for kw in ["n", "c", "h", "w", "o"] {
                    self.keyword(kw)?;
                    sizes.push(self.dim()?);
                }
                self.keyword("kernel")?;
                let kernel = self.pair()?;
                self.keyword("stride")?;
                let stride = self.pair()?;
                self.keyword("padding")?;
                let padding = self.pair()?;
                self.keyword("dilation")?;
                let dilation = self.pair()?;
                self.keyword("groups")?;
                let groups = self.uint()?;
                let [n, c, h, w, o]: [Dim; 5] = match sizes.try_into() {
                    Ok(a) => a,
                    Err(_) => return self.err_at(&t, "conv2d needs n, c, h, w, o"),
                };
                self.punct("{")?;
                let input = self.block("input")?;
                let weight = self.block("weight")?;
                let epilogue = self.block("epilogue")?;
                self.punct("}")?;
                Ok(Kernel::Conv2d(Conv2dKernel {
                    geometry: Conv2dGeometry {
                        n,
                        c,
                        h,
                        w,
                        o,
                        kernel,
                        stride,
                        padding,
                        dilation,
                        groups,
                    },
                    input,
                    weight,
                    epilogue,
                }))
            }
            other => self.err_at(&t, format!("unknown kernel kind `{other}`")),
        }
    }

    /// `{ step* }`; `depth` counts enclosing lists (bounded so that hostile text cannot
    /// overflow the stack).
    fn steps(&mut self, depth: usize) -> PResult<Vec<Step>> {
        if depth > MAX_SCHEDULE_DEPTH {
            return self.expected(&format!("at most {MAX_SCHEDULE_DEPTH} nested step lists"));
        }
        self.punct("{")?;
        let mut out = Vec::new();
        while !self.eat_punct("}") {
            let t = self.peek().clone();
            let step = match &t.tok {
                Tok::Ident(s) if parse_prefixed(s, 'k').is_some() => {
                    self.pos += 1;
                    Step::Kernel(KernelId(parse_prefixed(s, 'k').unwrap_or(u32::MAX)))
                }
                Tok::Ident(s) if s == "copy" => {
                    self.pos += 1;
                    let src = self.buffer_id()?;
                    self.punct("-")?;
                    self.punct(">")?;
                    let dst = self.buffer_id()?;
                    Step::Copy { src, dst }
                }
                Tok::Ident(s) if s == "loop" => {
                    self.pos += 1;
                    let reverse = self.eat_ident("reverse");
                    let var = self.ident("an induction symbol")?;
                    self.punct("<")?;
                    let trip = self.dim_atom()?;
                    let body = self.steps(depth + 1)?;
                    Step::Loop(LoopStep {
                        var,
                        trip,
                        reverse,
                        body,
                    })
                }
                Tok::Ident(s) if s == "while" => {
                    self.pos += 1;
                    let cond = self.steps(depth + 1)?;
                    self.keyword("test")?;
                    let pred = self.buffer_id()?;
                    self.keyword("do")?;
                    let body = self.steps(depth + 1)?;
                    Step::While(WhileStep { cond, pred, body })
                }
                Tok::Ident(s) if s == "if" => {
                    self.pos += 1;
                    let pred = self.buffer_id()?;
                    let then = self.steps(depth + 1)?;
                    self.keyword("else")?;
                    let other = self.steps(depth + 1)?;
                    Step::If(IfStep { pred, then, other })
                }
                _ => return self.expected("a step (`kN`, `copy`, `loop`, `while`, `if`) or `}`"),
            };
            out.push(step);
        }
        Ok(out)
    }

    fn program(&mut self) -> PResult<Program> {
        let mut p = Program::new();
        loop {
            let t = self.peek().clone();
            match &t.tok {
                Tok::Eof => return Ok(p),
                Tok::Ident(s) if s == "symbol" => {
                    self.pos += 1;
                    let s = self.symbol()?;
                    p.symbols.push(s);
                }
                Tok::Ident(s) if parse_prefixed(s, 'b').is_some() => {
                    let n = parse_prefixed(s, 'b').unwrap_or(u32::MAX);
                    if n as usize != p.buffers.len() {
                        return self.err_at(
                            &t,
                            format!(
                                "expected b{} (buffers are numbered in order), found {s}",
                                p.buffers.len()
                            ),
                        );
                    }
                    self.pos += 1;
                    self.punct("=")?;
                    let b = self.buffer()?;
                    p.buffers.push(b);
                }
                Tok::Ident(s) if parse_prefixed(s, 'k').is_some() => {
                    let n = parse_prefixed(s, 'k').unwrap_or(u32::MAX);
                    if n as usize != p.kernels.len() {
                        return self.err_at(
                            &t,
                            format!(
                                "expected k{} (kernels are numbered in order), found {s}",
                                p.kernels.len()
                            ),
                        );
                    }
                    self.pos += 1;
                    self.punct("=")?;
                    let k = self.kernel()?;
                    p.kernels.push(k);
                }
                Tok::Ident(s) if s == "schedule" && p.schedule.is_none() => {
                    self.pos += 1;
                    p.schedule = Some(self.steps(0)?);
                }
                _ => {
                    return self.expected(
                        "`symbol`, a buffer `bN = ...`, a kernel `kN = ...` or `schedule`",
                    );
                }
            }
        }
    }
}

fn array_of(
    dtype: DType,
    shape: &[usize],
    values: &[Scalar],
) -> Result<Array, kiln_ir::ArrayError> {
    fn collect<T>(values: &[Scalar], f: impl Fn(Scalar) -> Option<T>) -> Vec<T> {
        values.iter().filter_map(|&s| f(s)).collect()
    }
    let data = match dtype {
        DType::F32 => Data::F32(collect(values, |s| match s {
            Scalar::F32(v) => Some(v),
            _ => None,
        })),
        DType::F64 => Data::F64(collect(values, |s| match s {
            Scalar::F64(v) => Some(v),
            _ => None,
        })),
        DType::I32 => Data::I32(collect(values, |s| match s {
            Scalar::I32(v) => Some(v),
            _ => None,
        })),
        DType::I64 => Data::I64(collect(values, |s| match s {
            Scalar::I64(v) => Some(v),
            _ => None,
        })),
        DType::U32 => Data::U32(collect(values, |s| match s {
            Scalar::U32(v) => Some(v),
            _ => None,
        })),
        DType::Bool => Data::Bool(collect(values, |s| match s {
            Scalar::Bool(v) => Some(v),
            _ => None,
        })),
    };
    Array::new(shape, data)
}

/// Parses the text form of a program.
pub fn parse(text: &str) -> Result<Program, ParseError> {
    let toks = lex(text)?;
    Parser { toks, pos: 0 }.program()
}

impl FromStr for Program {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Program, ParseError> {
        parse(s)
    }
}
