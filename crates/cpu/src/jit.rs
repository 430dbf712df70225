//! The Cranelift JIT: a module per compilation batch targeting the host ISA at
//! `opt_level=speed`, the helper functions generated code may call (f64 transcendentals,
//! float `rem` and `pow`), and [`JitCode`], which owns executable memory until the last
//! compiled kernel that points into it is dropped.

use crate::codegen::error::CodegenError;
use crate::error::CpuError;
use cranelift_codegen::ir::{self, AbiParam, Signature, types};
use cranelift_codegen::isa::OwnedTargetIsa;
use cranelift_codegen::settings::{self, Configurable};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{FuncId, Linkage, Module};
use std::sync::Mutex;

/// An f64 helper that generated code calls through an imported symbol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Helper {
    /// `e^x`
    Exp,
    /// natural log
    Log,
    /// sine
    Sin,
    /// cosine
    Cos,
    /// hyperbolic tangent
    Tanh,
    /// arctangent
    Atan,
    /// `1/(1+e^-x)` without overflow
    Sigmoid,
    /// error function (libm's `erf`)
    Erf,
    /// `x^y`
    Pow,
    /// remainder with the divisor's sign
    Rem,
}

impl Helper {
    /// Every helper.
    pub(crate) const ALL: [Helper; 10] = [
        Helper::Exp,
        Helper::Log,
        Helper::Sin,
        Helper::Cos,
        Helper::Tanh,
        Helper::Atan,
        Helper::Sigmoid,
        Helper::Erf,
        Helper::Pow,
        Helper::Rem,
    ];

    fn symbol(self) -> &'static str {
        match self {
            Helper::Exp => "kiln_cpu_exp",
            Helper::Log => "kiln_cpu_log",
            Helper::Sin => "kiln_cpu_sin",
            Helper::Cos => "kiln_cpu_cos",
            Helper::Tanh => "kiln_cpu_tanh",
            Helper::Atan => "kiln_cpu_atan",
            Helper::Sigmoid => "kiln_cpu_sigmoid",
            Helper::Erf => "kiln_cpu_erf",
            Helper::Pow => "kiln_cpu_pow",
            Helper::Rem => "kiln_cpu_rem",
        }
    }

    /// Number of f64 arguments.
    pub(crate) fn arity(self) -> usize {
        match self {
            Helper::Pow | Helper::Rem => 2,
            Helper::Exp
            | Helper::Log
            | Helper::Sin
            | Helper::Cos
            | Helper::Tanh
            | Helper::Atan
            | Helper::Sigmoid
            | Helper::Erf => 1,
        }
    }

    fn address(self) -> *const u8 {
        match self {
            Helper::Exp => helpers::exp as *const u8,
            Helper::Log => helpers::log as *const u8,
            Helper::Sin => helpers::sin as *const u8,
            Helper::Cos => helpers::cos as *const u8,
            Helper::Tanh => helpers::tanh as *const u8,
            Helper::Atan => helpers::atan as *const u8,
            Helper::Sigmoid => helpers::sigmoid as *const u8,
            Helper::Erf => helpers::erf as *const u8,
            Helper::Pow => helpers::pow as *const u8,
            Helper::Rem => helpers::rem as *const u8,
        }
    }
}

/// The functions behind [`Helper`]; they compute exactly what the kernel executor computes.
pub(crate) mod helpers {
    unsafe extern "C" {
        /// libm's error function (correctly rounded to within an ulp in glibc).
        // SAFETY: `erf` from the platform's C math library (linked by std on every
        // supported target) takes and returns a plain f64, has no preconditions and no
        // side effects besides possibly setting errno.
        #[link_name = "erf"]
        safe fn libm_erf(x: f64) -> f64;
    }

