mod fuse_util;
use fuse_util::*;
use kiln_ir::*;
#[test]
fn dump() {
    let mut g = Graph::new();
    let x = input(&mut g, "x", DType::F32, n_shape(&[10]));
    let y = softmax(&mut g, x);
    println!(
        "{}",
        kiln_passes::fuse::lower(&g, &[("y".into(), y)]).unwrap()
    );
    let mut g = Graph::new();
    let x = input(&mut g, "x", DType::F32, n_shape(&[16]));
    let w = param(&mut g, "ln.weight", DType::F32, &[16]);
    let b = param(&mut g, "ln.bias", DType::F32, &[16]);
    let y = layer_norm(&mut g, x, w, b, 1e-5);
    println!(
        "{}",
        kiln_passes::fuse::lower(&g, &[("y".into(), y)]).unwrap()
    );
    let mut g = Graph::new();
    let x = input(&mut g, "x", DType::F32, n_shape(&[4, 5]));
    let z = input(&mut g, "z", DType::F32, n_shape(&[2, 5]));
    let p = add(
        &mut g,
        Op::Pad {
            pads: vec![(0, 0), (1, 2), (2, 0)],
            value: F64Bits::new(-1.5),
        },
        &[x],
    );
    let e = un(&mut g, UnaryOp::Exp, x);
    let c = add(&mut g, Op::Concat { axis: 1 }, &[e, z, x]);
    let w = add(
        &mut g,
        Op::Window {
            op: WindowOp::Max,
            window: vec![2, 3],
            stride: vec![2, 1],
            padding: vec![(1, 1), (0, 1)],
        },
        &[x],
    );
    let r = add(
        &mut g,
        Op::Reshape(Shape(vec![Dim::sym("N") * Dim::known(20)])),
        &[x],
    );
    let pr = add(&mut g, Op::Permute(vec![2, 0, 1]), &[x]);
    let r2 = add(
        &mut g,
        Op::Reshape(Shape(vec![
            Dim::known(5),
            Dim::sym("N"),
            Dim::known(2),
            Dim::known(2),
        ])),
        &[pr],
    );
    println!(
        "{}",
        kiln_passes::fuse::lower(
            &g,
            &[
                ("p".into(), p),
                ("c".into(), c),
                ("w".into(), w),
                ("r".into(), r),
                ("r2".into(), r2)
            ]
        )
        .unwrap()
    );
    let mut g = Graph::new();
    let x = input(&mut g, "x", DType::F32, n_shape(&[12]));
    let w1 = param(&mut g, "fc1.weight", DType::F32, &[8, 12]);
    let b1 = param(&mut g, "fc1.bias", DType::F32, &[8]);
    let h = linear(&mut g, x, w1, b1);
    let h = relu(&mut g, h);
    let i = input(&mut g, "i", DType::I64, n_shape(&[3]));
    let gt = add(&mut g, Op::Gather { axis: 1 }, &[h, i]);
    let am = add(
        &mut g,
        Op::ArgReduce {
            op: ArgOp::ArgMax,
            axis: 1,
            keepdim: false,
        },
        &[h],
    );
    let key = add(
        &mut g,
        Op::Constant(Array::from_u32(&[2], vec![7, 42]).unwrap()),
        &[],
    );
    let rb = add(
        &mut g,
        Op::RandomBits {
            shape: Shape::known(&[3]),
        },
        &[key],
    );
    println!(
        "{}",
        kiln_passes::fuse::lower(
            &g,
            &[("h".into(), gt), ("am".into(), am), ("rb".into(), rb)]
        )
        .unwrap()
    );
}
