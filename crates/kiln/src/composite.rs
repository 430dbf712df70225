//! Composite ops: each is one function over primitives, so autodiff and every backend get
//! it for free.

use crate::tensor::{Axes, Tensor};
use kiln_ir::{Dim, Shape, WindowOp};
use std::panic::Location;

impl Tensor {
    /// A scalar of this tensor's dtype broadcast to its shape.
    #[track_caller]
    pub fn full_like(&self, value: f64) -> Tensor {
        self.g.scalar(value, self.dtype()).expand(self.shape())
    }

    /// Zeros shaped like `self`.
    #[track_caller]
    pub fn zeros_like(&self) -> Tensor {
        self.full_like(0.0)
    }

    /// Ones shaped like `self`.
    #[track_caller]
    pub fn ones_like(&self) -> Tensor {
        self.full_like(1.0)
    }

    /// `max(x, 0)`; NaN stays NaN and the derivative at 0 is 0 (as PyTorch).
    #[track_caller]
    pub fn relu(&self) -> Tensor {
        self.le(0.0).where_(0.0, self)
    }

    /// `x` where positive, `slope * x` elsewhere.
    #[track_caller]
    pub fn leaky_relu(&self, slope: f64) -> Tensor {
        self.gt(0.0).where_(self, self * slope)
    }

    /// Exact GELU: `x * Φ(x) = 0.5 x (1 + erf(x / √2))`.
    #[track_caller]
    pub fn gelu(&self) -> Tensor {
        let inner = (self * std::f64::consts::FRAC_1_SQRT_2).erf() + 1.0;
        self * 0.5 * inner
    }

    /// GELU with the tanh approximation (`approximate='tanh'`).
    #[track_caller]
    pub fn gelu_tanh(&self) -> Tensor {
        let k = (2.0 / std::f64::consts::PI).sqrt();
        let cube = self * self * self;
        let inner = ((self + cube * 0.044715) * k).tanh() + 1.0;
        self * 0.5 * inner
    }

    /// SiLU (swish): `x * sigmoid(x)`.
    #[track_caller]
    pub fn silu(&self) -> Tensor {
        self * self.sigmoid()
    }

    /// `log(1 + e^x)`, computed stably as `max(x, 0) + log(1 + e^-|x|)`; PyTorch's
    /// `threshold=20` linear region is kept.
    #[track_caller]
    pub fn softplus(&self) -> Tensor {
        let stable = self.maximum(0.0) + ((-self.abs()).exp() + 1.0).log();
        self.gt(20.0).where_(self, stable)
    }

    /// `min(max(x, lo), hi)`.
    #[track_caller]
    pub fn clamp(&self, lo: f64, hi: f64) -> Tensor {
        self.maximum(lo).minimum(hi)
    }

    /// `x * x`.
    #[track_caller]
    pub fn square(&self) -> Tensor {
        self * self
    }

    /// Softmax along `axis`: `exp(x - max) * (1 / sum)`. Like PyTorch's CPU kernel it
    /// multiplies by the reciprocal of the row sum, computed once per row, instead of
    /// dividing every element.
    #[track_caller]
    pub fn softmax(&self, axis: i64) -> Tensor {
        let e = (self - self.max(axis, true).stop_gradient()).exp();
        &e * e.sum(axis, true).recip()
    }

    /// Log-softmax along `axis`.
    #[track_caller]
    pub fn log_softmax(&self, axis: i64) -> Tensor {
        let shifted = self - self.max(axis, true).stop_gradient();
        &shifted - shifted.exp().sum(axis, true).log()
    }

    /// `log(sum(exp(x)))` over `axes`, stabilised by the maximum.
    #[track_caller]
    pub fn logsumexp(&self, axes: impl Axes + Clone, keepdim: bool) -> Tensor {
        // Shift by the row maximum for stability, except where it is infinite: there the
        // shift is 0, so a row of -inf gives -inf and a row holding +inf gives +inf
        // (PyTorch and JAX do the same) instead of `inf - inf = NaN`.
        let m = self.max(axes.clone(), true).stop_gradient();
        let m = m.abs().eq(f64::INFINITY).where_(0.0, &m);
        let s = (self - &m).exp().sum(axes.clone(), true).log() + &m;
        if keepdim {
            s
        } else {
            let loc = Location::caller();
            let Some(ax) = self.axes_of(loc, "logsumexp", &axes) else {
                return Tensor::poisoned(&self.g);
            };
            let keep: Vec<Dim> = self
                .shape()
                .0
                .iter()
                .enumerate()
                .filter(|(i, _)| !ax.contains(i))
                .map(|(_, d)| d.clone())
                .collect();
            s.reshape(Shape(keep))
        }
    }

