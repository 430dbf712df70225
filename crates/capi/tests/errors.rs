//! Every failure of the C API is a status code and a one-line `kiln_last_error()`: malformed
//! files, wrong dtypes and shapes, unknown and missing names, bad arguments, small buffers.
//! Also: outputs owned by the module and copied out, and train steps applying updates.

use kiln::{Array, Backend, DType, Graph};
use kiln_capi::*;
use std::ffi::{CStr, CString, c_void};
use std::path::{Path, PathBuf};
use std::ptr;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kiln-capi-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn last_error() -> String {
    // SAFETY: kiln_last_error returns a NUL-terminated string valid until the next call.
    unsafe { CStr::from_ptr(kiln_last_error()) }
        .to_str()
        .unwrap()
        .to_string()
}

fn c(s: &str) -> CString {
    CString::new(s).unwrap()
}

/// `y = x * w + 1` over `x: f32[N, 4]`, saved to `path`.
fn save_affine(path: &Path) {
    let g = Graph::new();
    let n = g.sym("N");
    let x = g.input("x", DType::F32, (&n, 4));
    let w = g.param("w", DType::F32, [4]);
    g.set_param(
        "w",
        Array::from_f32(&[4], vec![1.0, 2.0, 3.0, 4.0]).unwrap(),
    )
    .unwrap();
    let y = &(&x * &w) + 1.0;
    kiln::compile(&[("y", &y)], Backend::Cpu)
        .unwrap()
        .save(path)
        .unwrap();
}

fn load(path: &Path) -> Result<*mut kiln_module, (i32, String)> {
    let p = c(path.to_str().unwrap());
    let mut m = ptr::null_mut();
    // SAFETY: valid strings and a writable out pointer.
    let status = unsafe { kiln_module_load(p.as_ptr(), ptr::null(), &mut m) };
    if status == KILN_OK {
        Ok(m)
    } else {
        assert!(m.is_null());
        Err((status, last_error()))
    }
}

struct Input {
    name: CString,
    dtype: u32,
    data: *const c_void,
    shape: Vec<usize>,
}

fn run(m: *mut kiln_module, inputs: &[Input]) -> (i32, String) {
    let tensors: Vec<kiln_tensor> = inputs
        .iter()
        .map(|i| kiln_tensor {
            name: i.name.as_ptr(),
            dtype: i.dtype,
            data: i.data,
            shape: i.shape.as_ptr(),
            rank: i.shape.len(),
        })
        .collect();
    // SAFETY: a live module and tensors over live memory.
    let status = unsafe { kiln_module_run(m, tensors.as_ptr(), tensors.len()) };
    (
        status,
        if status == KILN_OK {
            String::new()
        } else {
            last_error()
        },
    )
}

fn x_input(data: &[f32], rows: usize) -> Input {
    Input {
        name: c("x"),
        dtype: KILN_F32,
        data: data.as_ptr().cast(),
        shape: vec![rows, 4],
    }
}

