//! Reference models built with the kiln builder, parameters named exactly as PyTorch's
//! `state_dict` (so the golden weights in `fixtures/golden/models` load unchanged).
//!
//! Each builder declares its input `x` (f32) and its parameters on `g` and returns
//! `(x, logits)`; set the weights with `Graph::set_param` (the test package loads PyTorch's).
//! `batch` may be a number or a symbol (`g.sym("N")`).
//!
//! ```
//! use kiln::models::simple_nn;
//! use kiln::{Array, DType, Graph};
//!
//! let g = Graph::new();
//! let (x, logits) = simple_nn(&g, g.sym("N"));
//! assert_eq!(x.shape().to_string(), "[N, 784]");
//! assert_eq!(logits.shape().to_string(), "[N, 10]");
//! // No values yet: set every parameter (here zeros, with fc2.bias = 0..10).
//! for (name, shape) in [("fc1.weight", vec![128, 784]), ("fc1.bias", vec![128]),
//!                       ("fc2.weight", vec![10, 128])] {
//!     g.set_param(name, Array::zeros(DType::F32, &shape)?)?;
//! }
//! g.set_param("fc2.bias", Array::from_f32(&[10], (0..10).map(|i| i as f32).collect())?)?;
//! let batch = Array::zeros(DType::F32, &[3, 784])?;
//! let out = kiln::eval(&[&logits], &[("x", &batch)])?;
//! assert_eq!(out[0].shape(), &[3, 10]);
//! assert_eq!(out[0].as_f32()?[..10], [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::functional::lstm_cell;
use crate::nn::{Lstm, RnnConfig, TimeLoop};
use crate::{ConvOpts, DType, Dim, Graph, Tensor};

/// `Linear(in, out)` parameters `{prefix}.weight` `[out, in]` and `{prefix}.bias` `[out]`.
#[track_caller]
fn linear(g: &Graph, x: &Tensor, prefix: &str, inp: usize, out: usize) -> Tensor {
    let w = g.param(&format!("{prefix}.weight"), DType::F32, [out, inp]);
    let b = g.param(&format!("{prefix}.bias"), DType::F32, [out]);
    x.linear(&w, Some(&b))
}

/// SimpleNN: `Linear(784, 128) -> ReLU -> Linear(128, 10)`; `x` is `[batch, 784]`.
/// Parameters: `fc1.weight [128, 784]`, `fc1.bias`, `fc2.weight [10, 128]`, `fc2.bias`.
#[track_caller]
pub fn simple_nn(g: &Graph, batch: impl Into<Dim>) -> (Tensor, Tensor) {
    let x = g.input("x", DType::F32, (batch.into(), 784));
    let h = linear(g, &x, "fc1", 784, 128).relu();
    let logits = linear(g, &h, "fc2", 128, 10);
    (x, logits)
}

/// LSTMNN: `nn.LSTM(input_size=28, hidden_size=128, num_layers=2, batch_first=True)` over
/// `x` `[batch, 28, 28]` (28 time steps of 28 features) from zero state, then
/// `Linear(128, 10)` on the last time step's output. Parameters: `lstm.weight_ih_l{k}`
/// (`[512, 28]` for layer 0, `[512, 128]` for layer 1), `lstm.weight_hh_l{k}` `[512, 128]`,
/// `lstm.bias_ih_l{k}`, `lstm.bias_hh_l{k}` `[512]`, `fc.weight [10, 128]`, `fc.bias`.
/// Gate order i, f, g, o. The 28 steps are unrolled when the graph is built (every backend
/// runs it, `gpu` included); [`lstm_nn_with`] builds the same model as one scan per layer
/// over any, possibly symbolic, number of steps.
#[track_caller]
pub fn lstm_nn(g: &Graph, batch: impl Into<Dim>) -> (Tensor, Tensor) {
    const STEPS: i64 = 28;
    const FEAT: usize = 28;
    const HIDDEN: usize = 128;
    const LAYERS: usize = 2;
    let n: Dim = batch.into();
    let x = g.input("x", DType::F32, (n.clone(), STEPS as usize, FEAT));
    let layers: Vec<[Tensor; 4]> = (0..LAYERS)
        .map(|l| {
            let inp = if l == 0 { FEAT } else { HIDDEN };
            [
                g.param(
                    &format!("lstm.weight_ih_l{l}"),
                    DType::F32,
                    [4 * HIDDEN, inp],
                ),
                g.param(
                    &format!("lstm.weight_hh_l{l}"),
                    DType::F32,
                    [4 * HIDDEN, HIDDEN],
                ),
                g.param(&format!("lstm.bias_ih_l{l}"), DType::F32, [4 * HIDDEN]),
                g.param(&format!("lstm.bias_hh_l{l}"), DType::F32, [4 * HIDDEN]),
            ]
        })
        .collect();
    let zero = g.zeros((n, HIDDEN), DType::F32);
    let mut state: Vec<(Tensor, Tensor)> = vec![(zero.clone(), zero); LAYERS];
    for t in 0..STEPS {
        let mut inp = x.slice(1, t, t + 1, 1).squeeze(1);
        for (l, [w_ih, w_hh, b_ih, b_hh]) in layers.iter().enumerate() {
            let (h, c) = &state[l];
            let next = lstm_cell(&inp, h, c, w_ih, w_hh, Some(b_ih), Some(b_hh));
            inp = next.0.clone();
            state[l] = next;
        }
    }
    let last = &state[LAYERS - 1].0;
    let logits = linear(g, last, "fc", HIDDEN, 10);
    (x, logits)
}

