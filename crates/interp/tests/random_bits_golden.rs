//! RandomBits against `jax.random.bits` goldens (fixtures/golden/random_bits, written by
//! fixtures/gen/gen_random_bits.py), bit for bit, directly and through a graph.

use kiln_interp::{eval, random_bits};
use kiln_ir::{Array, DType, Graph, Op, Shape};
use std::collections::HashMap;

use crate::common;

use common::{golden_dir, read_npy};

struct Case {
    name: String,
    key: [u32; 2],
    shape: Vec<usize>,
    want: Vec<u32>,
}

fn cases() -> Vec<Case> {
    let dir = golden_dir().join("random_bits");
    let text = std::fs::read_to_string(dir.join("cases.json")).expect("cases.json");
    let meta: serde_json::Value = serde_json::from_str(&text).expect("valid json");
    assert_eq!(
        meta["jax_threefry_partitionable"],
        serde_json::Value::Bool(true)
    );
    let list = meta["cases"].as_array().expect("cases array");
    assert!(list.len() >= 3);
    list.iter()
        .map(|c| {
            let words: Vec<u32> = c["key"]
                .as_array()
                .expect("key")
                .iter()
                .map(|w| w.as_u64().expect("key word") as u32)
                .collect();
            let shape: Vec<usize> = c["shape"]
                .as_array()
                .expect("shape")
                .iter()
                .map(|d| d.as_u64().expect("dim") as usize)
                .collect();
            let file = read_npy(&dir.join(c["file"].as_str().expect("file")));
            assert_eq!(file.dtype(), DType::U32);
            assert_eq!(file.shape(), shape.as_slice());
            let want = file.as_u32().expect("u32 data").to_vec();
            Case {
                name: c["name"].as_str().expect("name").to_string(),
                key: [words[0], words[1]],
                shape,
                want,
            }
        })
        .collect()
}

#[test]
fn random_bits_match_jax_bit_for_bit() {
    for c in cases() {
        let got = random_bits(c.key, &c.shape);
        assert_eq!(got, c.want, "case {}", c.name);
    }
}

#[test]
fn first_golden_values_are_pinned() {
    let c = cases()
        .into_iter()
        .find(|c| c.name == "key_0_42_3x5")
        .expect("case key_0_42_3x5");
    assert_eq!(c.key, [0, 42]);
    assert_eq!(c.want.len(), 15);
    assert_eq!(random_bits([0, 42], &[3, 5])[..], c.want[..]);
}

#[test]
fn random_bits_node_matches_jax() {
    for c in cases() {
        let mut g = Graph::new();
        let key = g
            .add(
                Op::Input {
                    name: "key".into(),
                    dtype: DType::U32,
                    shape: Shape::known(&[2]),
                },
                &[],
            )
            .unwrap();
        let bits = g
            .add(
                Op::RandomBits {
                    shape: Shape::known(&c.shape),
                },
                &[key],
            )
            .unwrap();
        let inputs = HashMap::from([(
            "key".to_string(),
            Array::from_u32(&[2], c.key.to_vec()).unwrap(),
        )]);
        let out = eval(&g, &[bits], &inputs, &HashMap::new()).unwrap();
        assert_eq!(out[0].shape(), c.shape.as_slice());
        assert_eq!(
            out[0].as_u32().unwrap(),
            c.want.as_slice(),
            "case {}",
            c.name
        );
    }
}
