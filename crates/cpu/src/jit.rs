//! The Cranelift JIT: a module per compilation batch targeting the host ISA at
//! `opt_level=speed`, the helper functions generated code may call (the `f64` functions of
//! the scalar ops without a Cranelift instruction, one per op of the op lists), and [`JitCode`], which owns executable memory until the last
//! compiled kernel that points into it is dropped.

use crate::codegen::error::CodegenError;
use crate::error::CpuError;
use cranelift_codegen::ir::{self, AbiParam, Signature, types};
use cranelift_codegen::isa::OwnedTargetIsa;
use cranelift_codegen::settings::{self, Configurable};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{FuncId, Linkage, Module};
use kiln_ir::semantics::{BinaryKind, float_binary, float_unary};
use kiln_ir::{BinaryOp, UnaryOp};
use std::sync::Mutex;

/// An `f64` helper that generated code calls through an imported symbol: the `f64`
/// function of a scalar op without a Cranelift instruction (transcendentals, float `rem`
/// and `pow`), behind an `extern "C"` entry generated from the op lists of `kiln_ir`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Helper {
    /// A unary op's [`kiln_ir::semantics::float_unary`].
    Unary(UnaryOp),
    /// A binary op's [`kiln_ir::semantics::float_binary`] (arithmetic, not comparisons).
    Binary(BinaryOp),
}

impl Helper {
    /// Every helper: each scalar op with an `f64` function of its own type.
    pub(crate) fn all() -> impl Iterator<Item = Helper> {
        let unary = UnaryOp::ALL
            .into_iter()
            .filter(|&op| float_unary(op).is_some())
            .map(Helper::Unary);
        let binary = BinaryOp::ALL
            .into_iter()
            .filter(|&op| matches!(float_binary(op), Some(BinaryKind::Arith(_))))
            .map(Helper::Binary);
        unary.chain(binary)
    }

    /// The imported symbol, `kiln_cpu_<op name>` (op names are unique across both lists).
    fn symbol(self) -> String {
        let name = match self {
            Helper::Unary(op) => op.name(),
            Helper::Binary(op) => op.name(),
        };
        format!("kiln_cpu_{name}")
    }

    /// Number of f64 arguments.
    pub(crate) fn arity(self) -> usize {
        match self {
            Helper::Unary(_) => 1,
            Helper::Binary(_) => 2,
        }
    }

    fn address(self) -> *const u8 {
        match self {
            Helper::Unary(op) => helpers::unary(op),
            Helper::Binary(op) => helpers::binary(op),
        }
    }
}

/// The functions behind [`Helper`]: one `extern "C"` entry per scalar op, generated from
/// the op lists, each computing the op's `f64` semantics (what the kernel executor
/// computes), except `erf`, which calls libm (faster, within an ulp of the executor's).
pub(crate) mod helpers {
    use kiln_ir::semantics::{BinaryKind, float_binary, float_unary};
    use kiln_ir::{BinaryOp, UnaryOp};

    unsafe extern "C" {
        /// libm's error function (correctly rounded to within an ulp in glibc).
        // SAFETY: `erf` from the platform's C math library (linked by std on every
        // supported target) takes and returns a plain f64, has no preconditions and no
        // side effects besides possibly setting errno.
        #[link_name = "erf"]
        safe fn libm_erf(x: f64) -> f64;
    }

    /// The `f64` value of a unary op; `op` is a constant in every entry, so this folds to
    /// a direct call of the op's function.
    #[inline(always)]
    fn unary_f64(op: UnaryOp, x: f64) -> f64 {
        if op == UnaryOp::Erf {
            return libm_erf(x);
        }
        float_unary(op).map_or(f64::NAN, |f| f(x))
    }

    /// The `f64` value of a binary op (NaN for one without an arithmetic `f64` function,
    /// which [`super::Helper::all`] never registers).
    #[inline(always)]
    fn binary_f64(op: BinaryOp, a: f64, b: f64) -> f64 {
        match float_binary(op) {
            Some(BinaryKind::Arith(f)) => f(a, b),
            Some(BinaryKind::Cmp(_)) | None => f64::NAN,
        }
    }

