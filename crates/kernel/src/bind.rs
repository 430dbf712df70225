//! Binding a program's symbols to values: [`Program::bind`] checks every symbol's
//! precondition and evaluates every buffer's element count, once, for every engine (the
//! executor, the CPU and GPU backends).

use crate::ids::BufferId;
use crate::program::{BufferKind, Program};
use kiln_ir::{DType, Data, Dim, DimError};
use std::collections::HashMap;

/// Why a binding of the symbols, or the buffers supplied under it, do not fit a program.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BindError {
    /// A declared symbol has no binding.
    #[error("symbol `{0}` is not bound")]
    Unbound(String),
    /// A binding violates its symbol's precondition.
    #[error("binding {name} = {value} violates the precondition {rule}")]
    Precondition {
        /// Symbol.
        name: String,
        /// Bound value.
        value: u64,
        /// The violated rule (`N >= 1`, `T <= 512`).
        rule: String,
    },
    /// The buffer list does not match the program.
    #[error("the program has {expected} buffers, {got} were supplied")]
    BufferCount {
        /// Buffers in the program.
        expected: usize,
        /// Buffers supplied.
        got: usize,
    },
    /// A buffer (supplied, or a constant of the program) has the wrong dtype or length.
    #[error("{buffer} must be {dtype}[{len}], got {got_dtype}[{got_len}]")]
    BufferShape {
        /// The buffer.
        buffer: BufferId,
        /// Its dtype.
        dtype: DType,
        /// Its size under the bindings.
        len: usize,
        /// Supplied dtype.
        got_dtype: DType,
        /// Supplied length.
        got_len: usize,
    },
    /// A size does not fit 64 bits (or the address space) under the bindings.
    #[error("{0} overflows under the given bindings")]
    Overflow(String),
}

/// A program's symbols bound to values that satisfy their preconditions, with every
/// buffer's element count evaluated. Made by [`Program::bind`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binding {
    /// Symbol values by name (the program's symbols only).
    by_name: HashMap<String, u64>,
    /// Symbol values in the order of `program.symbols`.
    values: Vec<u64>,
    /// Symbol names in the order of `program.symbols`.
    names: Vec<String>,
    /// Dtype and element count of every buffer, `b<k>` at `k`.
    buffers: Vec<(DType, usize)>,
}

fn buffer_id(index: usize) -> BufferId {
    BufferId(u32::try_from(index).unwrap_or(u32::MAX))
}

impl Program {
    /// Binds the symbols to `bindings` (extra entries are ignored): every symbol except the
    /// schedule's induction symbols (bound to 0 here, set by the engine per iteration with
    /// [`Binding::set_symbol`]) must be
    /// bound within its range `min..=max`, and every buffer's element count must fit
    /// `usize` (a size that evaluates below zero is an empty buffer). A constant buffer's
    /// data must have the buffer's dtype and evaluated length.
    pub fn bind(&self, bindings: &HashMap<String, u64>) -> Result<Binding, BindError> {
        let mut by_name = HashMap::with_capacity(self.symbols.len());
        let mut values = Vec::with_capacity(self.symbols.len());
        let induction = self.induction_symbols();
        for s in &self.symbols {
            if induction.contains(&s.name.as_str()) {
                by_name.insert(s.name.clone(), 0);
                values.push(0);
                continue;
            }
            let value = *bindings
                .get(&s.name)
                .ok_or_else(|| BindError::Unbound(s.name.clone()))?;
            let violated = if value < s.min {
                Some(format!("{} >= {}", s.name, s.min))
            } else {
                s.max
                    .filter(|&max| value > max)
                    .map(|max| format!("{} <= {max}", s.name))
            };
            if let Some(rule) = violated {
                return Err(BindError::Precondition {
                    name: s.name.clone(),
                    value,
                    rule,
                });
            }
            by_name.insert(s.name.clone(), value);
            values.push(value);
        }
        let mut binding = Binding {
            by_name,
            values,
            names: self.symbols.iter().map(|s| s.name.clone()).collect(),
            buffers: Vec::with_capacity(self.buffers.len()),
        };
        for (i, b) in self.buffers.iter().enumerate() {
            let len = binding.len(&b.size)?;
            if let BufferKind::Constant(a) = &b.kind
                && (a.len() != len || a.dtype() != b.dtype)
            {
                return Err(BindError::BufferShape {
                    buffer: buffer_id(i),
                    dtype: b.dtype,
                    len,
                    got_dtype: a.dtype(),
                    got_len: a.len(),
                });
            }
            binding.buffers.push((b.dtype, len));
        }
        Ok(binding)
    }
}

impl Binding {
    /// Sets symbol `name` to `value` (an engine stepping a loop's induction symbol; the
    /// verifier keeps induction symbols out of buffer sizes, so the lengths stay valid).
    /// Returns false if the program has no such symbol.
    pub fn set_symbol(&mut self, name: &str, value: u64) -> bool {
        let Some(v) = self.by_name.get_mut(name) else {
            return false;
        };
        *v = value;
        if let Some(k) = self.names.iter().position(|n| n == name) {
            self.values[k] = value;
        }
        true
    }

