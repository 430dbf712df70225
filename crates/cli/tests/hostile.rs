//! The `kiln` binary on hostile files and paths: planted symbolic links at temporary
//! names, endless devices as inputs, corrupt bool bytes in imported weights.

use crate::common;

use common::{Tmp, kiln, s, stderr};
use kiln::{Array, Backend, DType, Graph};
use std::path::{Path, PathBuf};

/// `y = x + b` with a bool state tensor `mask` beside it; saved to `dir/m.kiln`.
fn module(dir: &Tmp) -> PathBuf {
    let g = Graph::new();
    let x = g.input("x", DType::F32, [2]);
    let b = g.param_init("b", Array::from_f32(&[2], vec![1.0, 2.0]).unwrap());
    let mask = g.param_init("mask", Array::from_bool(&[2], vec![true, false]).unwrap());
    let y = mask.where_(x.add(&b), &x);
    let exe = kiln::compile(&[("y", &y)], Backend::Interp).unwrap();
    let path = dir.path("m.kiln");
    exe.save(&path).unwrap();
    path
}

/// Plants a link to `victim` at `.NAME.tmpPID` for the next `window` process ids (the
/// names the old writers used) and returns how many were planted.
#[cfg(target_os = "linux")]
fn plant(dir: &Path, name: &str, victim: &Path, window: u32) -> u32 {
    let last: u32 = std::fs::read_to_string("/proc/sys/kernel/ns_last_pid")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    for pid in last + 1..=last + window {
        std::os::unix::fs::symlink(victim, dir.join(format!(".{name}.tmp{pid}"))).unwrap();
    }
    window
}

#[cfg(target_os = "linux")]
#[test]
fn run_and_export_weights_never_write_through_a_planted_symbolic_link() {
    let dir = Tmp::new("symlink");
    let model = module(&dir);
    let x = dir.path("x.npy");
    kiln::npy::write(&x, &Array::from_f32(&[2], vec![10.0, 20.0]).unwrap()).unwrap();
    let victim = dir.path("victim");
    std::fs::write(&victim, b"precious").unwrap();
    let out = dir.path("out");
    std::fs::create_dir_all(&out).unwrap();
    plant(&out, "y.npy", &victim, 2000);
    let o = kiln(&[
        "run",
        s(&model),
        "-i",
        &format!("x={}", s(&x)),
        "--out",
        s(&out),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    plant(&out, "w.safetensors", &victim, 2000);
    let o = kiln(&["export-weights", s(&model), s(&out.join("w.safetensors"))]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    let y = kiln::npy::read(out.join("y.npy")).unwrap();
    assert_eq!(y, Array::from_f32(&[2], vec![11.0, 20.0]).unwrap());
    assert!(
        !std::fs::symlink_metadata(out.join("w.safetensors"))
            .unwrap()
            .is_symlink()
    );
}

#[cfg(unix)]
#[test]
fn endless_devices_are_refused_after_their_first_bytes() {
    let dir = Tmp::new("devzero");
    let model = module(&dir);
    let o = kiln(&["info", "/dev/zero"]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(
        e.contains(r#"not a .kiln file: starts with "\x00\x00\x00\x00\x00\x00\x00\x00""#),
        "{e}"
    );
    let o = kiln(&["run", s(&model), "-i", "x=/dev/zero"]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(
        e.contains(r#"/dev/zero: not a .npy file: starts with "\x00\x00\x00\x00\x00\x00""#),
        "{e}"
    );
    let o = kiln(&[
        "import-weights",
        s(&model),
        "/dev/zero",
        "-o",
        s(&dir.path("o.kiln")),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(
        e.contains("/dev/zero: header length 0 is outside 2..=100000000"),
        "{e}"
    );
}

#[test]
fn import_weights_rejects_bool_bytes_other_than_0_and_1() {
    let dir = Tmp::new("bool");
    let model = module(&dir);
    let exported = dir.path("w.safetensors");
    let o = kiln(&["export-weights", s(&model), s(&exported)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let good = std::fs::read(&exported).unwrap();
    // The bool tensor's two bytes are the last of the file (`mask` sorts after `b`).
    for (byte, value) in [(0usize, 2u8), (1, 7)] {
        let mut bad = good.clone();
        let at = bad.len() - 2 + byte;
        bad[at] = value;
        let badf = dir.path("bad.safetensors");
        std::fs::write(&badf, &bad).unwrap();
        let out = dir.path("x.kiln");
        let o = kiln(&["import-weights", s(&model), s(&badf), "-o", s(&out)]);
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        let e = stderr(&o);
        assert!(
            e.contains(&format!(
                "tensor `mask`: bool element {byte} is stored as {value}, not 0 or 1"
            )),
            "{e}"
        );
        assert!(!out.exists());
    }
    let o = kiln(&[
        "import-weights",
        s(&model),
        s(&exported),
        "-o",
        s(&dir.path("ok.kiln")),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
}