/// LSTMNN over `steps` time steps with the layer library: [`Lstm`]
/// (`input_size=28, hidden_size=128, num_layers=2, batch_first`) run as `time_loop` says,
/// then `Linear(128, 10)` on the last layer's final hidden state. `x` is `[batch, steps,
/// 28]`; `steps` may be a symbol (`g.sym("T")`) with [`TimeLoop::Scan`], so one compiled
/// module runs every sequence length. Same parameters (names, shapes) as [`lstm_nn`]; at
/// 28 steps it computes the same function.
///
/// ```
/// use kiln::models::lstm_nn_with;
/// use kiln::nn::TimeLoop;
/// use kiln::Graph;
///
/// let g = Graph::new();
/// let (x, logits) = lstm_nn_with(&g, g.sym("N"), g.sym("T"), TimeLoop::Scan);
/// assert_eq!(x.shape().to_string(), "[N, T, 28]");
/// assert_eq!(logits.shape().to_string(), "[N, 10]");
/// ```
#[track_caller]
pub fn lstm_nn_with(
    g: &Graph,
    batch: impl Into<Dim>,
    steps: impl Into<Dim>,
    time_loop: TimeLoop,
) -> (Tensor, Tensor) {
    const FEAT: usize = 28;
    const HIDDEN: usize = 128;
    const LAYERS: usize = 2;
    let x = g.input("x", DType::F32, (batch.into(), steps.into(), FEAT));
    let cfg = RnnConfig::new(FEAT, HIDDEN)
        .num_layers(LAYERS)
        .batch_first(true)
        .time_loop(time_loop);
    let lstm = Lstm::new(g, "lstm", cfg, 0);
    let (_, (h_n, _)) = lstm.forward_with_state(&x, None);
    let last = h_n.slice(0, -1, i64::MAX, 1).squeeze(0);
    let logits = linear(g, &last, "fc", HIDDEN, 10);
    (x, logits)
}

/// LeNet-5 (the classic PyTorch tutorial layout): `conv1` 1->6 5x5 padding 2, ReLU, max-pool
/// 2, `conv2` 6->16 5x5, ReLU, max-pool 2, flatten, `fc1` 400->120, ReLU, `fc2` 120->84,
/// ReLU, `fc3` 84->10; `x` is `[batch, 1, 28, 28]`. Parameters: `conv1.weight [6, 1, 5, 5]`,
/// `conv1.bias`, `conv2.weight [16, 6, 5, 5]`, `conv2.bias`, `fc{1,2,3}.{weight,bias}`.
#[track_caller]
pub fn lenet(g: &Graph, batch: impl Into<Dim>) -> (Tensor, Tensor) {
    let x = g.input("x", DType::F32, (batch.into(), 1, 28, 28));
    let conv = |x: &Tensor, name: &str, cin: usize, cout: usize, pad: u64| {
        let w = g.param(&format!("{name}.weight"), DType::F32, [cout, cin, 5, 5]);
        let b = g.param(&format!("{name}.bias"), DType::F32, [cout]);
        let opts = ConvOpts {
            padding: [pad, pad],
            ..ConvOpts::default()
        };
        (x.conv2d(&w, opts) + b.reshape([cout, 1, 1]))
            .relu()
            .max_pool2d([2, 2], [2, 2], [0, 0])
    };
    let h = conv(&x, "conv1", 1, 6, 2);
    let h = conv(&h, "conv2", 6, 16, 0).flatten(1, -1);
    let h = linear(g, &h, "fc1", 400, 120).relu();
    let h = linear(g, &h, "fc2", 120, 84).relu();
    let logits = linear(g, &h, "fc3", 84, 10);
    (x, logits)
}
