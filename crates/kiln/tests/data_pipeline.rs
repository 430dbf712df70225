//! `kiln::data`: seeded shuffles are reproducible permutations, `drop_last` and batch
//! sizes are right, prefetching yields exactly the batches of the inline path,
//! `padded_batch` / `pad_field` give correct lengths and masks and never truncate, and the
//! CSV / npy loaders and the bundled digits read what they should.

use kiln::data::{
    self, CsvOptions, DataError, DataLoader, Dataset, TensorDataset, VecDataset, digits, load_csv,
    padded_batch,
};
use kiln::{Array, DType};
use std::path::PathBuf;
use std::sync::Arc;

fn dataset(n: usize) -> Arc<TensorDataset> {
    let x = Array::from_f32(&[n, 2], (0..2 * n).map(|v| v as f32).collect())
        .unwrap_or_else(|e| panic!("{e}"));
    let y = Array::from_i64(&[n], (0..n as i64).collect()).unwrap_or_else(|e| panic!("{e}"));
    Arc::new(TensorDataset::new(vec![x, y]).unwrap_or_else(|e| panic!("{e}")))
}

fn collect(loader: &DataLoader, epoch: u32) -> Vec<data::Batch> {
    loader
        .epoch(epoch)
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("{e}"))
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kiln-data-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    dir.join(name)
}

#[test]
fn shuffle_is_a_reproducible_permutation_per_seed_and_epoch() {
    let ds = dataset(103);
    let loader = DataLoader::new(ds.clone(), 10)
        .unwrap_or_else(|e| panic!("{e}"))
        .shuffle(42);
    let order = loader.order(0);
    let mut sorted = order.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..103).collect::<Vec<_>>());
    assert_ne!(order, sorted, "shuffled");
    assert_eq!(order, loader.order(0), "same seed and epoch, same order");
    assert_ne!(order, loader.order(1), "each epoch reshuffles");
    let other = DataLoader::new(ds.clone(), 10)
        .unwrap_or_else(|e| panic!("{e}"))
        .shuffle(43);
    assert_ne!(order, other.order(0));
    let batches = collect(&loader, 0);
    let seen: Vec<usize> = batches.iter().flat_map(|b| b.indices.clone()).collect();
    assert_eq!(seen, order);
    // Every batch holds the rows of its indices.
    for b in &batches {
        let labels = b.fields[1].to_i64_vec();
        assert_eq!(
            labels,
            b.indices.iter().map(|&i| i as i64).collect::<Vec<_>>()
        );
        let x = b.fields[0].to_f64_vec();
        for (k, &i) in b.indices.iter().enumerate() {
            assert_eq!(x[2 * k..2 * k + 2], [2.0 * i as f64, 2.0 * i as f64 + 1.0]);
        }
    }
    let plain = DataLoader::new(ds, 10).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(plain.order(5), (0..103).collect::<Vec<_>>());
}

#[test]
fn drop_last_and_batch_sizes() {
    let ds = dataset(23);
    let keep = DataLoader::new(ds.clone(), 5).unwrap_or_else(|e| panic!("{e}"));
    let sizes: Vec<usize> = collect(&keep, 0)
        .iter()
        .map(|b| b.fields[0].shape()[0])
        .collect();
    assert_eq!(sizes, [5, 5, 5, 5, 3]);
    assert_eq!(keep.num_batches(), 5);
    let drop = keep.clone().drop_last(true).shuffle(1);
    let batches = collect(&drop, 0);
    assert_eq!(batches.len(), 4);
    assert_eq!(drop.num_batches(), 4);
    assert!(batches.iter().all(|b| b.fields[0].shape() == [5, 2]));
    assert_eq!(drop.epoch(0).len(), 4);
    assert!(matches!(
        DataLoader::new(ds, 0),
        Err(DataError::Config(m)) if m == "batch size must be at least 1"
    ));
}

#[test]
fn prefetch_yields_the_same_batches_as_inline_loading() {
    let ds = dataset(57);
    let inline = DataLoader::new(ds, 8)
        .unwrap_or_else(|e| panic!("{e}"))
        .shuffle(9);
    let ahead = inline.clone().prefetch(3);
    for epoch in 0..3 {
        let a = collect(&inline, epoch);
        let b = collect(&ahead, epoch);
        assert_eq!(a.len(), 8);
        assert_eq!(a, b, "epoch {epoch}");
    }
    // Dropping a prefetching epoch early stops its thread.
    let mut it = ahead.epoch(0);
    assert!(it.next().is_some());
    drop(it);
}