    /// Number of elements over `axes` as a scalar of this dtype (symbolic counts included).
    #[track_caller]
    fn count(&self, axes: &dyn Axes) -> Tensor {
        let loc = Location::caller();
        let Some(ax) = self.axes_of(loc, "mean", axes) else {
            return Tensor::poisoned(&self.g);
        };
        let s = self.shape();
        let n = Dim::product(ax.iter().map(|&a| &s.0[a]));
        match n.as_known() {
            Some(k) => self.g.scalar(k as f64, self.dtype()),
            None => {
                let sub: Vec<Dim> = ax.iter().map(|&a| s.0[a].clone()).collect();
                self.g.ones(Shape(sub), self.dtype()).sum_all()
            }
        }
    }

    /// Mean over `axes`.
    #[track_caller]
    pub fn mean(&self, axes: impl Axes, keepdim: bool) -> Tensor {
        self.sum(axes.axes(), keepdim) / self.count(&axes)
    }

    /// Mean of every element.
    #[track_caller]
    pub fn mean_all(&self) -> Tensor {
        let all: Vec<i64> = (0..self.rank() as i64).collect();
        self.mean(all, false)
    }

    /// Variance over `axes` with Bessel-style `correction` (1 = unbiased, PyTorch's default).
    #[track_caller]
    pub fn var(&self, axes: impl Axes, correction: f64, keepdim: bool) -> Tensor {
        let mu = self.mean(axes.axes(), true);
        let ss = (self - mu).square().sum(axes.axes(), keepdim);
        ss / (self.count(&axes) - correction)
    }

    /// Layer normalisation over the last `normalized_dims` axes with optional affine
    /// weight and bias (shaped like those axes), as `torch.nn.functional.layer_norm`.
    #[track_caller]
    pub fn layer_norm(
        &self,
        normalized_dims: usize,
        weight: Option<&Tensor>,
        bias: Option<&Tensor>,
        eps: f64,
    ) -> Tensor {
        let r = self.rank() as i64;
        let axes: Vec<i64> = (r - normalized_dims as i64..r).collect();
        let mu = self.mean(axes.clone(), true);
        let centered = self - mu;
        let var = centered.square().mean(axes, true);
        let mut y = centered * (var + eps).rsqrt();
        if let Some(w) = weight {
            y = y * w;
        }
        if let Some(b) = bias {
            y = y + b;
        }
        y
    }

    /// `x @ weight^T + bias` with `weight` shaped `[out, in]` (PyTorch's `Linear`).
    #[track_caller]
    pub fn linear(&self, weight: &Tensor, bias: Option<&Tensor>) -> Tensor {
        let y = self.matmul(&weight.t());
        match bias {
            Some(b) => y + b,
            None => y,
        }
    }

    /// Merges axes `start..=end` into one.
    #[track_caller]
    pub fn flatten(&self, start: i64, end: i64) -> Tensor {
        let loc = Location::caller();
        let (Some(a), Some(b)) = (
            self.axis(loc, "flatten", start),
            self.axis(loc, "flatten", end),
        ) else {
            return Tensor::poisoned(&self.g);
        };
        if a > b {
            return self.g.fail(
                loc,
                "flatten",
                format!(
                    "flatten: start axis {start} is after end axis {end} in {}",
                    self.shape()
                ),
            );
        }
        let s = self.shape();
        let mut dims: Vec<Dim> = s.0[..a].to_vec();
        dims.push(Dim::product(&s.0[a..=b]));
        dims.extend_from_slice(&s.0[b + 1..]);
        self.reshape(Shape(dims))
    }

