//! Smoke test: one elementwise kernel end to end.
use kiln_ir::Data;
use std::collections::HashMap;

#[test]
fn exp_kernel_runs() {
    let program = kiln_kernel::parse(
        "symbol N >= 1
         b0 = input \"x\" f32[N]
         b1 = output \"y\" f32[N]
         k0 = loop [N] {
           v0 = load b0[i0]
           v1 = exp(v0)
           store b1[i0] = v1
         }",
    )
    .unwrap();
    let compiled = kiln_cpu::compile(&kiln_kernel::verify(program.clone()).unwrap()).unwrap();
    for n in [1usize, 3, 7, 50, 783] {
        let bindings = HashMap::from([("N".to_string(), n as u64)]);
        let x: Vec<f32> = (0..n).map(|i| i as f32 * 0.01 - 2.0).collect();
        let mut buffers = vec![Data::F32(x.clone()), Data::F32(vec![0.0; n])];
        compiled.run(&bindings, &mut buffers).unwrap();
        let Data::F32(y) = &buffers[1] else { panic!() };
        for (a, b) in x.iter().zip(y) {
            let want = (*a as f64).exp();
            assert!(
                ((*b as f64) - want).abs() <= want * 3e-7,
                "exp({a}) = {b}, want {want}"
            );
        }
    }
}
