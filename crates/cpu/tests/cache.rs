//! The process-wide compile cache stays correct when it fills up: a program whose loops are
//! partly cached and partly new, compiled just as the cache clears to make room, still gets
//! every loop (found by the CPU differential property test at 10,000 cases).

use std::collections::HashMap;

fn program(c: u32) -> kiln_kernel::Program {
    let text = format!(
        "b0 = input \"x\" f32[4]
         b1 = output \"y\" f32[4]
         b2 = output \"z\" f32[4]
         k0 = loop [4] {{
           v0 = load b0[i0]
           v1 = f32({c}.0)
           v2 = mul(v0, v1)
           store b1[i0] = v2
         }}
         k1 = loop [4] {{
           v0 = load b0[i0]
           v1 = f32(0.5)
           v2 = add(v0, v1)
           store b2[i0] = v2
         }}"
    );
    kiln_kernel::parse(&text).unwrap()
}

#[test]
fn programs_compile_and_run_across_cache_clears() {
    let b = HashMap::new();
    // More distinct loops than the cache holds (4096); `k1` is the same loop every time,
    // so each compile mixes a cached loop with a new one, also when the cache clears.
    for c in 0..4300u32 {
        let p = program(c);
        let cpu = kiln_cpu::compile(&kiln_kernel::verify(p.clone()).unwrap())
            .unwrap_or_else(|e| panic!("program {c}: {e}"));
        let mut bufs = kiln_kernel::allocate(&p, &b).unwrap();
        bufs[0] = kiln_ir::Data::F32(vec![1.0, 2.0, 3.0, 4.0]);
        cpu.run(&b, &mut bufs).unwrap();
        let kiln_ir::Data::F32(y) = &bufs[1] else {
            panic!("y is f32")
        };
        let c = c as f32;
        assert_eq!(y, &vec![c, 2.0 * c, 3.0 * c, 4.0 * c]);
        let kiln_ir::Data::F32(z) = &bufs[2] else {
            panic!("z is f32")
        };
        assert_eq!(z, &vec![1.5, 2.5, 3.5, 4.5]);
    }
}