    /// Generates `unary`, the entry of each unary op, from `kiln_ir::for_each_unary_op!`.
    macro_rules! unary_entries {
        ($(
            $(#[$doc:meta])* $op:ident $name:literal [$($rule:tt)*] $cost:ident
            $(#[$method_doc:meta])* fn $method:ident;
        )*) => {
            /// The address of the `extern "C" fn(f64) -> f64` entry of a unary op.
            pub(crate) fn unary(op: UnaryOp) -> *const u8 {
                match op {
                    $(UnaryOp::$op => {
                        extern "C" fn entry(x: f64) -> f64 {
                            unary_f64(UnaryOp::$op, x)
                        }
                        entry as *const u8
                    })*
                }
            }
        };
    }

    /// Generates `binary`, the entry of each binary op, from `kiln_ir::for_each_binary_op!`.
    macro_rules! binary_entries {
        ($(
            $(#[$doc:meta])* $op:ident $name:literal [$($rule:tt)*] $cost:ident
            $(#[$method_doc:meta])* fn $method:ident;
        )*) => {
            /// The address of the `extern "C" fn(f64, f64) -> f64` entry of a binary op.
            pub(crate) fn binary(op: BinaryOp) -> *const u8 {
                match op {
                    $(BinaryOp::$op => {
                        extern "C" fn entry(a: f64, b: f64) -> f64 {
                            binary_f64(BinaryOp::$op, a, b)
                        }
                        entry as *const u8
                    })*
                }
            }
        };
    }

    kiln_ir::for_each_unary_op!(unary_entries);
    kiln_ir::for_each_binary_op!(binary_entries);

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
        for h in Helper::all() {
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
        builder.symbol(
            crate::vecmath::WIDE_UNARY_SYMBOL,
            crate::vecmath::unary_entry as *const u8,
        );
        builder.symbol(
            crate::vecmath::WIDE_SHIFTED_SYMBOL,
            crate::vecmath::shifted_entry as *const u8,
        );
        Ok(Jit {
            module: JITModule::new(builder),
            helpers: Vec::new(),
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

    /// The function id of a helper, declared as an import on first use (`None` for a
    /// helper without a registered symbol).
    fn helper(&mut self, h: Helper) -> Option<FuncId> {
        if let Some((_, id)) = self.helpers.iter().find(|(k, _)| *k == h) {
            return Some(*id);
        }
        if !Helper::all().any(|k| k == h) {
            return None;
        }
        let mut sig = self.module.make_signature();
        for _ in 0..h.arity() {
            sig.params.push(AbiParam::new(types::F64));
        }
        sig.returns.push(AbiParam::new(types::F64));
        let id = self
            .module
            .declare_function(&h.symbol(), Linkage::Import, &sig)
            .ok()?;
        self.helpers.push((h, id));
        Some(id)
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    type Unary = extern "C" fn(f64) -> f64;
    type Binary = extern "C" fn(f64, f64) -> f64;

    const XS: [f64; 8] = [-2.5, -1.0, -0.5, -0.0, 0.25, 0.75, 3.0, f64::NAN];

    fn same(got: f64, want: f64, tol: f64) -> bool {
        got.to_bits() == want.to_bits()
            || (got.is_nan() && want.is_nan())
            || (got - want).abs() <= tol
    }

    #[test]
    fn every_helper_computes_its_ops_semantics() {
        let mut symbols = HashSet::new();
        for h in Helper::all() {
            assert!(symbols.insert(h.symbol()), "{h:?}: duplicate symbol");
            match h {
                Helper::Unary(op) => {
                    // SAFETY: `helpers::unary` returns the address of an
                    // `extern "C" fn(f64) -> f64` entry.
                    let f = unsafe { std::mem::transmute::<*const u8, Unary>(h.address()) };
                    let want = float_unary(op).unwrap();
                    // `erf` calls libm, within 1e-15 of the executor's series.
                    let tol = if op == UnaryOp::Erf { 1e-15 } else { 0.0 };
                    for x in XS {
                        let (g, w) = (f(x), want(x));
                        assert!(same(g, w, tol), "{}({x}) = {g}, want {w}", op.name());
                    }
                }
                Helper::Binary(op) => {
                    // SAFETY: `helpers::binary` returns the address of an
                    // `extern "C" fn(f64, f64) -> f64` entry.
                    let f = unsafe { std::mem::transmute::<*const u8, Binary>(h.address()) };
                    let Some(BinaryKind::Arith(want)) = float_binary(op) else {
                        panic!("{}: registered without an f64 function", op.name());
                    };
                    for (a, b) in XS.into_iter().zip(XS.into_iter().rev()) {
                        let (g, w) = (f(a, b), want(a, b));
                        assert!(same(g, w, 0.0), "{}({a}, {b}) = {g}, want {w}", op.name());
                    }
                }
            }
        }
        for (name, arity) in [
            ("kiln_cpu_exp", 1),
            ("kiln_cpu_log", 1),
            ("kiln_cpu_sin", 1),
            ("kiln_cpu_cos", 1),
            ("kiln_cpu_tanh", 1),
            ("kiln_cpu_atan", 1),
            ("kiln_cpu_sigmoid", 1),
            ("kiln_cpu_erf", 1),
            ("kiln_cpu_pow", 2),
            ("kiln_cpu_rem", 2),
        ] {
            let h = Helper::all().find(|h| h.symbol() == name);
            assert_eq!(h.map(Helper::arity), Some(arity), "{name}");
        }
        assert!(!Helper::all().any(|h| matches!(h, Helper::Unary(UnaryOp::Not | UnaryOp::IsNan))));
    }
}