    /// The symbol values in the order of the program's symbols.
    pub fn values(&self) -> &[u64] {
        &self.values
    }

    /// The symbol values by name.
    pub fn map(&self) -> &HashMap<String, u64> {
        &self.by_name
    }

    /// The element count of every buffer, `b<k>` at `k`.
    pub fn buffer_lens(&self) -> Vec<usize> {
        self.buffers.iter().map(|&(_, len)| len).collect()
    }

    /// The element count of buffer `b`, if the program has it.
    pub fn buffer_len(&self, b: BufferId) -> Option<usize> {
        self.buffers.get(b.index()).map(|&(_, len)| len)
    }

    /// The value of `d` under the binding (negative values are returned as they are).
    pub fn eval(&self, d: &Dim) -> Result<i64, BindError> {
        match d.eval(&self.by_name) {
            Ok(v) => i64::try_from(v).map_err(|_| BindError::Overflow(format!("`{d}`"))),
            Err(DimError::Negative { value, .. }) => Ok(value),
            Err(DimError::Unbound(s)) => Err(BindError::Unbound(s)),
            Err(DimError::Overflow(_)) => Err(BindError::Overflow(format!("`{d}`"))),
        }
    }

    /// The value of `d` as a count: negative values are 0.
    pub fn len(&self, d: &Dim) -> Result<usize, BindError> {
        let v = self.eval(d)?.max(0);
        usize::try_from(v).map_err(|_| BindError::Overflow(format!("`{d}`")))
    }

    /// Checks that a buffer supplied for `b` has the program buffer's dtype and length.
    pub fn check_buffer(&self, b: BufferId, dtype: DType, len: usize) -> Result<(), BindError> {
        let Some(&(want_dtype, want_len)) = self.buffers.get(b.index()) else {
            return Err(BindError::BufferCount {
                expected: self.buffers.len(),
                got: b.index() + 1,
            });
        };
        if dtype != want_dtype || len != want_len {
            return Err(BindError::BufferShape {
                buffer: b,
                dtype: want_dtype,
                len: want_len,
                got_dtype: dtype,
                got_len: len,
            });
        }
        Ok(())
    }

    /// Checks a whole buffer list (`buffers[k]` is `b<k>`): one per program buffer, each of
    /// the buffer's dtype and length.
    pub fn check_buffers(&self, buffers: &[Data]) -> Result<(), BindError> {
        if buffers.len() != self.buffers.len() {
            return Err(BindError::BufferCount {
                expected: self.buffers.len(),
                got: buffers.len(),
            });
        }
        for (i, data) in buffers.iter().enumerate() {
            self.check_buffer(buffer_id(i), data.dtype(), data.len())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse;

    fn program() -> Program {
        parse(
            "symbol N >= 2, <= 8
             b0 = input \"x\" f32[N*3]
             b1 = output \"y\" f32[N*3]
             k0 = loop [N*3] {
               v0 = load b0[i0]
               store b1[i0] = v0
             }",
        )
        .unwrap()
    }

    fn n(v: u64) -> HashMap<String, u64> {
        HashMap::from([("N".to_string(), v)])
    }

    #[test]
    fn binds_and_evaluates() {
        let b = program().bind(&n(4)).unwrap();
        assert_eq!(b.values(), &[4]);
        assert_eq!(b.buffer_lens(), vec![12, 12]);
        assert_eq!(b.buffer_len(BufferId(1)), Some(12));
        assert_eq!(b.eval(&Dim::sym("N")), Ok(4));
        assert_eq!(b.len(&(Dim::known(1) - Dim::sym("N"))), Ok(0));
        assert_eq!(b.eval(&Dim::sym("M")), Err(BindError::Unbound("M".into())));
        let good = [Data::F32(vec![0.0; 12]), Data::F32(vec![0.0; 12])];
        assert_eq!(b.check_buffers(&good), Ok(()));
        assert_eq!(
            b.check_buffers(&good[..1]),
            Err(BindError::BufferCount {
                expected: 2,
                got: 1
            })
        );
        assert_eq!(
            b.check_buffer(BufferId(0), DType::I32, 12)
                .unwrap_err()
                .to_string(),
            "b0 must be f32[12], got i32[12]"
        );
    }

    #[test]
    fn rejects_unbound_and_out_of_range_symbols() {
        let p = program();
        assert_eq!(p.bind(&HashMap::new()), Err(BindError::Unbound("N".into())));
        assert_eq!(
            p.bind(&n(1)).unwrap_err().to_string(),
            "binding N = 1 violates the precondition N >= 2"
        );
        assert_eq!(
            p.bind(&n(9)).unwrap_err().to_string(),
            "binding N = 9 violates the precondition N <= 8"
        );
        assert_eq!(
            p.bind(&n(u64::MAX / 2)).unwrap_err().to_string(),
            "binding N = 9223372036854775807 violates the precondition N <= 8"
        );
    }
}
