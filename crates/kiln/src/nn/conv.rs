//! Convolution and pooling layers: `Conv2d`, `MaxPool2d`, `AvgPool2d` (NCHW).

use super::{Module, declare, init, join};
use crate::builder::Graph;
use crate::tensor::{ConvOpts, Tensor};
use std::panic::Location;

/// `torch.nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, dilation,
/// groups, bias)` over NCHW input. Parameters `{prefix}.weight`
/// `[out, in/groups, kh, kw]` and `{prefix}.bias` `[out]`, both
/// `U(-1/√fan_in, 1/√fan_in)` with `fan_in = in/groups · kh · kw`.
#[derive(Clone, Debug)]
pub struct Conv2d {
    weight: Tensor,
    bias: Option<Tensor>,
    opts: ConvOpts,
    out_channels: usize,
    params: Vec<(String, Tensor)>,
}

impl Conv2d {
    /// A convolution with a bias.
    #[track_caller]
    pub fn new(
        g: &Graph,
        prefix: &str,
        in_channels: usize,
        out_channels: usize,
        kernel: [usize; 2],
        opts: ConvOpts,
        seed: u64,
    ) -> Conv2d {
        Conv2d::build(
            g,
            prefix,
            [in_channels, out_channels],
            kernel,
            opts,
            true,
            seed,
        )
    }

    /// A convolution without a bias (`bias=False`).
    #[track_caller]
    pub fn no_bias(
        g: &Graph,
        prefix: &str,
        in_channels: usize,
        out_channels: usize,
        kernel: [usize; 2],
        opts: ConvOpts,
        seed: u64,
    ) -> Conv2d {
        Conv2d::build(
            g,
            prefix,
            [in_channels, out_channels],
            kernel,
            opts,
            false,
            seed,
        )
    }

    #[track_caller]
    fn build(
        g: &Graph,
        prefix: &str,
        [inp, out]: [usize; 2],
        kernel: [usize; 2],
        opts: ConvOpts,
        bias: bool,
        seed: u64,
    ) -> Conv2d {
        let groups = opts.groups as usize;
        let wname = join(prefix, "weight");
        if groups == 0 || inp % groups != 0 || out % groups != 0 {
            let p = g.fail(
                Location::caller(),
                "conv2d",
                format!(
                    "Conv2d `{prefix}`: in_channels {inp} and out_channels {out} must be \
                     divisible by groups {groups}"
                ),
            );
            return Conv2d {
                weight: p,
                bias: None,
                opts,
                out_channels: out,
                params: Vec::new(),
            };
        }
        let cin = inp / groups;
        let bound = init::fan_in_bound(cin * kernel[0] * kernel[1]);
        let weight = declare(
            g,
            &wname,
            init::uniform(seed, 0, &[out, cin, kernel[0], kernel[1]], bound),
        );
        let mut params = vec![(wname, weight.clone())];
        let bias = if bias {
            let bname = join(prefix, "bias");
            let b = declare(g, &bname, init::uniform(seed, 1, &[out], bound));
            params.push((bname, b.clone()));
            Some(b)
        } else {
            None
        };
        Conv2d {
            weight,
            bias,
            opts,
            out_channels: out,
            params,
        }
    }

    /// The weight `[out, in/groups, kh, kw]`.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// The bias `[out]`, if any.
    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }
}

impl Module for Conv2d {
    #[track_caller]
    fn forward(&self, x: &Tensor) -> Tensor {
        let y = x.conv2d(&self.weight, self.opts);
        match &self.bias {
            Some(b) => y + b.reshape([self.out_channels, 1, 1]),
            None => y,
        }
    }
    fn parameters(&self) -> Vec<(String, Tensor)> {
        self.params.clone()
    }
}

/// `torch.nn.MaxPool2d(kernel_size, stride=kernel_size, padding=0)` over the last two axes
/// (padding counts as `-inf`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaxPool2d {
    /// Window (h, w).
    pub kernel: [u64; 2],
    /// Stride (h, w).
    pub stride: [u64; 2],
    /// Padding (h, w) on both sides.
    pub padding: [u64; 2],
}

impl MaxPool2d {
    /// Pooling with stride equal to the window and no padding.
    pub fn new(kernel: [u64; 2]) -> MaxPool2d {
        MaxPool2d {
            kernel,
            stride: kernel,
            padding: [0, 0],
        }
    }

    /// With another stride.
    #[must_use]
    pub fn stride(mut self, stride: [u64; 2]) -> MaxPool2d {
        self.stride = stride;
        self
    }

    /// With padding.
    #[must_use]
    pub fn padding(mut self, padding: [u64; 2]) -> MaxPool2d {
        self.padding = padding;
        self
    }
}

impl Module for MaxPool2d {
    #[track_caller]
    fn forward(&self, x: &Tensor) -> Tensor {
        x.max_pool2d(self.kernel, self.stride, self.padding)
    }
    fn parameters(&self) -> Vec<(String, Tensor)> {
        Vec::new()
    }
}

/// `torch.nn.AvgPool2d(kernel_size, stride=kernel_size, padding=0)` over the last two axes
/// (zero padding counted in the average: `count_include_pad=True`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AvgPool2d {
    /// Window (h, w).
    pub kernel: [u64; 2],
    /// Stride (h, w).
    pub stride: [u64; 2],
    /// Padding (h, w) on both sides.
    pub padding: [u64; 2],
}

impl AvgPool2d {
    /// Pooling with stride equal to the window and no padding.
    pub fn new(kernel: [u64; 2]) -> AvgPool2d {
        AvgPool2d {
            kernel,
            stride: kernel,
            padding: [0, 0],
        }
    }

    /// With another stride.
    #[must_use]
    pub fn stride(mut self, stride: [u64; 2]) -> AvgPool2d {
        self.stride = stride;
        self
    }

    /// With padding.
    #[must_use]
    pub fn padding(mut self, padding: [u64; 2]) -> AvgPool2d {
        self.padding = padding;
        self
    }
}

impl Module for AvgPool2d {
    #[track_caller]
    fn forward(&self, x: &Tensor) -> Tensor {
        x.avg_pool2d(self.kernel, self.stride, self.padding)
    }
    fn parameters(&self) -> Vec<(String, Tensor)> {
        Vec::new()
    }
}
