//! Kernel plans with a schedule (format version 3) round-trip through `.kiln` bytes, and a
//! hostile schedule (too deep, too long, lists overrunning the steps, steps left over) is
//! a clear error.

use crate::common;

use common::*;
use kiln_format::v1::StepV1;
use kiln_format::{FormatError, from_bytes, to_bytes};

/// A running sum over the rows of `xs` in a counted loop, then a branch and a while loop
/// that count down a copy of the predicate.
const PLAN: &str = r#"
symbol T >= 1
symbol t0 >= 0
b0 = input "xs" f32[T*2]
b1 = input "c0" f32[2]
b2 = output "c" f32[2]
b3 = scratch f32[2]
b4 = output "ys" f32[T*2]
b5 = input "p" bool[1]
b6 = output "z" f32[2]
k0 = loop [2] {
  v0 = load b2[i0]
  v1 = load b0[{t0*2} + i0]
  v2 = add(v0, v1)
  store b3[i0] = v2
  store b4[{t0*2} + i0] = v2
}
k1 = loop [2] {
  v0 = load b2[i0]
  store b6[i0] = v0
}
k2 = loop [2] {
  v0 = load b1[i0]
  store b6[i0] = v0
}
schedule {
  copy b1 -> b2
  loop reverse t0 < {T} {
    k0
    copy b3 -> b2
  }
  if b5 {
    k1
  } else {
    k2
  }
}
"#;

fn plan_module() -> kiln_format::Module {
    let p = kiln_kernel::verify(kiln_kernel::parse(PLAN).unwrap()).unwrap();
    module_around(p).unwrap()
}

#[test]
fn a_scheduled_plan_round_trips() {
    let m = plan_module();
    let bytes = to_bytes(&m).unwrap();
    let back = from_bytes(&bytes).unwrap();
    let (a, b) = (
        m.program.as_deref().unwrap(),
        back.program.as_deref().unwrap(),
    );
    assert!(b.has_control_flow());
    assert_eq!(a, b);
    assert_eq!(to_bytes(&back).unwrap(), bytes);
    let steps = header_of(&bytes).program.unwrap().schedule.unwrap();
    assert!(
        matches!(
            steps[1],
            StepV1::Loop {
                body: 2,
                reverse: true,
                ..
            }
        ),
        "{steps:?}"
    );
}

fn load_with(steps: Vec<StepV1>) -> Result<kiln_format::Module, FormatError> {
    let bytes = to_bytes(&plan_module()).unwrap();
    from_bytes(&rewrite(&bytes, |h, _| {
        if let Some(p) = &mut h.program {
            p.schedule = Some(steps);
        }
    }))
}

#[test]
fn hostile_schedules_are_clear_errors() {
    // Nested ifs deeper than the limit.
    let mut deep = Vec::new();
    for _ in 0..100 {
        deep.push(StepV1::If {
            pred: 5,
            then: 1,
            other: 0,
        });
    }
    deep.push(StepV1::Kernel(0));
    let e = load_with(deep).unwrap_err().to_string();
    assert!(e.contains("nesting depth"), "{e}");
    // A list claiming more steps than remain.
    let e = load_with(vec![StepV1::While {
        cond: 1,
        pred: 5,
        body: 1_000_000,
    }])
    .unwrap_err()
    .to_string();
    assert!(e.contains("remain"), "{e}");
    // Too many steps.
    let many = vec![StepV1::Kernel(0); 1 << 19];
    let e = load_with(many).unwrap_err().to_string();
    assert!(e.contains("step count"), "{e}");
    // Schedules the verifier rejects: a kernel twice, a copy between buffers of
    // different sizes.
    let bytes = to_bytes(&plan_module()).unwrap();
    let good = header_of(&bytes).program.unwrap().schedule.unwrap();
    let mut steps = good.clone();
    steps[6] = StepV1::Kernel(1);
    let e = load_with(steps).unwrap_err().to_string();
    assert!(e.contains("pre-order"), "{e}");
    let mut steps = good;
    steps[0] = StepV1::Copy { src: 0, dst: 3 };
    let e = load_with(steps).unwrap_err().to_string();
    assert!(e.contains("copy b0 -> b3"), "{e}");
}
