//! Planning-time coordinates: what each coordinate of a node is made of where a kernel
//! evaluates it (a loop axis of the kernel, a reduction variable, zero, or some other index
//! that may or may not vary over the reduction), enough to tell a staged reduction (its
//! result read once per point, before the reduction that reads it) from a nested one.
//!
//! The abstraction follows the coordinate arithmetic of `lower.rs` edge by edge and errs on
//! one side only: whenever the lowered coordinate (or a guard the lowering attaches to the
//! evaluation) may mention a reduction variable of the kernel, the abstract one says so.

use kiln_ir::{Dim, Graph, NodeId, Op};

/// One abstract coordinate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Ax {
    /// The constant 0 (a broadcast or size-1 axis).
    Zero,
    /// Axis `k` of the kernel's (unsqueezed) iteration domain.
    Loop(usize),
    /// Reduction variable `k` of the kernel.
    Red(usize),
    /// Any other index; `red` when it may depend on a reduction variable.
    Other {
        /// May depend on a reduction variable.
        red: bool,
    },
}

impl Ax {
    /// True if the coordinate may depend on a reduction variable.
    pub(crate) fn uses_red(&self) -> bool {
        match self {
            Ax::Zero | Ax::Loop(_) => false,
            Ax::Red(_) => true,
            Ax::Other { red } => *red,
        }
    }

    /// An opaque coordinate computed from `parts`.
    fn other<'a>(parts: impl IntoIterator<Item = &'a Ax>) -> Ax {
        Ax::Other {
            red: parts.into_iter().any(Ax::uses_red),
        }
    }
}

/// The abstract coordinates a node is evaluated at, with the guards in force there.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Coords {
    /// One per axis of the node.
    pub(crate) axes: Vec<Ax>,
    /// Some guard of an enclosing pad or concat may depend on a reduction variable (the
    /// lowering evaluates everything below under the guards of its consumers).
    pub(crate) guard_red: bool,
}

impl Coords {
    /// The coordinates of a node stored by a kernel over `domain`: each axis its own loop
    /// variable, size-1 axes zero.
    pub(crate) fn identity(domain: &[Dim]) -> Coords {
        Coords {
            axes: domain
                .iter()
                .enumerate()
                .map(|(k, d)| if d.is_one() { Ax::Zero } else { Ax::Loop(k) })
                .collect(),
            guard_red: false,
        }
    }

    /// True if the coordinates or the guards in force may depend on a reduction variable.
    pub(crate) fn uses_red(&self) -> bool {
        self.guard_red || self.axes.iter().any(Ax::uses_red)
    }

    /// True if every coordinate is known exactly (no [`Ax::Other`]), so two equal
    /// coordinate lists name the same element.
    pub(crate) fn exact(&self) -> bool {
        !self.axes.iter().any(|a| matches!(a, Ax::Other { .. }))
    }

    fn with(&self, axes: Vec<Ax>) -> Coords {
        Coords {
            axes,
            guard_red: self.guard_red,
        }
    }

    /// The coordinates of operand `pos` of `user`, when `self` are the user's; `None` for an
    /// op whose operands are never read inside another op's kernel region (contractions,
    /// argmax, scatter-add, control flow) or a rank that does not match.
    pub(crate) fn through(&self, graph: &Graph, user: NodeId, pos: u32) -> Option<Coords> {
        let out = &graph.node(user).shape.0;
        if self.axes.len() != out.len() {
            return None;
        }
        let operand = *graph.operands(user).get(pos as usize)?;
        let od = &graph.node(operand).shape.0;
        let c = &self.axes;
        let axes = match &graph.node(user).op {
            Op::Unary(_)
            | Op::Binary(_)
            | Op::Select
            | Op::Cast(_)
            | Op::StopGradient
            | Op::Expand(_) => bcast(c, out, od),
            Op::Gather { .. } if pos == 1 => bcast(c, out, od),
            Op::Gather { axis } => {
                let mut a = c.clone();
                *a.get_mut(*axis)? = Ax::other(c);
                a
            }
            Op::Reshape(_) => reshape(c, out, od),
            Op::Permute(perm) => {
                let mut a = vec![Ax::Zero; perm.len()];
                for (i, &p) in perm.iter().enumerate() {
                    *a.get_mut(p)? = *c.get(i)?;
                }
                a
            }
            Op::Slice(axes) => c
                .iter()
                .zip(axes)
                .map(|(x, s)| {
                    if s.start == 0 && s.step == 1 {
                        *x
                    } else {
                        Ax::other([x])
                    }
                })
                .collect(),
            Op::Flip { axes } => c
                .iter()
                .enumerate()
                .map(|(i, x)| {
                    if axes.contains(&i) {
                        Ax::other([x])
                    } else {
                        *x
                    }
                })
                .collect(),
            Op::Pad { pads, .. } => {
                let mut guard_red = self.guard_red;
                let a = c
                    .iter()
                    .zip(pads)
                    .map(|(x, &(lo, hi))| {
                        if lo == 0 && hi == 0 {
                            *x
                        } else {
                            guard_red |= x.uses_red();
                            Ax::other([x])
                        }
                    })
                    .collect();
                return Some(Coords { axes: a, guard_red });
            }
            Op::Concat { axis } => {
                let here = c.get(*axis)?;
                let mut a = c.clone();
                a[*axis] = Ax::other([here]);
                return Some(Coords {
                    axes: a,
                    guard_red: self.guard_red || here.uses_red(),
                });
            }
            Op::Reduce { axes, keepdim, .. } => {
                if axes.is_empty() {
                    c.clone()
                } else {
                    let mut red = 0;
                    let mut kept = 0;
                    let mut a = Vec::with_capacity(od.len());
                    for i in 0..od.len() {
                        if axes.contains(&i) {
                            a.push(Ax::Red(red));
                            red += 1;
                            if *keepdim {
                                kept += 1;
                            }
                        } else {
                            a.push(c.get(kept).copied().unwrap_or(Ax::Zero));
                            kept += 1;
                        }
                    }
                    a
                }
            }
            Op::Window {
                window, padding, ..
            } => {
                let lead = od.len().saturating_sub(window.len());
                let mut a: Vec<Ax> = c[..lead.min(c.len())].to_vec();
                a.resize(od.len(), Ax::Other { red: true });
                let padded = padding.iter().any(|&(lo, hi)| lo > 0 || hi > 0);
                return Some(Coords {
                    axes: a,
                    guard_red: self.guard_red || padded,
                });
            }
            Op::RandomBits { .. } => vec![Ax::Other { red: false }; od.len()],
            Op::Input { .. }
            | Op::Parameter { .. }
            | Op::Constant(_)
            | Op::Iota { .. }
            | Op::ArgReduce { .. }
            | Op::ScatterAdd { .. }
            | Op::MatMul
            | Op::Conv2d { .. }
            | Op::Cond { .. }
            | Op::Scan { .. }
            | Op::While { .. }
            | Op::Get { .. } => return None,
        };
        (axes.len() == od.len()).then(|| self.with(axes))
    }
}

