use kiln_gpu::{GpuProgram, test_device};
use kiln_ir::Array;
use std::collections::HashMap;
#[test]
fn smoke() {
    let Some(dev) = test_device() else { return };
    println!("{}", dev.describe());
    let p = kiln_kernel::parse("symbol N >= 1\nb0 = input \"x\" f32[N]\nb1 = output \"y\" f32[N]\nk0 = loop [N] {\n  v0 = load b0[i0]\n  v1 = exp(v0)\n  store b1[i0] = v1\n}\n").unwrap();
    let mut g = GpuProgram::compile(&p).unwrap();
    let b: HashMap<String,u64> = [("N".to_string(), 5)].into();
    let i: HashMap<String,Array> = [("x".to_string(), Array::from_f32(&[5], vec![0.0,1.0,2.0,-1.0,f32::NAN]).unwrap())].into();
    let t = std::time::Instant::now();
    let out = g.run(&b, &i).unwrap();
    println!("{:?} {:?}", out, t.elapsed());
}
