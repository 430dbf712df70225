//! Operator overloading: `a + b`, `a * 2.0`, `1.0 - a`, `-a` for tensors and references.

use crate::tensor::{Operand, Tensor};
use kiln_ir::BinaryOp;
use std::ops::{Add, Div, Mul, Neg, Rem, Sub};

macro_rules! tensor_ops {
    ($($tr:ident $method:ident $op:ident;)*) => {$(
        impl $tr<&Tensor> for &Tensor {
            type Output = Tensor;
            #[track_caller]
            fn $method(self, rhs: &Tensor) -> Tensor {
                self.binary(BinaryOp::$op, Operand::from(rhs))
            }
        }
        impl $tr<Tensor> for &Tensor {
            type Output = Tensor;
            #[track_caller]
            fn $method(self, rhs: Tensor) -> Tensor {
                self.binary(BinaryOp::$op, Operand::from(rhs))
            }
        }
        impl $tr<&Tensor> for Tensor {
            type Output = Tensor;
            #[track_caller]
            fn $method(self, rhs: &Tensor) -> Tensor {
                self.binary(BinaryOp::$op, Operand::from(rhs))
            }
        }
        impl $tr<Tensor> for Tensor {
            type Output = Tensor;
            #[track_caller]
            fn $method(self, rhs: Tensor) -> Tensor {
                self.binary(BinaryOp::$op, Operand::from(rhs))
            }
        }
        tensor_ops!(@scalar $tr $method $op f64);
    )*};
    (@scalar $tr:ident $method:ident $op:ident $t:ty) => {
        impl $tr<$t> for &Tensor {
            type Output = Tensor;
            #[track_caller]
            fn $method(self, rhs: $t) -> Tensor {
                self.binary(BinaryOp::$op, Operand::from(rhs))
            }
        }
        impl $tr<$t> for Tensor {
            type Output = Tensor;
            #[track_caller]
            fn $method(self, rhs: $t) -> Tensor {
                self.binary(BinaryOp::$op, Operand::from(rhs))
            }
        }
        impl $tr<&Tensor> for $t {
            type Output = Tensor;
            #[track_caller]
            fn $method(self, rhs: &Tensor) -> Tensor {
                rhs.binary_rev(BinaryOp::$op, f64::from(self))
            }
        }
        impl $tr<Tensor> for $t {
            type Output = Tensor;
            #[track_caller]
            fn $method(self, rhs: Tensor) -> Tensor {
                rhs.binary_rev(BinaryOp::$op, f64::from(self))
            }
        }
    };
}

tensor_ops! {
    Add add Add;
    Sub sub Sub;
    Mul mul Mul;
    Div div Div;
    Rem rem Rem;
}

impl Neg for &Tensor {
    type Output = Tensor;
    #[track_caller]
    fn neg(self) -> Tensor {
        Tensor::neg(self)
    }
}

impl Neg for Tensor {
    type Output = Tensor;
    #[track_caller]
    fn neg(self) -> Tensor {
        Tensor::neg(&self)
    }
}
