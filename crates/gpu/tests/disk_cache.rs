//! The pipeline cache on disk: a compile writes the file, a damaged file is ignored by the
//! next device (which compiles, runs correctly and writes an intact file again). Its own
//! test binary, because it sets `KILN_GPU_CACHE_DIR` before any device opens.

use kiln_gpu::{GpuDevice, GpuOptions, GpuProgram, REQUIRE_GPU_ENV, disk_cache};
use kiln_ir::Array;
use kiln_kernel::{parse, verify};
use std::collections::HashMap;
use std::sync::Arc;

const PROGRAM: &str = "
symbol N >= 1
b0 = input \"x\" f32[N]
b1 = output \"y\" f32[N]
k0 = loop [N] {
  v0 = load b0[i0]
  v1 = f32(2.0)
  v2 = mul(v0, v1)
  v3 = exp(v2)
  store b1[i0] = v3
}
";

fn run_on(device: &Arc<GpuDevice>) -> Vec<f32> {
    let program = verify(parse(PROGRAM).expect("parses")).expect("verifies");
    let mut p = GpuProgram::compile_on(device, &program, &GpuOptions::default()).expect("compiles");
    let x = Array::from_f32(&[4], vec![0.0, 0.5, -1.0, 1.0]).expect("array");
    let outs = p
        .run(
            &HashMap::from([("N".to_string(), 4)]),
            &HashMap::from([("x".to_string(), x)]),
        )
        .expect("runs");
    outs["y"]
        .to_f64_vec()
        .into_iter()
        .map(|v| v as f32)
        .collect()
}

#[test]
fn compiles_save_the_cache_and_damaged_files_are_ignored() {
    let dir = std::env::temp_dir().join(format!("kiln-gpu-cache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // SAFETY: this binary's only test sets the variable before any thread reads it.
    unsafe { std::env::set_var(disk_cache::CACHE_DIR_ENV, &dir) };
    let first = match GpuDevice::open() {
        Ok(d) => Arc::new(d),
        Err(e) => {
            assert!(
                !std::env::var(REQUIRE_GPU_ENV).is_ok_and(|v| v == "1"),
                "{REQUIRE_GPU_ENV}=1 but no GPU device could be opened: {e}"
            );
            eprintln!("skipping GPU test: {e}");
            return;
        }
    };
    let want: Vec<f32> = [0.0f32, 0.5, -1.0, 1.0]
        .iter()
        .map(|x| (2.0 * x).exp())
        .collect();
    let close = |got: &[f32]| {
        got.iter()
            .zip(&want)
            .all(|(g, w)| (g - w).abs() <= 1e-5 * w.abs())
    };
    assert!(close(&run_on(&first)));
    let Some(path) = first.pipeline_cache_file().map(|p| p.to_path_buf()) else {
        eprintln!("the adapter has no pipeline cache; nothing else to check");
        return;
    };
    assert!(
        path.starts_with(&dir),
        "{} is in the cache folder",
        path.display()
    );
    let bytes = std::fs::read(&path).expect("the compile saved the cache");
    assert_eq!(&bytes[..8], b"KILNPC1\0");
    drop(first);

    // A damaged file (truncated, then one flipped bit) is ignored: the next device starts
    // empty, compiles, runs correctly and saves an intact file.
    for damage in [
        |b: &mut Vec<u8>| b.truncate(b.len() / 2),
        |b: &mut Vec<u8>| {
            let last = b.len() - 1;
            b[last] ^= 0x10;
        },
    ] {
        let mut broken = bytes.clone();
        damage(&mut broken);
        std::fs::write(&path, &broken).expect("write");
        let device = Arc::new(GpuDevice::open().expect("opens"));
        assert!(close(&run_on(&device)));
        let again = std::fs::read(&path).expect("saved again");
        assert_eq!(&again[..8], b"KILNPC1\0");
        let len = u64::from_le_bytes(again[8..16].try_into().expect("8 bytes"));
        assert_eq!(len as usize, again.len() - 20, "an intact file");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