#[test]
fn padded_batch_gives_lengths_and_mask_and_never_truncates() {
    let seq = |n: usize, base: f32| {
        Array::from_f32(&[n, 2], (0..2 * n).map(|v| base + v as f32).collect())
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let seqs = [seq(2, 0.0), seq(3, 10.0), seq(1, 20.0)];
    let p = padded_batch(&seqs, -1.0, None).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(p.data.shape(), &[3, 3, 2]);
    assert_eq!(
        p.data.as_f32().unwrap_or_default(),
        &[
            0.0, 1.0, 2.0, 3.0, -1.0, -1.0, //
            10.0, 11.0, 12.0, 13.0, 14.0, 15.0, //
            20.0, 21.0, -1.0, -1.0, -1.0, -1.0
        ]
    );
    assert_eq!(p.lengths.as_i64().unwrap_or_default(), &[2, 3, 1]);
    assert_eq!(
        p.mask.as_bool().unwrap_or_default(),
        &[true, true, false, true, true, true, true, false, false]
    );
    let fixed = padded_batch(&seqs, 0.0, Some(5)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(fixed.data.shape(), &[3, 5, 2]);
    assert_eq!(fixed.mask.shape(), &[3, 5]);
    let err = padded_batch(&seqs, 0.0, Some(2));
    assert!(
        matches!(&err, Err(DataError::Shape(m)) if m == "padded_batch: sequence 1 has length 3, longer than pad_to = 2 (sequences are never truncated)"),
        "{err:?}"
    );
    let ids = [
        Array::from_i64(&[2], vec![5, 6]).unwrap_or_else(|e| panic!("{e}")),
        Array::from_i64(&[0], vec![]).unwrap_or_else(|e| panic!("{e}")),
    ];
    let p = padded_batch(&ids, 7.0, None).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(p.data.as_i64().unwrap_or_default(), &[5, 6, 7, 7]);
    assert_eq!(p.lengths.as_i64().unwrap_or_default(), &[2, 0]);
    let bad = [
        seq(2, 0.0),
        Array::from_f32(&[2, 3], vec![0.0; 6]).unwrap_or_else(|e| panic!("{e}")),
    ];
    assert!(matches!(
        padded_batch(&bad, 0.0, None),
        Err(DataError::Shape(_))
    ));
    assert!(matches!(
        padded_batch(&[], 0.0, None),
        Err(DataError::Shape(_))
    ));
}

#[test]
fn loader_pads_ragged_fields_only_when_asked() {
    let sample = |n: usize, label: i64| {
        vec![
            Array::from_i64(&[n], (0..n as i64).collect()).unwrap_or_else(|e| panic!("{e}")),
            Array::from_i64(&[], vec![label]).unwrap_or_else(|e| panic!("{e}")),
        ]
    };
    let ds = Arc::new(VecDataset::new(vec![
        sample(3, 0),
        sample(1, 1),
        sample(4, 2),
    ]));
    let plain = DataLoader::new(ds.clone(), 3).unwrap_or_else(|e| panic!("{e}"));
    let err = plain.epoch(0).next().map(|r| r.map(|_| ()));
    let Some(Err(DataError::Shape(m))) = err else {
        panic!("ragged samples must not stack: {err:?}");
    };
    assert!(
        m.starts_with("field 0: sample 1 is i64[1] but sample 0 is i64[3]"),
        "{m}"
    );
    assert!(m.contains("pad_field"), "{m}");
    let padded = plain.pad_field(0, -1.0);
    let b = collect(&padded, 0).remove(0);
    assert_eq!(b.fields[0].shape(), &[3, 4]);
    assert_eq!(
        b.fields[0].as_i64().unwrap_or_default(),
        &[0, 1, 2, -1, 0, -1, -1, -1, 0, 1, 2, 3]
    );
    assert_eq!(b.fields[1].as_i64().unwrap_or_default(), &[0, 1, 2]);
    assert_eq!(b.padding.len(), 1);
    assert_eq!(b.padding[0].field, 0);
    assert_eq!(
        b.padding[0].lengths.as_i64().unwrap_or_default(),
        &[3, 1, 4]
    );
    assert_eq!(b.padding[0].mask.shape(), &[3, 4]);
    let too_far = DataLoader::new(ds, 2)
        .unwrap_or_else(|e| panic!("{e}"))
        .pad_field(5, 0.0);
    assert!(matches!(
        too_far.epoch(0).next(),
        Some(Err(DataError::Config(_)))
    ));
}

#[test]
fn datasets_check_their_fields_and_indices() {
    let x = Array::zeros(DType::F32, &[3, 2]).unwrap_or_else(|e| panic!("{e}"));
    let y = Array::zeros(DType::I64, &[4]).unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(
        TensorDataset::new(vec![x.clone(), y]),
        Err(DataError::Shape(m)) if m == "field 1 has shape [4], but field 0 has 3 samples"
    ));
    let ds = TensorDataset::new(vec![x]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ds.len(), 3);
    assert!(matches!(
        ds.get(3),
        Err(DataError::Index { index: 3, len: 3 })
    ));
    assert_eq!(ds.get(1).unwrap_or_else(|e| panic!("{e}"))[0].shape(), &[2]);
    let sub = ds.subset(&[2, 0]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(sub.len(), 2);
    assert!(matches!(
        ds.subset(&[7]),
        Err(DataError::Index { index: 7, len: 3 })
    ));
}

#[test]
fn csv_and_npy_loaders() {
    let path = tmp("table.csv");
    std::fs::write(&path, "a;b;c\n1;2;3\n\n4; 5 ;6\n").unwrap_or_else(|e| panic!("{e}"));
    let opts = CsvOptions {
        delimiter: ';',
        has_header: true,
        dtype: DType::I32,
    };
    let a = load_csv(&path, &opts).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(a.shape(), &[2, 3]);
    assert_eq!(a.as_i32().unwrap_or_default(), &[1, 2, 3, 4, 5, 6]);

    std::fs::write(&path, "1,2\n3\n").unwrap_or_else(|e| panic!("{e}"));
    let err = load_csv(&path, &CsvOptions::default());
    assert!(
        matches!(&err, Err(DataError::Parse { line: 2, message, .. }) if message == "1 fields, but the first row has 2"),
        "{err:?}"
    );
    std::fs::write(&path, "1,x\n").unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(
        load_csv(&path, &CsvOptions::default()),
        Err(DataError::Parse { line: 1, .. })
    ));
    std::fs::write(&path, "1.5\n").unwrap_or_else(|e| panic!("{e}"));
    let ints = CsvOptions {
        dtype: DType::I64,
        ..CsvOptions::default()
    };
    assert!(matches!(
        load_csv(&path, &ints),
        Err(DataError::Parse { .. })
    ));
    assert!(matches!(
        load_csv(tmp("missing.csv"), &CsvOptions::default()),
        Err(DataError::Io { .. })
    ));

    let npy = tmp("a.npy");
    let arr = Array::from_f64(&[2, 2], vec![1.0, 2.0, 3.0, 4.0]).unwrap_or_else(|e| panic!("{e}"));
    kiln::npy::write(&npy, &arr).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        kiln::npy::read(&npy)
            .unwrap_or_else(|e| panic!("{e}"))
            .bit_eq(&arr)
    );
    assert!(matches!(
        kiln::npy::read(tmp("nope.npy")),
        Err(kiln::Error::Npy { .. })
    ));
}

#[test]
fn bundled_digits_load_with_the_fixed_split() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/data/digits.csv");
    let d = digits::load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(d.images.shape(), &[1797, 64]);
    assert_eq!(d.labels.shape(), &[1797]);
    let px = d.images.to_f64_vec();
    assert!(
        px.iter()
            .all(|&p| (0.0..=16.0).contains(&p) && p.fract() == 0.0)
    );
    let labels = d.labels.to_i64_vec();
    let mut counts = [0usize; 10];
    for &l in &labels {
        counts[l as usize] += 1;
    }
    assert_eq!(counts, [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]);
    assert_eq!(labels[..5], [0, 1, 2, 3, 4]);
    let (train, test) = digits::split(1797);
    assert_eq!((train.len(), test.len()), (1438, 359));
    assert_eq!(test[..3], [4, 9, 14]);
    let ds = d
        .subset(&test)
        .and_then(|t| t.to_dataset())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ds.len(), 359);
    let first = ds.get(0).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        first[0]
            .to_f64_vec()
            .iter()
            .all(|&p| (0.0..=1.0).contains(&p))
    );
    assert_eq!(first[1].to_i64_vec(), [labels[4]]);
}
