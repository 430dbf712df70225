//! Every builder composite (activations, softmax family, normalisation, linear, pooling,
//! the LSTM cell, cross-entropy) differentiated through `kiln::vjp` / `kiln::jvp`, checked
//! against central finite differences in f64 over property-generated shapes.

use kiln::functional::lstm_cell;
use kiln::{Array, DType, Graph, Tensor};
use proptest::prelude::*;

/// xorshift64* for input values.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let r = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        lo + (hi - lo) * ((r >> 11) as f64 / (1u64 << 53) as f64)
    }
}

fn arr(shape: &[usize], v: Vec<f64>) -> Array {
    Array::from_f64(shape, v).unwrap_or_else(|e| panic!("{e}"))
}

fn f64s(a: &Array) -> Vec<f64> {
    a.as_f64().unwrap_or_else(|e| panic!("{e}")).to_vec()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-6 * (1.0 + a.abs().max(b.abs()))
}

/// Checks `build`'s VJP and JVP (through the builder API) against central differences along
/// a random direction. Inputs are f64 `x0, x1, ...` with values in `[lo, hi]`; when
/// `distinct` they are spaced apart and off zero (for kinks and max ties).
fn check(
    shapes: &[Vec<usize>],
    seed: u64,
    (lo, hi, distinct): (f64, f64, bool),
    build: impl Fn(&Graph, &[Tensor]) -> Tensor,
) {
    let g = Graph::new();
    let xs: Vec<Tensor> = shapes
        .iter()
        .enumerate()
        .map(|(i, s)| g.input(&format!("x{i}"), DType::F64, s.clone()))
        .collect();
    let y = build(&g, &xs);
    g.check().unwrap_or_else(|e| panic!("{e}"));
    let ys = y
        .shape()
        .as_known()
        .unwrap_or_else(|| panic!("known shape"));
    let ct = g.input("ct", DType::F64, ys.clone());
    let ts: Vec<Tensor> = shapes
        .iter()
        .enumerate()
        .map(|(i, s)| g.input(&format!("t{i}"), DType::F64, s.clone()))
        .collect();
    let xrefs: Vec<&Tensor> = xs.iter().collect();
    let grads = kiln::vjp(&[&y], &[&ct], &xrefs);
    let pairs: Vec<(&Tensor, &Tensor)> = xs.iter().zip(&ts).collect();
    let tout = kiln::jvp(&[&y], &pairs).remove(0);
    g.check().unwrap_or_else(|e| panic!("{e}"));

    let mut rng = Rng::new(seed);
    let total: usize = shapes.iter().map(|s| s.iter().product::<usize>()).sum();
    let mut pool: Vec<f64> = (0..total)
        .map(|i| lo + (hi - lo) * (i as f64 + 0.5) / total as f64 + 0.0137)
        .collect();
    let xv: Vec<Vec<f64>> = shapes
        .iter()
        .map(|s| {
            (0..s.iter().product::<usize>())
                .map(|_| {
                    if distinct {
                        let k = (rng.uniform(0.0, pool.len() as f64) as usize).min(pool.len() - 1);
                        pool.swap_remove(k)
                    } else {
                        rng.uniform(lo, hi)
                    }
                })
                .collect()
        })
        .collect();
    let vv: Vec<Vec<f64>> = shapes
        .iter()
        .map(|s| {
            (0..s.iter().product::<usize>())
                .map(|_| rng.uniform(-1.0, 1.0))
                .collect()
        })
        .collect();
    let uv: Vec<f64> = (0..ys.iter().product::<usize>())
        .map(|_| rng.uniform(-1.0, 1.0))
        .collect();
    let feed = |x: &[Vec<f64>]| -> Vec<(String, Array)> {
        let mut f: Vec<(String, Array)> = Vec::new();
        for (i, s) in shapes.iter().enumerate() {
            f.push((format!("x{i}"), arr(s, x[i].clone())));
            f.push((format!("t{i}"), arr(s, vv[i].clone())));
        }
        f.push(("ct".into(), arr(&ys, uv.clone())));
        f
    };
    let run = |x: &[Vec<f64>], outs: &[&Tensor]| -> Vec<Vec<f64>> {
        let f = feed(x);
        let refs: Vec<(&str, &Array)> = f.iter().map(|(n, a)| (n.as_str(), a)).collect();
        kiln::eval(outs, &refs)
            .unwrap_or_else(|e| panic!("{e}"))
            .iter()
            .map(f64s)
            .collect()
    };
    let mut outs = vec![&y, &tout];
    outs.extend(grads.iter());
    let vals = run(&xv, &outs);
    let h = 1e-6;
    let shifted = |s: f64| -> Vec<f64> {
        let x: Vec<Vec<f64>> = xv
            .iter()
            .zip(&vv)
            .map(|(x, v)| x.iter().zip(v).map(|(a, b)| a + s * h * b).collect())
            .collect();
        run(&x, &[&y]).remove(0)
    };
    let (p, m) = (shifted(1.0), shifted(-1.0));
    let fd: Vec<f64> = p.iter().zip(&m).map(|(a, b)| (a - b) / (2.0 * h)).collect();
    for (k, (a, b)) in vals[1].iter().zip(&fd).enumerate() {
        assert!(close(*a, *b), "jvp[{k}] = {a}, finite differences {b}");
    }
    let vjp_v: f64 = (0..shapes.len()).map(|i| dot(&vals[2 + i], &vv[i])).sum();
    assert!(
        close(vjp_v, dot(&uv, &fd)),
        "<vjp, v> = {vjp_v}, finite differences {}",
        dot(&uv, &fd)
    );
}

