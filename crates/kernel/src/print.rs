//! The printer: the readable text form of a program (see the crate docs for the grammar).
//! [`crate::parse`] reads it back to an equal [`Program`].

use crate::ids::{BufferId, KernelId, ValueId};
use crate::program::{Body, BufferKind, Expr, Kernel, Load, LoadMode, Program, Store};
use crate::scalar::Scalar;
use crate::schedule::Step;
use kiln_ir::{Array, Data};
use std::fmt::{self, Write};

/// Quotes a name: `"fc1.weight"`, escaping `"`, `\` and control characters.
pub(crate) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn array_values(a: &Array) -> Vec<String> {
    fn each<T: Copy>(v: &[T], f: impl Fn(T) -> Scalar) -> Vec<String> {
        v.iter().map(|&x| f(x).value_text()).collect()
    }
    match a.data() {
        Data::F32(v) => each(v, Scalar::F32),
        Data::F64(v) => each(v, Scalar::F64),
        Data::I32(v) => each(v, Scalar::I32),
        Data::I64(v) => each(v, Scalar::I64),
        Data::U32(v) => each(v, Scalar::U32),
        Data::Bool(v) => each(v, Scalar::Bool),
    }
}

fn dims<T: fmt::Display>(list: &[T]) -> String {
    let parts: Vec<String> = list.iter().map(ToString::to_string).collect();
    format!("[{}]", parts.join(", "))
}

impl fmt::Display for Load {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.mode {
            LoadMode::Plain => write!(f, "load {}[{}]", self.buffer, self.index),
            LoadMode::Checked => write!(f, "load checked {}[{}]", self.buffer, self.index),
            LoadMode::Masked { guards, fill } => {
                write!(f, "load {}[{}] if ", self.buffer, self.index)?;
                for (i, g) in guards.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" && ")?;
                    }
                    write!(f, "{g}")?;
                }
                write!(f, " else {fill}")
            }
        }
    }
}

/// The right-hand side of a value definition: `add(v0, v1)`, `load b0[i0]`, `acc`, ...
impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Const(s) => write!(f, "{s}"),
            Expr::Index { dtype, index } => write!(f, "index<{dtype}>({index})"),
            Expr::Load(l) => write!(f, "{l}"),
            Expr::Unary(op, a) => write!(f, "{}({a})", op.name()),
            Expr::Binary(op, a, b) => write!(f, "{}({a}, {b})", op.name()),
            Expr::Select(c, a, b) => write!(f, "select({c}, {a}, {b})"),
            Expr::Cast(d, a) => write!(f, "cast<{d}>({a})"),
            Expr::Reduce { op, value, init } => write!(f, "{}({value}) init {init}", op.name()),
            Expr::Acc => f.write_str("acc"),
        }
    }
}

impl fmt::Display for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "store {}[{}] = {}", self.buffer, self.index, self.value)
    }
}

fn write_body(out: &mut String, body: &Body, indent: &str) {
    for (i, e) in body.values.iter().enumerate() {
        let v = ValueId(u32::try_from(i).unwrap_or(u32::MAX));
        let _ = writeln!(out, "{indent}{v} = {e}");
    }
    for s in &body.stores {
        let _ = writeln!(out, "{indent}{s}");
    }
    if let Some(r) = body.result {
        let _ = writeln!(out, "{indent}yield {r}");
    }
    for c in &body.checks {
        let _ = write!(
            out,
            "{indent}check {} n{} {}",
            c.kind.name(),
            c.node,
            quote(&c.op)
        );
        if let Some(l) = &c.loc {
            let _ = write!(out, " at {} {} {}", quote(&l.file), l.line, l.column);
        }
        let _ = writeln!(out, " {}", quote(&c.message));
    }
}

fn write_block(out: &mut String, name: &str, body: &Body) {
    let _ = writeln!(out, "  {name} {{");
    write_body(out, body, "    ");
    out.push_str("  }\n");
}

