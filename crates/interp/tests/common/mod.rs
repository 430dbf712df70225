//! Shared helpers of the interpreter's integration tests: a minimal `.npy` reader and a
//! small graph builder over kiln-ir.

#![allow(dead_code)]

use kiln_ir::{
    Array, BinaryOp, DType, Dim, Graph, NodeId, Op, ReduceOp, Shape, SliceAxis, UnaryOp,
};
use std::path::{Path, PathBuf};

/// `fixtures/golden` of the repository.
pub fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/golden")
}

/// Reads a little-endian C-order `.npy` file (format 1.0-3.0) of a kiln dtype.
pub fn read_npy(path: &Path) -> Array {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(
        &bytes[..6],
        b"\x93NUMPY",
        "{}: not an npy file",
        path.display()
    );
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => panic!("unsupported npy version {v}"),
    };
    let header = std::str::from_utf8(&bytes[start..start + header_len]).expect("ascii header");
    assert!(header.contains("'fortran_order': False"), "{header}");
    let descr = header
        .split("'descr': '")
        .nth(1)
        .and_then(|s| s.split('\'').next())
        .expect("descr in header");
    let dtype = match descr {
        "<f4" => DType::F32,
        "<f8" => DType::F64,
        "<i4" => DType::I32,
        "<i8" => DType::I64,
        "<u4" => DType::U32,
        "|b1" => DType::Bool,
        other => panic!("{}: unsupported dtype {other}", path.display()),
    };
    let dims = header
        .split("'shape': (")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .expect("shape in header");
    let shape: Vec<usize> = dims
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().expect("dim"))
        .collect();
    Array::from_le_bytes(dtype, &shape, &bytes[start + header_len..])
        .expect("npy data matches its header")
}

/// A graph under construction with terse op helpers; every op must type-check.
#[derive(Default)]
pub struct G {
    pub g: Graph,
}

impl G {
    pub fn add(&mut self, op: Op, xs: &[NodeId]) -> NodeId {
        self.g
            .add(op, xs)
            .unwrap_or_else(|e| panic!("building graph: {e}"))
    }
    pub fn input(&mut self, name: &str, dtype: DType, shape: Shape) -> NodeId {
        self.add(
            Op::Input {
                name: name.into(),
                dtype,
                shape,
            },
            &[],
        )
    }
    pub fn param(&mut self, name: &str, a: &Array) -> NodeId {
        self.add(
            Op::Parameter {
                name: name.into(),
                dtype: a.dtype(),
                shape: Shape::known(a.shape()),
            },
            &[],
        )
    }
    pub fn constant(&mut self, a: Array) -> NodeId {
        self.add(Op::Constant(a), &[])
    }
    pub fn scalar_f32(&mut self, v: f32) -> NodeId {
        self.constant(Array::from_f32(&[], vec![v]).expect("scalar"))
    }
    pub fn bin(&mut self, op: BinaryOp, a: NodeId, b: NodeId) -> NodeId {
        self.add(Op::Binary(op), &[a, b])
    }
    pub fn un(&mut self, op: UnaryOp, a: NodeId) -> NodeId {
        self.add(Op::Unary(op), &[a])
    }
    pub fn shape(&self, x: NodeId) -> Shape {
        self.g.node(x).shape.clone()
    }
    pub fn reshape(&mut self, x: NodeId, s: Shape) -> NodeId {
        self.add(Op::Reshape(s), &[x])
    }
    pub fn transpose(&mut self, x: NodeId) -> NodeId {
        self.add(Op::Permute(vec![1, 0]), &[x])
    }
    pub fn relu(&mut self, x: NodeId) -> NodeId {
        let z = self.scalar_f32(0.0);
        self.bin(BinaryOp::Max, x, z)
    }
    /// `x @ w^T + b` (PyTorch `nn.Linear`).
    pub fn linear(&mut self, x: NodeId, w: NodeId, b: NodeId) -> NodeId {
        let wt = self.transpose(w);
        let y = self.add(Op::MatMul, &[x, wt]);
        self.bin(BinaryOp::Add, y, b)
    }
    /// Slices `lo..hi` of `axis`, keeping every other axis whole.
    pub fn narrow(&mut self, x: NodeId, axis: usize, lo: u64, hi: u64) -> NodeId {
        let rank = self.shape(x).rank();
        let axes = (0..rank)
            .map(|i| {
                if i == axis {
                    SliceAxis {
                        start: lo,
                        stop: hi,
                        step: 1,
                    }
                } else {
                    SliceAxis {
                        start: 0,
                        stop: u64::MAX,
                        step: 1,
                    }
                }
            })
            .collect();
        self.add(Op::Slice(axes), &[x])
    }
    pub fn sum(&mut self, x: NodeId, axes: &[usize]) -> NodeId {
        self.add(
            Op::Reduce {
                op: ReduceOp::Sum,
                axes: axes.to_vec(),
                keepdim: false,
            },
            &[x],
        )
    }
}

/// The symbolic batch dim `N`.
pub fn n() -> Dim {
    Dim::sym("N")
}

/// Asserts `|got - want| <= rtol*|want| + atol` elementwise.
pub fn assert_close(got: &Array, want: &Array, rtol: f64, atol: f64) {
    assert_eq!(got.shape(), want.shape());
    let (g, w) = (got.to_f64_vec(), want.to_f64_vec());
    let mut worst = 0.0f64;
    for (i, (a, b)) in g.iter().zip(&w).enumerate() {
        let err = (a - b).abs();
        assert!(
            err <= rtol * b.abs() + atol,
            "element {i}: got {a}, want {b}"
        );
        worst = worst.max(err);
    }
    eprintln!("max abs error {worst:e}");
}