const ANY: (f64, f64, bool) = (-2.0, 2.0, false);
const DISTINCT: (f64, f64, bool) = (-2.0, 2.0, true);

fn shape(min_rank: usize, max_rank: usize) -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(1usize..=4, min_rank..=max_rank)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10))]

    #[test]
    fn activations(s in shape(0, 3), seed in any::<u64>()) {
        let acts: [fn(&Tensor) -> Tensor; 10] = [
            |x| x.relu(),
            |x| x.leaky_relu(0.1),
            |x| x.gelu(),
            |x| x.gelu_tanh(),
            |x| x.silu(),
            |x| (x * 12.0).softplus(),
            |x| x.clamp(-0.5, 0.7),
            |x| x.square(),
            |x| x.sigmoid() * x.tanh(),
            |x| x.exp().log() * x.abs().sqrt(),
        ];
        for a in acts {
            check(std::slice::from_ref(&s), seed, DISTINCT, |_, x| a(&x[0]));
        }
    }

    #[test]
    fn softmax_family_and_statistics(s in shape(1, 3), seed in any::<u64>(), keep in any::<bool>()) {
        let axis = (seed % s.len() as u64) as i64;
        check(std::slice::from_ref(&s), seed, ANY, |_, x| x[0].softmax(axis));
        check(std::slice::from_ref(&s), seed, ANY, |_, x| x[0].log_softmax(-1));
        check(std::slice::from_ref(&s), seed, ANY, |_, x| x[0].logsumexp(vec![axis], keep));
        check(std::slice::from_ref(&s), seed, ANY, |_, x| x[0].mean(axis, keep) + x[0].mean_all());
        if s[axis as usize] > 1 {
            check(std::slice::from_ref(&s), seed, ANY, |_, x| x[0].var(axis, 1.0, keep) + x[0].var(axis, 0.0, keep));
        }
    }

    #[test]
    fn layer_norm_and_linear(n in 1usize..4, d in 2usize..5, o in 1usize..4, seed in any::<u64>()) {
        check(&[vec![n, d], vec![d], vec![d]], seed, ANY, |_, x| x[0].layer_norm(1, Some(&x[1]), Some(&x[2]), 1e-5));
        check(&[vec![2, n, d]], seed, ANY, |_, x| x[0].layer_norm(2, None, None, 1e-5));
        check(&[vec![n, d], vec![o, d], vec![o]], seed, ANY, |_, x| x[0].linear(&x[1], Some(&x[2])).tanh());
        check(&[vec![d], vec![d, o]], seed, ANY, |_, x| x[0].matmul(&x[1]));
        check(&[vec![n, d], vec![d]], seed, ANY, |_, x| x[0].matmul(&x[1]));
    }

    #[test]
    fn reshaping_and_indexing(s in shape(2, 3), seed in any::<u64>()) {
        check(std::slice::from_ref(&s), seed, ANY, |_, x| x[0].flatten(0, -1).unsqueeze(0).squeeze(0));
        check(std::slice::from_ref(&s), seed, ANY, |_, x| x[0].transpose(0, -1).t() * 2.0);
        let n = s[0] as u64;
        check(std::slice::from_ref(&s), seed, ANY, move |g, x| {
            let idx = Array::from_i64(&[3], vec![0, (n - 1) as i64, 0]).unwrap_or_else(|e| panic!("{e}"));
            x[0].index_select(0, &g.constant(idx)).exp()
        });
        let (rows, cols) = (s[0], s[1]);
        check(std::slice::from_ref(&s), seed, ANY, move |g, x| {
            let labels = g.constant(Array::from_i64(&[rows], (0..rows as i64).map(|i| i % cols as i64).collect()).unwrap_or_else(|e| panic!("{e}")));
            let flat = x[0].flatten(1, -1);
            let w = labels.one_hot(flat.dim(1).and_then(|d| d.as_known()).unwrap_or(1), DType::F64);
            (flat * w).sum_all()
        });
    }

    #[test]
    fn pooling(n in 1usize..3, c in 1usize..3, h in 2usize..6, w in 2usize..6, seed in any::<u64>()) {
        check(&[vec![n, c, h, w]], seed, DISTINCT, |_, x| x[0].max_pool2d([2, 2], [2, 1], [1, 0]));
        check(&[vec![n, c, h, w]], seed, ANY, |_, x| x[0].avg_pool2d([2, 2], [1, 2], [0, 1]));
        // Tiling windows (stride = window, no padding) take the gather-free gradient path,
        // odd sizes leave floor-mode remainder rows and columns.
        check(&[vec![n, c, h, w]], seed, DISTINCT, |_, x| x[0].max_pool2d([2, 2], [2, 2], [0, 0]));
        check(&[vec![n, c, h, w]], seed, DISTINCT, |_, x| x[0].max_pool2d([1, 2], [1, 2], [0, 0]));
        check(&[vec![n, c, h, w]], seed, ANY, |_, x| x[0].avg_pool2d([2, 1], [2, 1], [0, 0]));
    }

    #[test]
    fn lstm_cell_and_cross_entropy(n in 1usize..3, i in 1usize..4, hs in 1usize..3, seed in any::<u64>()) {
        let four = 4 * hs;
        check(
            &[vec![n, i], vec![n, hs], vec![n, hs], vec![four, i], vec![four, hs], vec![four], vec![four]],
            seed,
            ANY,
            |_, x| {
                let (h, c) = lstm_cell(&x[0], &x[1], &x[2], &x[3], &x[4], Some(&x[5]), Some(&x[6]));
                h * 2.0 + c
            },
        );
        check(&[vec![n, 5]], seed, ANY, move |g, x| {
            let labels = g.constant(Array::from_i64(&[n, 1], (0..n as i64).map(|k| (3 * k + 1) % 5).collect()).unwrap_or_else(|e| panic!("{e}")));
            -x[0].log_softmax(-1).gather(1, &labels).mean_all()
        });
    }
}

