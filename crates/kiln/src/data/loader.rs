//! `DataLoader`: batches of a dataset in a seeded order, optionally built ahead of time on a
//! background thread.

use super::{DataError, Dataset, collate, padded_batch, stack};
use crate::random::{HostRng, host_fold_in, key_data};
use kiln_ir::Array;
use std::fmt;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, sync_channel};
use std::thread::JoinHandle;

/// The lengths and mask of a field padded by [`DataLoader::pad_field`].
#[derive(Clone, Debug, PartialEq)]
pub struct Padding {
    /// The padded field.
    pub field: usize,
    /// True length of each sample's sequence, `i64[B]`.
    pub lengths: Array,
    /// `bool[B, L]`, true at real positions.
    pub mask: Array,
}

/// One batch: the sample indices it holds and each field stacked (or padded) along a new
/// leading axis.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    /// Dataset indices of the samples, in batch order.
    pub indices: Vec<usize>,
    /// One array per field, `[B, ...]`.
    pub fields: Vec<Array>,
    /// Lengths and masks of the padded fields, in field order.
    pub padding: Vec<Padding>,
}

/// Iterates a dataset in batches (`torch.utils.data.DataLoader`).
///
/// * Order: `0..len` or, with [`DataLoader::shuffle`]`(seed)`, the permutation drawn by
///   Fisher-Yates from [`HostRng`] keyed `fold_in(PRNGKey(seed), epoch)`: reproducible for a
///   seed and epoch, different across epochs.
/// * The last, smaller batch is kept unless [`DataLoader::drop_last`] is set.
/// * With [`DataLoader::prefetch`]`(depth)`, a background thread builds up to `depth`
///   batches ahead; the batches are the same as without prefetching.
#[derive(Clone)]
pub struct DataLoader {
    dataset: Arc<dyn Dataset>,
    batch_size: usize,
    shuffle: Option<u64>,
    drop_last: bool,
    prefetch: usize,
    pad: Vec<(usize, f64)>,
}

impl fmt::Debug for DataLoader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataLoader")
            .field("len", &self.dataset.len())
            .field("batch_size", &self.batch_size)
            .field("shuffle", &self.shuffle)
            .field("drop_last", &self.drop_last)
            .field("prefetch", &self.prefetch)
            .field("pad", &self.pad)
            .finish()
    }
}

impl DataLoader {
    /// Batches of `batch_size` samples in dataset order, no prefetching. Errors
    /// ([`DataError::Config`]) if `batch_size` is 0.
    pub fn new(dataset: Arc<dyn Dataset>, batch_size: usize) -> Result<DataLoader, DataError> {
        if batch_size == 0 {
            return Err(DataError::Config("batch size must be at least 1".into()));
        }
        Ok(DataLoader {
            dataset,
            batch_size,
            shuffle: None,
            drop_last: false,
            prefetch: 0,
            pad: Vec::new(),
        })
    }

    /// Shuffles every epoch with a permutation seeded by `seed` and the epoch number.
    #[must_use]
    pub fn shuffle(mut self, seed: u64) -> DataLoader {
        self.shuffle = Some(seed);
        self
    }

    /// Drops the last batch when it is smaller than the batch size.
    #[must_use]
    pub fn drop_last(mut self, drop_last: bool) -> DataLoader {
        self.drop_last = drop_last;
        self
    }

    /// Builds up to `depth` batches ahead on a background thread (0: no thread).
    #[must_use]
    pub fn prefetch(mut self, depth: usize) -> DataLoader {
        self.prefetch = depth;
        self
    }

    /// Pads field `field` (variable-length sequences `[len, ...]`) with `pad_value` to the
    /// longest sequence of each batch; the batch's [`Batch::padding`] gets the lengths and
    /// mask. Without this, samples of different shapes are an error.
    #[must_use]
    pub fn pad_field(mut self, field: usize, pad_value: f64) -> DataLoader {
        self.pad.retain(|(f, _)| *f != field);
        self.pad.push((field, pad_value));
        self.pad.sort_by_key(|(f, _)| *f);
        self
    }

    /// Number of samples.
    pub fn dataset_len(&self) -> usize {
        self.dataset.len()
    }

    /// Number of batches per epoch.
    pub fn num_batches(&self) -> usize {
        let n = self.dataset.len();
        if self.drop_last {
            n / self.batch_size
        } else {
            n.div_ceil(self.batch_size)
        }
    }

    /// The sample order of epoch `epoch` (a permutation of `0..len`).
    pub fn order(&self, epoch: u32) -> Vec<usize> {
        let n = self.dataset.len();
        match self.shuffle {
            Some(seed) => HostRng::from_key(host_fold_in(key_data(seed), epoch)).permutation(n),
            None => (0..n).collect(),
        }
    }

