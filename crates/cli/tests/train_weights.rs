//! `kiln import-weights` on a train-step module: a file of parameters only (what PyTorch's
//! `model.state_dict()` holds) needs `--params-only`, which keeps the optimiser state or, with
//! `--reset-optimizer`, zeroes it; `export-weights --params-only` writes the parameters alone.

use crate::common;

use common::{Tmp, kiln, s, stderr};
use kiln::loss::{Reduction, mse_loss};
use kiln::nn::{Linear, Module};
use kiln::optim::Adam;
use kiln::{Array, Backend, DType, Graph};

/// A trained Adam step on a one-layer model, saved as a `.kiln` module.
fn train_module(dir: &Tmp) -> std::path::PathBuf {
    let g = Graph::new();
    let x = g.input("x", DType::F32, [4, 2]);
    let y = g.input("y", DType::F32, [4, 1]);
    let fc = Linear::new(&g, "fc", 2, 1, 3);
    let loss = mse_loss(&fc.forward(&x), &y, Reduction::Mean);
    let mut exe = Adam::new(0.1)
        .minimize(&loss, &fc.parameters())
        .compile(Backend::Cpu)
        .unwrap();
    let xv = Array::from_f32(&[4, 2], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]).unwrap();
    let yv = Array::from_f32(&[4, 1], vec![1.0, 0.0, 1.0, 0.0]).unwrap();
    for _ in 0..3 {
        exe.run(&[("x", &xv), ("y", &yv)]).unwrap();
    }
    let path = dir.path("train.kiln");
    exe.save(&path).unwrap();
    path
}

#[test]
fn params_only_import_keeps_or_resets_the_optimiser_state() {
    let dir = Tmp::new("train-weights");
    let model = train_module(&dir);
    let params = dir.path("params.safetensors");
    let o = kiln(&["export-weights", s(&model), s(&params), "--params-only"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let dict = kiln::load_safetensors(&params).unwrap();
    assert_eq!(dict.keys().collect::<Vec<_>>(), ["fc.bias", "fc.weight"]);

    // Without the flag: strict over every state tensor, with the flag to pass.
    let out = dir.path("out.kiln");
    let o = kiln(&["import-weights", s(&model), s(&params), "-o", s(&out)]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(e.contains("missing keys `fc.bias.adam_m`"), "{e}");
    assert!(e.contains("pass --params-only"), "{e}");
    assert!(!out.exists());

    // New parameter values; the moments and the step counter are kept.
    let mut new = dict.clone();
    new.insert(
        "fc.weight".into(),
        Array::from_f32(&[1, 2], vec![0.5, -0.5]).unwrap(),
    );
    kiln::save_safetensors(&params, &new).unwrap();
    let o = kiln(&[
        "import-weights",
        s(&model),
        s(&params),
        "-o",
        s(&out),
        "--params-only",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let before = kiln::load(&model, Backend::Interp).unwrap();
    let after = kiln::load(&out, Backend::Interp).unwrap();
    let get = |exe: &kiln::Executable, n: &str| exe.state().get(n).unwrap();
    assert_eq!(get(&after, "fc.weight").as_f32().unwrap(), &[0.5, -0.5]);
    assert!(get(&after, "fc.weight.adam_m").bit_eq(&get(&before, "fc.weight.adam_m")));
    assert_eq!(get(&after, "optim.step").item().unwrap(), 3.0);

    // --reset-optimizer zeroes them.
    let o = kiln(&[
        "import-weights",
        s(&model),
        s(&params),
        "-o",
        s(&out),
        "--params-only",
        "--reset-optimizer",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("reset 5 optimiser tensors"));
    let reset = kiln::load(&out, Backend::Interp).unwrap();
    assert_eq!(get(&reset, "fc.weight").as_f32().unwrap(), &[0.5, -0.5]);
    assert_eq!(get(&reset, "optim.step").item().unwrap(), 0.0);
    assert!(
        get(&reset, "fc.bias.adam_v")
            .to_f64_vec()
            .iter()
            .all(|v| *v == 0.0)
    );
}