#[test]
fn malformed_and_missing_files_are_format_errors() {
    let dir = scratch("files");
    let (status, msg) = load(&dir.join("absent.kiln")).unwrap_err();
    assert_eq!(status, KILN_ERROR_FORMAT);
    assert!(msg.contains("absent.kiln"), "{msg}");

    let garbage = dir.join("garbage.kiln");
    std::fs::write(&garbage, b"this is not a kiln module at all").unwrap();
    let (status, msg) = load(&garbage).unwrap_err();
    assert_eq!(status, KILN_ERROR_FORMAT);
    assert!(msg.starts_with("not a .kiln file"), "{msg}");

    let good = dir.join("affine.kiln");
    save_affine(&good);
    let bytes = std::fs::read(&good).unwrap();
    for cut in [8, bytes.len() / 2, bytes.len() - 1] {
        let truncated = dir.join("truncated.kiln");
        std::fs::write(&truncated, &bytes[..cut]).unwrap();
        let (status, msg) = load(&truncated).unwrap_err();
        assert_eq!(status, KILN_ERROR_FORMAT, "cut at {cut}: {msg}");
        assert!(!msg.contains('\n'), "{msg}");
    }
    let mut flipped = bytes.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x55;
    let corrupt = dir.join("corrupt.kiln");
    std::fs::write(&corrupt, &flipped).unwrap();
    assert_eq!(load(&corrupt).unwrap_err().0, KILN_ERROR_FORMAT);

    let p = c(good.to_str().unwrap());
    let tpu = c("tpu");
    let mut m = ptr::null_mut();
    // SAFETY: valid arguments.
    let status = unsafe { kiln_module_load(p.as_ptr(), tpu.as_ptr(), &mut m) };
    assert_eq!(status, KILN_ERROR_ARGUMENT);
    assert!(
        last_error().contains("unknown backend `tpu`"),
        "{}",
        last_error()
    );
    // SAFETY: NULL arguments are refused, not dereferenced.
    assert_eq!(
        unsafe { kiln_module_load(ptr::null(), ptr::null(), &mut m) },
        KILN_ERROR_ARGUMENT
    );
    // SAFETY: as above.
    assert_eq!(
        unsafe { kiln_module_load(p.as_ptr(), ptr::null(), ptr::null_mut()) },
        KILN_ERROR_ARGUMENT
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_inputs_are_input_or_argument_errors() {
    let dir = scratch("inputs");
    let path = dir.join("affine.kiln");
    save_affine(&path);
    let m = load(&path).unwrap();
    let x = [0.5f32; 8];
    let ints = [1i32; 8];

    let (status, msg) = run(
        m,
        &[Input {
            dtype: KILN_I32,
            data: ints.as_ptr().cast(),
            ..x_input(&x, 2)
        }],
    );
    assert_eq!(
        (status, msg.as_str()),
        (KILN_ERROR_INPUT, "input `x`: expected dtype f32, got i32")
    );

    let (status, msg) = run(
        m,
        &[Input {
            shape: vec![2, 3],
            ..x_input(&x, 2)
        }],
    );
    assert_eq!(status, KILN_ERROR_INPUT);
    assert!(
        msg.starts_with("input `x`: dimension 1 is 3, expected 4"),
        "{msg}"
    );

    let (status, msg) = run(
        m,
        &[Input {
            shape: vec![8],
            ..x_input(&x, 2)
        }],
    );
    assert_eq!(status, KILN_ERROR_INPUT);
    assert!(msg.starts_with("input `x`: expected rank 2"), "{msg}");

    let (status, msg) = run(
        m,
        &[
            x_input(&x, 2),
            Input {
                name: c("z"),
                ..x_input(&x, 2)
            },
        ],
    );
    assert_eq!(status, KILN_ERROR_INPUT);
    assert!(msg.starts_with("unknown input `z`"), "{msg}");

    let (status, msg) = run(m, &[]);
    assert_eq!(status, KILN_ERROR_INPUT);
    assert!(msg.starts_with("missing input `x`"), "{msg}");

    let (status, msg) = run(
        m,
        &[Input {
            dtype: 9,
            ..x_input(&x, 2)
        }],
    );
    assert_eq!(
        (status, msg.as_str()),
        (KILN_ERROR_ARGUMENT, "unknown dtype code 9 (0 to 5)")
    );

    let (status, msg) = run(
        m,
        &[Input {
            data: ptr::null(),
            ..x_input(&x, 2)
        }],
    );
    assert_eq!(status, KILN_ERROR_ARGUMENT);
    assert!(msg.contains("null"), "{msg}");

    let odd = x.as_ptr().cast::<u8>().wrapping_add(1).cast();
    let (status, msg) = run(
        m,
        &[Input {
            data: odd,
            shape: vec![1, 4],
            ..x_input(&x, 1)
        }],
    );
    assert_eq!(status, KILN_ERROR_ARGUMENT);
    assert!(msg.contains("aligned"), "{msg}");

    // SAFETY: NULL tensors with a count are refused.
    assert_eq!(
        unsafe { kiln_module_run(m, ptr::null(), 1) },
        KILN_ERROR_ARGUMENT
    );
    // SAFETY: a NULL module is refused.
    assert_eq!(
        unsafe { kiln_module_run(ptr::null_mut(), ptr::null(), 0) },
        KILN_ERROR_ARGUMENT
    );

    // After failures no output is available.
    let mut t = kiln_tensor {
        name: ptr::null(),
        dtype: 0,
        data: ptr::null(),
        shape: ptr::null(),
        rank: 0,
    };
    // SAFETY: a live module and a writable tensor.
    assert_eq!(
        unsafe { kiln_module_output(m, 0, &mut t) },
        KILN_ERROR_ARGUMENT
    );
    assert!(
        last_error().contains("has not run successfully"),
        "{}",
        last_error()
    );
    // SAFETY: the module is freed once.
    unsafe { kiln_module_free(m) };
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn outputs_are_owned_by_the_module_or_copied_out() {
    let dir = scratch("outputs");
    let path = dir.join("affine.kiln");
    save_affine(&path);
    let m = load(&path).unwrap();
    // SAFETY: live module pointers throughout; specs and views are read while it lives.
    unsafe {
        assert_eq!(
            CStr::from_ptr(kiln_module_backend(m)).to_str().unwrap(),
            "cpu"
        );
        assert_eq!(
            (kiln_module_num_inputs(m), kiln_module_num_outputs(m)),
            (1, 1)
        );
        let mut s = std::mem::zeroed::<kiln_spec>();
        assert_eq!(kiln_module_input_spec(m, 0, &mut s), KILN_OK);
        assert_eq!(CStr::from_ptr(s.name).to_str().unwrap(), "x");
        assert_eq!(CStr::from_ptr(s.shape).to_str().unwrap(), "[N, 4]");
        assert_eq!(std::slice::from_raw_parts(s.dims, s.rank), &[-1, 4]);
        assert_eq!(kiln_module_output_spec(m, 3, &mut s), KILN_ERROR_ARGUMENT);
        assert!(
            last_error().contains("output index 3 is out of range"),
            "{}",
            last_error()
        );

        let x = [1.0f32, 1.0, 1.0, 1.0, 0.0, 0.5, -1.0, 2.0];
        assert_eq!(run(m, &[x_input(&x, 2)]).0, KILN_OK);
        let mut t = std::mem::zeroed::<kiln_tensor>();
        assert_eq!(kiln_module_output(m, 0, &mut t), KILN_OK);
        assert_eq!(std::slice::from_raw_parts(t.shape, t.rank), &[2, 4]);
        let want = [2.0f32, 3.0, 4.0, 5.0, 1.0, 2.0, -2.0, 9.0];
        assert_eq!(std::slice::from_raw_parts(t.data.cast::<f32>(), 8), &want);
        assert_eq!(kiln_module_output_bytes(m, 0), 32);
        let mut small = [0f32; 7];
        assert_eq!(
            kiln_module_output_copy(m, 0, small.as_mut_ptr().cast(), 28),
            KILN_ERROR_BUFFER
        );
        assert_eq!(last_error(), "output `y` needs 32 bytes, the buffer has 28");
        let mut copy = [0f32; 8];
        assert_eq!(
            kiln_module_output_copy(m, 0, copy.as_mut_ptr().cast(), 32),
            KILN_OK
        );
        assert_eq!(copy, want);
        kiln_module_free(m);
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn last_error_is_per_thread() {
    let (status, msg) = load(Path::new("/nonexistent/a.kiln")).unwrap_err();
    assert_eq!(status, KILN_ERROR_FORMAT);
    let other = std::thread::spawn(|| {
        let before = last_error();
        let _ = load(Path::new("/nonexistent/b.kiln"));
        (before, last_error())
    })
    .join()
    .unwrap();
    assert_eq!(other.0, "");
    assert!(other.1.contains("b.kiln"), "{}", other.1);
    assert_eq!(last_error(), msg);
}

#[test]
fn a_train_step_applies_its_updates_run_after_run() {
    use kiln::loss::{Reduction, mse_loss};
    let dir = scratch("train");
    let g = Graph::new();
    let n = g.sym("N");
    let x = g.input("x", DType::F32, (&n, 4));
    let t = g.input("t", DType::F32, (&n, 4));
    let w = g.param("w", DType::F32, [4]);
    g.set_param("w", Array::from_f32(&[4], vec![0.0; 4]).unwrap())
        .unwrap();
    let loss = mse_loss(&(&x * &w), &t, Reduction::Mean);
    let step = kiln::optim::Sgd::new(0.5).minimize(&loss, &[("w".to_string(), w)]);
    let path = dir.join("train.kiln");
    step.compile(Backend::Cpu).unwrap().save(&path).unwrap();

    let m = load(&path).unwrap();
    let xs = [1.0f32; 8];
    let ts = [2.0f32; 8];
    let mut losses = Vec::new();
    for _ in 0..4 {
        let inputs = [
            x_input(&xs, 2),
            Input {
                name: c("t"),
                ..x_input(&ts, 2)
            },
        ];
        assert_eq!(run(m, &inputs).0, KILN_OK);
        let mut l = 0f32;
        // SAFETY: a live module and a 4-byte buffer.
        assert_eq!(
            unsafe { kiln_module_output_copy(m, 0, (&mut l as *mut f32).cast(), 4) },
            KILN_OK
        );
        losses.push(l);
    }
    // The loss before the first update is (0 - 2)^2; each step moves w toward 2.
    assert_eq!(losses[0], 4.0);
    assert!(losses.windows(2).all(|p| p[1] < p[0]), "{losses:?}");
    // SAFETY: freed once.
    unsafe { kiln_module_free(m) };
    std::fs::remove_dir_all(&dir).ok();
}