/// NumPy broadcasting from a consumer shaped `out` to an operand shaped `dims`.
fn bcast(c: &[Ax], out: &[Dim], dims: &[Dim]) -> Vec<Ax> {
    let off = out.len().saturating_sub(dims.len());
    dims.iter()
        .enumerate()
        .map(|(j, d)| {
            if d.is_one() {
                Ax::Zero
            } else {
                c.get(off + j).copied().unwrap_or(Ax::Zero)
            }
        })
        .collect()
}

/// A reshape: the flat index of the output coordinates (size-1 axes contribute nothing),
/// split again over the operand's shape. Size-1 operand axes are zero. When the reshape
/// only adds or removes size-1 axes and no coordinate varies over the reduction, the other
/// axes keep their coordinates; otherwise each of them may mix every output coordinate
/// (divisions and remainders that do not simplify keep all their terms).
fn reshape(c: &[Ax], out: &[Dim], dims: &[Dim]) -> Vec<Ax> {
    let live: Vec<&Ax> = c
        .iter()
        .zip(out)
        .filter(|(_, d)| !d.is_one())
        .map(|(a, _)| a)
        .collect();
    let red = live.iter().any(|a| a.uses_red());
    let squeeze = out
        .iter()
        .filter(|d| !d.is_one())
        .eq(dims.iter().filter(|d| !d.is_one()));
    let mut next = live.into_iter();
    dims.iter()
        .map(|d| {
            if d.is_one() {
                Ax::Zero
            } else if squeeze && !red {
                next.next().copied().unwrap_or(Ax::Other { red })
            } else {
                Ax::Other { red }
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_ir::{DType, ReduceOp, Shape};

    fn node(g: &mut Graph, op: Op, operands: &[NodeId]) -> NodeId {
        g.add(op, operands).expect("valid node")
    }

    #[test]
    fn a_row_statistic_in_a_row_reduction_is_free_of_reduction_variables() {
        let mut g = Graph::new();
        let x = node(
            &mut g,
            Op::Input {
                name: "x".into(),
                dtype: DType::F32,
                shape: Shape(vec![Dim::sym("N"), Dim::known(8)]),
            },
            &[],
        );
        let red = |op| Op::Reduce {
            op,
            axes: vec![1],
            keepdim: true,
        };
        let m = node(&mut g, red(ReduceOp::Max), &[x]);
        let s = node(&mut g, Op::Binary(kiln_ir::BinaryOp::Sub), &[x, m]);
        let z = node(&mut g, red(ReduceOp::Sum), &[s]);
        let at_z = Coords::identity(&g.node(z).shape.0);
        assert_eq!(at_z.axes, [Ax::Loop(0), Ax::Zero]);
        let operand = at_z.through(&g, z, 0).expect("reduce edge");
        assert_eq!(operand.axes, [Ax::Loop(0), Ax::Red(0)]);
        assert!(operand.uses_red());
        let at_m = operand.through(&g, s, 1).expect("broadcast edge");
        assert_eq!(at_m.axes, [Ax::Loop(0), Ax::Zero]);
        assert!(!at_m.uses_red() && at_m.exact());
        // Read through a permute, the statistic moves with the reduction variable.
        let t = node(&mut g, Op::Permute(vec![1, 0]), &[s]);
        let back = Coords {
            axes: vec![Ax::Red(0), Ax::Loop(0)],
            guard_red: false,
        }
        .through(&g, t, 0)
        .expect("permute edge");
        assert_eq!(back.axes, [Ax::Loop(0), Ax::Red(0)]);
    }

    #[test]
    fn reshapes_and_pads_of_varying_coordinates_are_treated_as_varying() {
        let out = [Dim::sym("N"), Dim::known(1), Dim::known(4)];
        let dims = [Dim::sym("N"), Dim::known(4)];
        let c = [Ax::Loop(0), Ax::Zero, Ax::Loop(2)];
        assert_eq!(reshape(&c, &out, &dims), [Ax::Loop(0), Ax::Loop(2)]);
        let c = [Ax::Loop(0), Ax::Zero, Ax::Red(0)];
        assert_eq!(
            reshape(&c, &out, &dims),
            [Ax::Other { red: true }, Ax::Other { red: true }]
        );
        let merged = [Dim::sym("N"), Dim::known(2), Dim::known(2)];
        let c = [Ax::Loop(0), Ax::Loop(1)];
        assert_eq!(reshape(&c, &dims, &merged), [Ax::Other { red: false }; 3]);
    }
}