/// The header line of a kernel, without the opening brace: `loop [N, 10] reduce [10]`.
pub(crate) fn kernel_header(kernel: &Kernel) -> String {
    match kernel {
        Kernel::Loop(k) => {
            let mut s = format!("loop {}", dims(&k.domain));
            if !k.reduce.is_empty() {
                let _ = write!(s, " reduce {}", dims(&k.reduce));
            }
            s
        }
        Kernel::Matmul(k) => {
            let mut s = "matmul".to_string();
            if !k.batch.is_empty() {
                let _ = write!(s, " batch {}", dims(&k.batch));
            }
            let _ = write!(s, " m {} k {} n {}", k.m, k.k, k.n);
            s
        }
        Kernel::Conv2d(k) => {
            let g = &k.geometry;
            format!(
                "conv2d n {} c {} h {} w {} o {} kernel {} stride {} padding {} dilation {} groups {}",
                g.n,
                g.c,
                g.h,
                g.w,
                g.o,
                dims(&g.kernel),
                dims(&g.stride),
                dims(&g.padding),
                dims(&g.dilation),
                g.groups
            )
        }
    }
}

fn write_kernel(out: &mut String, id: KernelId, kernel: &Kernel) {
    let _ = writeln!(out, "{id} = {} {{", kernel_header(kernel));
    match kernel {
        Kernel::Loop(k) => write_body(out, &k.body, "  "),
        Kernel::Matmul(k) => {
            write_block(out, "a", &k.a);
            write_block(out, "b", &k.b);
            write_block(out, "epilogue", &k.epilogue);
        }
        Kernel::Conv2d(k) => {
            write_block(out, "input", &k.input);
            write_block(out, "weight", &k.weight);
            write_block(out, "epilogue", &k.epilogue);
        }
    }
    out.push_str("}\n");
}

/// Writes a step list, one step a line (nested lists indented).
fn write_steps(out: &mut String, steps: &[Step], indent: &str) {
    let deeper = format!("{indent}  ");
    for s in steps {
        match s {
            Step::Kernel(k) => {
                let _ = writeln!(out, "{indent}{k}");
            }
            Step::Copy { src, dst } => {
                let _ = writeln!(out, "{indent}copy {src} -> {dst}");
            }
            Step::Loop(l) => {
                let rev = if l.reverse { " reverse" } else { "" };
                let _ = writeln!(out, "{indent}loop{rev} {} < {{{}}} {{", l.var, l.trip);
                write_steps(out, &l.body, &deeper);
                let _ = writeln!(out, "{indent}}}");
            }
            Step::While(w) => {
                let _ = writeln!(out, "{indent}while {{");
                write_steps(out, &w.cond, &deeper);
                let _ = writeln!(out, "{indent}}} test {} do {{", w.pred);
                write_steps(out, &w.body, &deeper);
                let _ = writeln!(out, "{indent}}}");
            }
            Step::If(i) => {
                let _ = writeln!(out, "{indent}if {} {{", i.pred);
                write_steps(out, &i.then, &deeper);
                let _ = writeln!(out, "{indent}}} else {{");
                write_steps(out, &i.other, &deeper);
                let _ = writeln!(out, "{indent}}}");
            }
        }
    }
}

/// One buffer declaration without the id: `input "x" f32[N*784]`.
pub(crate) fn buffer_decl(program: &Program, id: BufferId) -> String {
    let Some(b) = program.buffer(id) else {
        return String::new();
    };
    let mut s = String::new();
    s.push_str(b.kind.keyword());
    match &b.kind {
        BufferKind::Input(n) | BufferKind::Output(n) | BufferKind::State(n) => {
            let _ = write!(s, " {}", quote(n));
        }
        BufferKind::Constant(_) | BufferKind::Scratch => {}
    }
    let _ = write!(s, " {}[{}]", b.dtype, b.size);
    if let BufferKind::Constant(a) = &b.kind {
        if a.shape() != [a.len()] {
            let _ = write!(s, " shape {}", dims(a.shape()));
        }
        let _ = write!(s, " [{}]", array_values(a).join(", "));
    }
    s
}

impl fmt::Display for Program {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        for s in &self.symbols {
            let _ = write!(out, "symbol {} >= {}", s.name, s.min);
            if let Some(max) = s.max {
                let _ = write!(out, ", <= {max}");
            }
            out.push('\n');
        }
        for i in 0..self.buffers.len() {
            let id = BufferId(u32::try_from(i).unwrap_or(u32::MAX));
            let _ = writeln!(out, "{id} = {}", buffer_decl(self, id));
        }
        for (i, k) in self.kernels.iter().enumerate() {
            write_kernel(&mut out, KernelId(u32::try_from(i).unwrap_or(u32::MAX)), k);
        }
        if let Some(steps) = &self.schedule {
            out.push_str("schedule {\n");
            write_steps(&mut out, steps, "  ");
            out.push_str("}\n");
        }
        f.write_str(&out)
    }
}
