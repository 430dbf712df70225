//! `kiln_module_run` reads inputs in place on the cpu backend: a counting global allocator
//! measures the bytes allocated by a steady-state run over a 4 MiB input, which must be a
//! small fraction of the input (a copy of the input would allocate all of it, as the same
//! allocator shows for an `Array` built from the data). One test in this binary, so no
//! other test allocates while it counts.

use kiln::{Array, Backend, DType, Graph};
use kiln_capi::*;
use std::alloc::{GlobalAlloc, Layout, System};
use std::ffi::CString;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// The system allocator, counting the bytes allocated by every thread while `ON`.
struct Counting;

static ON: AtomicBool = AtomicBool::new(false);
static BYTES: AtomicUsize = AtomicUsize::new(0);

fn note(size: usize) {
    if ON.load(Ordering::Relaxed) {
        BYTES.fetch_add(size, Ordering::Relaxed);
    }
}

// SAFETY: every call forwards to `System` unchanged; counting touches only atomics.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: as above.
        unsafe { System.realloc(p, layout, new_size) }
    }
    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(p, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Bytes allocated while running `f`.
fn allocated(f: impl FnOnce()) -> usize {
    BYTES.store(0, Ordering::Relaxed);
    ON.store(true, Ordering::SeqCst);
    f();
    ON.store(false, Ordering::SeqCst);
    BYTES.load(Ordering::Relaxed)
}

#[test]
fn inputs_are_read_in_place() {
    const COLS: usize = 1024;
    let rows = 1024;
    let dir = std::env::temp_dir().join(format!("kiln-capi-zero-copy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("sum.kiln");
    let g = Graph::new();
    let n = g.sym("N");
    let x = g.input("x", DType::F32, (&n, COLS));
    let total = x.sum_all();
    kiln::compile(&[("total", &total)], Backend::Cpu)
        .unwrap()
        .save(&path)
        .unwrap();

    let p = CString::new(path.to_str().unwrap()).unwrap();
    let mut m = ptr::null_mut();
    // SAFETY: valid arguments.
    assert_eq!(
        unsafe { kiln_module_load(p.as_ptr(), ptr::null(), &mut m) },
        KILN_OK
    );
    let data: Vec<f32> = (0..rows * COLS).map(|i| (i % 8) as f32).collect();
    let input_bytes = data.len() * 4;
    let name = CString::new("x").unwrap();
    let shape = [rows, COLS];
    let input = kiln_tensor {
        name: name.as_ptr(),
        dtype: KILN_F32,
        data: data.as_ptr().cast(),
        shape: shape.as_ptr(),
        rank: 2,
    };
    let mut total = 0f32;
    let mut run = || {
        // SAFETY: a live module, an input over live memory, a 4-byte output buffer.
        unsafe {
            assert_eq!(kiln_module_run(m, &input, 1), KILN_OK);
            assert_eq!(
                kiln_module_output_copy(m, 0, (&mut total as *mut f32).cast(), 4),
                KILN_OK
            );
        }
    };
    run();
    let steady = allocated(&mut run);
    assert_eq!(total, 3.5 * (rows * COLS) as f32);
    assert!(
        steady < input_bytes / 64,
        "a run allocated {steady} bytes for a {input_bytes}-byte input"
    );
    let copied = allocated(|| {
        let a = Array::from_f32(&shape, data.clone()).unwrap();
        assert_eq!(a.len(), rows * COLS);
    });
    assert!(
        copied >= input_bytes,
        "the counter saw {copied} bytes for a copy"
    );
    // SAFETY: freed once.
    unsafe { kiln_module_free(m) };
    std::fs::remove_dir_all(&dir).ok();
}