    pub(crate) extern "C" fn exp(x: f64) -> f64 {
        x.exp()
    }
    pub(crate) extern "C" fn log(x: f64) -> f64 {
        x.ln()
    }
    pub(crate) extern "C" fn sin(x: f64) -> f64 {
        x.sin()
    }
    pub(crate) extern "C" fn cos(x: f64) -> f64 {
        x.cos()
    }
    pub(crate) extern "C" fn tanh(x: f64) -> f64 {
        x.tanh()
    }
    pub(crate) extern "C" fn atan(x: f64) -> f64 {
        x.atan()
    }
    pub(crate) extern "C" fn sigmoid(x: f64) -> f64 {
        if x >= 0.0 {
            1.0 / (1.0 + (-x).exp())
        } else {
            let e = x.exp();
            e / (1.0 + e)
        }
    }
    pub(crate) extern "C" fn erf(x: f64) -> f64 {
        libm_erf(x)
    }
    pub(crate) extern "C" fn pow(x: f64, y: f64) -> f64 {
        x.powf(y)
    }
    pub(crate) extern "C" fn rem(a: f64, b: f64) -> f64 {
        let r = a % b;
        if r != 0.0 && (r < 0.0) != (b < 0.0) {
            r + b
        } else {
            r
        }
    }

    pub(crate) extern "C" fn floorf(x: f32) -> f32 {
        x.floor()
    }
    pub(crate) extern "C" fn floor(x: f64) -> f64 {
        x.floor()
    }
    pub(crate) extern "C" fn ceilf(x: f32) -> f32 {
        x.ceil()
    }
    pub(crate) extern "C" fn ceil(x: f64) -> f64 {
        x.ceil()
    }
    pub(crate) extern "C" fn truncf(x: f32) -> f32 {
        x.trunc()
    }
    pub(crate) extern "C" fn trunc(x: f64) -> f64 {
        x.trunc()
    }
    pub(crate) extern "C" fn nearbyintf(x: f32) -> f32 {
        x.round_ties_even()
    }
    pub(crate) extern "C" fn nearbyint(x: f64) -> f64 {
        x.round_ties_even()
    }
    pub(crate) extern "C" fn fmaf(a: f32, b: f32, c: f32) -> f32 {
        a.mul_add(b, c)
    }
    pub(crate) extern "C" fn fma(a: f64, b: f64, c: f64) -> f64 {
        a.mul_add(b, c)
    }
}

/// The entry point of every compiled loop kernel:
/// `(buffer base pointers, symbol values, start, end, error flags)`. It runs the points whose
/// split-axis coordinate lies in `[start, end)` and ORs error bits into `*flags`.
pub(crate) type KernelFn = unsafe extern "C" fn(*const *mut u8, *const i64, i64, i64, *mut u32);

/// Builds the host ISA with the flags this backend uses.
fn host_isa() -> Result<OwnedTargetIsa, CpuError> {
    let mut flags = settings::builder();
    for (k, v) in [
        ("opt_level", "speed"),
        ("use_colocated_libcalls", "false"),
        ("is_pic", "false"),
        ("enable_verifier", "true"),
    ] {
        flags
            .set(k, v)
            .map_err(|e| CpuError::Host(format!("setting {k}={v}: {e}")))?;
    }
    let builder = cranelift_native::builder().map_err(|e| CpuError::Host(e.to_string()))?;
    builder
        .finish(settings::Flags::new(flags))
        .map_err(|e| CpuError::Host(e.to_string()))
}

/// A JIT module being filled with kernels, plus the imported helpers.
pub(crate) struct Jit {
    pub(crate) module: JITModule,
    pub(crate) helpers: Vec<(Helper, FuncId)>,
    /// Whether the ISA has fused multiply-add (polynomials use it when present).
    pub(crate) has_fma: bool,
    /// Whether the ISA has SSE4.1 (vector rounding).
    pub(crate) has_sse41: bool,
    next: u32,
}

impl std::fmt::Debug for Jit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jit")
            .field("has_fma", &self.has_fma)
            .finish()
    }
}

