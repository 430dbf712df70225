//! Builds SimpleNN (Linear(784,128) → ReLU → Linear(128,10)) with a symbolic batch,
//! prints its graph and evaluates it with the reference interpreter.

use kiln::{Array, DType, Graph};

fn lcg(seed: &mut u64) -> f32 {
    *seed = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    ((*seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
}

fn uniform(shape: &[usize], bound: f32, seed: &mut u64) -> Array {
    let n: usize = shape.iter().product();
    Array::from_f32(shape, (0..n).map(|_| lcg(seed) * bound).collect()).expect("shape matches data")
}

fn main() -> Result<(), kiln::Error> {
    let g = Graph::new();
    let n = g.sym("N");
    let x = g.input("x", DType::F32, (&n, 784));
    let mut seed = 42;
    let w1 = g.param_init("fc1.weight", uniform(&[128, 784], 1.0 / 28.0, &mut seed));
    let b1 = g.param_init("fc1.bias", uniform(&[128], 1.0 / 28.0, &mut seed));
    let w2 = g.param_init("fc2.weight", uniform(&[10, 128], 0.088, &mut seed));
    let b2 = g.param_init("fc2.bias", uniform(&[10], 0.088, &mut seed));
    let h = x.linear(&w1, Some(&b1)).relu();
    let logits = h.linear(&w2, Some(&b2));
    let probs = logits.softmax(-1);
    g.check()?;

    println!("SimpleNN graph ({} nodes):\n{g}", g.len());
    let batch = uniform(&[4, 784], 1.0, &mut seed);
    let out = kiln::eval(&[&logits, &probs], &[("x", &batch)])?;
    let (l, p) = (out[0].as_f32()?, out[1].as_f32()?);
    for row in 0..4 {
        let r = &p[row * 10..row * 10 + 10];
        let best = r
            .iter()
            .enumerate()
            .fold((0, f32::MIN), |b, (i, &v)| if v > b.1 { (i, v) } else { b });
        println!(
            "sample {row}: logits[0..3] = {:?}, predicted class {} (p = {:.3})",
            &l[row * 10..row * 10 + 3],
            best.0,
            best.1
        );
    }
    Ok(())
}