    /// The batches of epoch `epoch`.
    pub fn epoch(&self, epoch: u32) -> Batches {
        let order = self.order(epoch);
        let plan: Vec<Vec<usize>> = order
            .chunks(self.batch_size)
            .filter(|c| !self.drop_last || c.len() == self.batch_size)
            .map(<[usize]>::to_vec)
            .collect();
        let remaining = plan.len();
        if self.prefetch > 0 {
            let (tx, rx) = sync_channel(self.prefetch);
            let dataset = Arc::clone(&self.dataset);
            let pad = self.pad.clone();
            let worker_plan = plan.clone();
            let spawned = std::thread::Builder::new()
                .name("kiln-prefetch".into())
                .spawn(move || {
                    for indices in worker_plan {
                        let b = load(dataset.as_ref(), indices, &pad);
                        if tx.send(b).is_err() {
                            break;
                        }
                    }
                });
            if let Ok(handle) = spawned {
                return Batches {
                    inner: Inner::Prefetch {
                        rx: Some(rx),
                        handle: Some(handle),
                    },
                    remaining,
                };
            }
        }
        Batches {
            inner: Inner::Inline {
                dataset: Arc::clone(&self.dataset),
                plan: plan.into_iter(),
                pad: self.pad.clone(),
            },
            remaining,
        }
    }
}

/// Builds one batch.
fn load(
    dataset: &dyn Dataset,
    indices: Vec<usize>,
    pad: &[(usize, f64)],
) -> Result<Batch, DataError> {
    if pad.is_empty() {
        let fields = dataset.get_batch(&indices)?;
        return Ok(Batch {
            indices,
            fields,
            padding: Vec::new(),
        });
    }
    let samples: Vec<Vec<Array>> = indices
        .iter()
        .map(|&i| dataset.get(i))
        .collect::<Result<_, _>>()?;
    let nfields = samples.first().map_or(0, Vec::len);
    if let Some((f, _)) = pad.iter().find(|(f, _)| *f >= nfields) {
        return Err(DataError::Config(format!(
            "pad_field({f}): samples have only {nfields} fields"
        )));
    }
    if samples.iter().any(|s| s.len() != nfields) {
        return collate(&samples).map(|fields| Batch {
            indices: indices.clone(),
            fields,
            padding: Vec::new(),
        });
    }
    let mut fields = Vec::with_capacity(nfields);
    let mut padding = Vec::new();
    for f in 0..nfields {
        let column: Vec<&Array> = samples.iter().map(|s| &s[f]).collect();
        match pad.iter().find(|(p, _)| *p == f) {
            Some(&(_, value)) => {
                let owned: Vec<Array> = column.into_iter().cloned().collect();
                let pb = padded_batch(&owned, value, None)
                    .map_err(|e| DataError::Shape(format!("field {f}: {e}")))?;
                fields.push(pb.data);
                padding.push(Padding {
                    field: f,
                    lengths: pb.lengths,
                    mask: pb.mask,
                });
            }
            None => fields
                .push(stack(&column).map_err(|e| DataError::Shape(format!("field {f}: {e}")))?),
        }
    }
    Ok(Batch {
        indices,
        fields,
        padding,
    })
}

enum Inner {
    Inline {
        dataset: Arc<dyn Dataset>,
        plan: std::vec::IntoIter<Vec<usize>>,
        pad: Vec<(usize, f64)>,
    },
    Prefetch {
        rx: Option<Receiver<Result<Batch, DataError>>>,
        handle: Option<JoinHandle<()>>,
    },
}

/// The batches of one epoch (see [`DataLoader::epoch`]). Dropping it early stops the
/// prefetch thread.
pub struct Batches {
    inner: Inner,
    remaining: usize,
}

impl fmt::Debug for Batches {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = match self.inner {
            Inner::Inline { .. } => "inline",
            Inner::Prefetch { .. } => "prefetch",
        };
        f.debug_struct("Batches")
            .field("mode", &mode)
            .field("remaining", &self.remaining)
            .finish()
    }
}

impl Iterator for Batches {
    type Item = Result<Batch, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        let item = match &mut self.inner {
            Inner::Inline { dataset, plan, pad } => {
                let indices = plan.next()?;
                load(dataset.as_ref(), indices, pad)
            }
            Inner::Prefetch { rx, .. } => match rx.as_ref().map(Receiver::recv) {
                Some(Ok(b)) => b,
                _ => {
                    self.remaining = 0;
                    return Some(Err(DataError::Worker));
                }
            },
        };
        self.remaining -= 1;
        Some(item)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl ExactSizeIterator for Batches {}

impl Drop for Batches {
    fn drop(&mut self) {
        if let Inner::Prefetch { rx, handle } = &mut self.inner {
            drop(rx.take());
            if let Some(h) = handle.take() {
                let _ = h.join();
            }
        }
    }
}