impl Jit {
    /// A fresh module for the host.
    pub(crate) fn new() -> Result<Jit, CpuError> {
        let isa = host_isa()?;
        let flag = |name: &str| {
            isa.isa_flags()
                .iter()
                .any(|v| v.name == name && v.as_bool() == Some(true))
        };
        let has_fma = flag("has_fma");
        let has_sse41 = flag("has_sse41") || !cfg!(target_arch = "x86_64");
        let mut builder = JITBuilder::with_isa(isa, cranelift_module::default_libcall_names());
        for h in Helper::ALL {
            builder.symbol(h.symbol(), h.address());
        }
        let libcalls: [(&str, *const u8); 10] = [
            ("floorf", helpers::floorf as *const u8),
            ("floor", helpers::floor as *const u8),
            ("ceilf", helpers::ceilf as *const u8),
            ("ceil", helpers::ceil as *const u8),
            ("truncf", helpers::truncf as *const u8),
            ("trunc", helpers::trunc as *const u8),
            ("nearbyintf", helpers::nearbyintf as *const u8),
            ("nearbyint", helpers::nearbyint as *const u8),
            ("fmaf", helpers::fmaf as *const u8),
            ("fma", helpers::fma as *const u8),
        ];
        for (name, ptr) in libcalls {
            builder.symbol(name, ptr);
        }
        let mut module = JITModule::new(builder);
        let mut helpers = Vec::new();
        for h in Helper::ALL {
            let mut sig = module.make_signature();
            for _ in 0..h.arity() {
                sig.params.push(AbiParam::new(types::F64));
            }
            sig.returns.push(AbiParam::new(types::F64));
            let id = module
                .declare_function(h.symbol(), Linkage::Import, &sig)
                .map_err(|e| CpuError::Host(e.to_string()))?;
            helpers.push((h, id));
        }
        Ok(Jit {
            module,
            helpers,
            has_fma,
            has_sse41,
            next: 0,
        })
    }

    /// The signature of a [`KernelFn`].
    pub(crate) fn kernel_signature(&self) -> Signature {
        let mut sig = self.module.make_signature();
        for _ in 0..5 {
            sig.params.push(AbiParam::new(types::I64));
        }
        sig
    }

    /// Declares a new local function with the kernel signature.
    pub(crate) fn declare_kernel(&mut self) -> Result<FuncId, CodegenError> {
        let name = format!("kernel{}", self.next);
        self.next += 1;
        let sig = self.kernel_signature();
        self.module
            .declare_function(&name, Linkage::Local, &sig)
            .map_err(|e| CodegenError::Cranelift(e.to_string()))
    }

    /// The function id of a helper.
    pub(crate) fn helper(&self, h: Helper) -> Option<FuncId> {
        self.helpers
            .iter()
            .find(|(k, _)| *k == h)
            .map(|(_, id)| *id)
    }

    /// Finalizes every defined function and returns their entry points with the owner of
    /// the code.
    pub(crate) fn finish(
        mut self,
        ids: &[FuncId],
    ) -> Result<(std::sync::Arc<JitCode>, Vec<KernelFn>), CpuError> {
        self.module
            .finalize_definitions()
            .map_err(|e| CpuError::Host(e.to_string()))?;
        let fns = ids
            .iter()
            .map(|&id| {
                let ptr = self.module.get_finalized_function(id);
                // SAFETY: `id` was defined in this module with `kernel_signature()`, i.e.
                // five i64 parameters, no result, the platform's C calling convention;
                // pointers and i64 are both 64-bit, so the code has exactly the ABI of
                // `KernelFn`. The pointer stays valid while the returned `JitCode` lives,
                // and every holder of a `KernelFn` also holds an `Arc<JitCode>`.
                unsafe { std::mem::transmute::<*const u8, KernelFn>(ptr) }
            })
            .collect();
        Ok((
            std::sync::Arc::new(JitCode {
                module: Mutex::new(Some(self.module)),
            }),
            fns,
        ))
    }

    /// Imports a helper into a function being built.
    pub(crate) fn import_helper(
        &mut self,
        h: Helper,
        func: &mut ir::Function,
    ) -> Option<ir::FuncRef> {
        let id = self.helper(h)?;
        Some(self.module.declare_func_in_func(id, func))
    }
}

/// Executable memory of finalized kernels; freed when the last holder drops it.
pub(crate) struct JitCode {
    module: Mutex<Option<JITModule>>,
}

impl std::fmt::Debug for JitCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JitCode")
    }
}

impl Drop for JitCode {
    fn drop(&mut self) {
        let module = match self.module.get_mut() {
            Ok(m) => m.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some(module) = module {
            // SAFETY: every `KernelFn` pointing into this module is stored next to an
            // `Arc<JitCode>` owning it; this is the last owner, so no such pointer can be
            // called any more, and no kernel is running (runs borrow their program).
            unsafe { module.free_memory() };
        }
    }
}