    /// Removes axis `axis`, which must have size 1.
    #[track_caller]
    pub fn squeeze(&self, axis: i64) -> Tensor {
        let loc = Location::caller();
        let Some(a) = self.axis(loc, "squeeze", axis) else {
            return Tensor::poisoned(&self.g);
        };
        let s = self.shape();
        if !s.0[a].is_one() {
            return self.g.fail(
                loc,
                "squeeze",
                format!("squeeze: axis {axis} of {s} has size {}, not 1", s.0[a]),
            );
        }
        let mut dims = s.0.clone();
        dims.remove(a);
        self.reshape(Shape(dims))
    }

    /// Inserts a size-1 axis at `axis` (negative counts from the end of the result).
    #[track_caller]
    pub fn unsqueeze(&self, axis: i64) -> Tensor {
        let loc = Location::caller();
        if self.is_poisoned() {
            return self.clone();
        }
        let r = self.rank() as i64 + 1;
        let a = if axis < 0 { axis + r } else { axis };
        if !(0..r).contains(&a) {
            return self.g.fail(
                loc,
                "unsqueeze",
                format!(
                    "unsqueeze: axis {axis} is out of range for shape {}",
                    self.shape()
                ),
            );
        }
        let mut dims = self.shape().0;
        dims.insert(a as usize, Dim::known(1));
        self.reshape(Shape(dims))
    }

    /// Swaps two axes.
    #[track_caller]
    pub fn transpose(&self, a: i64, b: i64) -> Tensor {
        let loc = Location::caller();
        let (Some(a), Some(b)) = (
            self.axis(loc, "transpose", a),
            self.axis(loc, "transpose", b),
        ) else {
            return Tensor::poisoned(&self.g);
        };
        let mut perm: Vec<usize> = (0..self.rank()).collect();
        perm.swap(a, b);
        self.permute(perm)
    }

    /// Swaps the last two axes (the matrix transpose; a 1-D tensor is returned unchanged).
    #[track_caller]
    pub fn t(&self) -> Tensor {
        if self.rank() < 2 {
            self.clone()
        } else {
            self.transpose(-2, -1)
        }
    }

    /// One-hot encoding of integer class indices: `[...] -> [..., num_classes]` of `dtype`.
    #[track_caller]
    pub fn one_hot(&self, num_classes: u64, dtype: kiln_ir::DType) -> Tensor {
        let classes = self.g.arange(num_classes, self.dtype());
        self.unsqueeze(-1).eq(&classes).cast(dtype)
    }

    /// Selects entries `index` (1-D integer tensor) along `axis` (`torch.index_select`).
    #[track_caller]
    pub fn index_select(&self, axis: i64, index: &Tensor) -> Tensor {
        let loc = Location::caller();
        let Some(a) = self.axis(loc, "index_select", axis) else {
            return Tensor::poisoned(&self.g);
        };
        let s = self.shape();
        let mut view: Vec<Dim> = vec![Dim::known(1); s.rank()];
        view[a] = index.shape().0.first().cloned().unwrap_or(Dim::known(1));
        let mut full = s.0.clone();
        full[a] = view[a].clone();
        let idx = index.reshape(Shape(view)).expand(Shape(full));
        self.gather(axis, &idx)
    }

    /// 2-D max pooling over the last two axes (`-inf` padding, as PyTorch).
    #[track_caller]
    pub fn max_pool2d(&self, kernel: [u64; 2], stride: [u64; 2], padding: [u64; 2]) -> Tensor {
        let pads = [(padding[0], padding[0]), (padding[1], padding[1])];
        self.window(WindowOp::Max, &kernel, &stride, &pads)
    }

    /// 2-D average pooling over the last two axes (zero padding counted, PyTorch's default
    /// `count_include_pad=True`).
    #[track_caller]
    pub fn avg_pool2d(&self, kernel: [u64; 2], stride: [u64; 2], padding: [u64; 2]) -> Tensor {
        let pads = [(padding[0], padding[0]), (padding[1], padding[1])];
        self.window(WindowOp::Sum, &kernel, &stride, &pads) / (kernel[0] * kernel[1]) as f64
    }
}