/// Max-pool gradients go to the first maximal element of each window on ties, like PyTorch,
/// on both the tiling path and the general (overlapping, padded) path.
#[test]
fn max_pool_ties_route_the_gradient_to_the_first_maximum() {
    for (stride, padding) in [([2, 2], [0, 0]), ([2, 1], [0, 0]), ([2, 2], [1, 1])] {
        let g = Graph::new();
        let x = g.input("x", DType::F64, vec![1, 1, 4, 5]);
        let y = x.max_pool2d([2, 2], stride, padding);
        let gx = kiln::grad(&y.sum_all(), &[&x]).remove(0);
        g.check().unwrap_or_else(|e| panic!("{e}"));
        let zeros = arr(&[1, 1, 4, 5], vec![0.0; 20]);
        let got = kiln::eval(&[&gx, &y], &[("x", &zeros)]).unwrap_or_else(|e| panic!("{e}"));
        let (oh, ow) = match y.shape().as_known() {
            Some(s) => (s[2], s[3]),
            None => panic!("known shape"),
        };
        // Every window's first element inside the input (padding reads -inf, never a max).
        let mut want = vec![0.0; 20];
        for oy in 0..oh {
            for ox in 0..ow {
                let first = (0..2)
                    .flat_map(|ky| (0..2).map(move |kx| (ky, kx)))
                    .map(|(ky, kx)| {
                        (
                            (oy * stride[0] as usize + ky) as i64 - padding[0] as i64,
                            (ox * stride[1] as usize + kx) as i64 - padding[1] as i64,
                        )
                    })
                    .find(|&(iy, ix)| (0..4).contains(&iy) && (0..5).contains(&ix));
                if let Some((iy, ix)) = first {
                    want[iy as usize * 5 + ix as usize] += 1.0;
                }
            }
        }
        assert_eq!(f64s(&got[0]), want, "stride {stride:?} padding {padding:?}");
    }
}
